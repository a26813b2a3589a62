// Small deterministic batches for the data-parallel tests: shard `index` is the same on every
// rank, so one process can compute what N ranks compute together.
#pragma once

#include <algorithm>
#include <random>
#include <vector>

#include "core/backend/backend.h"
#include "core/models/model_spec.h"

namespace rn::test {

// Images 1x8x8 and labels.
struct Shard {
  Tensor images, labels;
};

// The samples first, first + 1, ..., first + count - 1, each generated from its own index.
inline Shard samples(int first, int count) {
  std::vector<float> x;
  Shard s{Tensor(), Tensor::zeros({count}, DType::i32)};
  for (int i = 0; i < count; ++i) {
    std::mt19937 gen(1234 + first + i);
    std::normal_distribution<float> normal;
    for (int k = 0; k < 64; ++k) x.push_back(normal(gen));
    s.labels.data_as<int32_t>()[i] = int32_t(gen() % 10);
  }
  s.images = Tensor::from_vector({count, 1, 8, 8}, x);
  return s;
}

// Shard `index` of `count` samples: shards 0, 1, ... tile the sample sequence.
inline Shard make_shard(int index, int count = 2) {
  return samples(index * count, count);
}

// One training forward and backward (mean cross-entropy over the batch); gradients land in the
// network's parameters.
inline void forward_backward(Backend& be, models::Network& net, const Shard& s) {
  net.set_training(true);
  Tensor logits = net.forward(be.upload(s.images));
  Tensor dlogits = be.allocate(logits.desc());
  be.softmax_cross_entropy(logits, be.upload(s.labels), CrossEntropyParams{}, &dlogits);
  net.backward(dlogits);
}

}  // namespace rn::test

// DistributedSampler: a seeded Fisher-Yates permutation per epoch, sliced by rank.
#include "io/sampler.h"

#include <numeric>
#include <utility>

#include "core/check.h"
#include "io/counter_rng.h"

namespace rn::io {

DistributedSampler::DistributedSampler(int64_t dataset_size, uint64_t seed, bool shuffle, int rank,
                                       int world_size, bool wrap)
    : size_(dataset_size),
      seed_(seed),
      shuffle_(shuffle),
      rank_(rank),
      world_size_(world_size),
      wrap_(wrap) {
  RN_CHECK(dataset_size >= 0, "[sampler] negative dataset size " << dataset_size);
  RN_CHECK(world_size >= 1, "[sampler] world size " << world_size);
  RN_CHECK(rank >= 0 && rank < world_size,
           "[sampler] rank " << rank << " outside world of " << world_size);
}

std::vector<int64_t> DistributedSampler::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(size_));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (shuffle_) {
    // Fisher-Yates from the back; the generator's key depends on (seed, epoch) alone, so the
    // permutation is the same on every rank and for every world size.
    CounterRng rng(counter_hash(seed_, RngStream::shuffle, static_cast<uint64_t>(epoch)));
    for (int64_t i = size_ - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
      std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
    }
  }
  return order;
}

int64_t DistributedSampler::per_rank_size() const {
  const int64_t w = world_size_;
  if (wrap_) return (size_ + w - 1) / w;
  // Positions rank, rank + W, ... below size.
  return size_ > rank_ ? (size_ - rank_ + w - 1) / w : 0;
}

std::vector<int64_t> DistributedSampler::epoch_indices(int64_t epoch) const {
  const std::vector<int64_t> order = epoch_order(epoch);
  const int64_t n = per_rank_size();
  std::vector<int64_t> mine(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    // Past the end (wrap only) the order starts over, as PyTorch's DistributedSampler pads.
    const int64_t pos = rank_ + k * world_size_;
    mine[static_cast<size_t>(k)] = order[static_cast<size_t>(pos % size_)];
  }
  return mine;
}

}  // namespace rn::io

// Body of the softmax cross-entropy kernel (loss.cu): label smoothing, the loss's gradient and the
// top-1 / top-5 counts of plain N x K fp32 logits, one block per sample; the batch sums gather in
// one LossResult on the device.
#pragma once

#include <cfloat>

#include "core/backend/cuda/kernels/batch_norm_kernels.h"

namespace rn::cuda {

// What the kernel returns to the host in one copy.
struct LossResult {
  double loss;
  unsigned long long top1, top5;
  int bad_label;
};

inline LaunchShape cross_entropy_launch(int64_t n) {
  return LaunchShape{Dim3{static_cast<unsigned>(n)}, Dim3{static_cast<unsigned>(kBlock)}};
}

struct CrossEntropyShared {
  float f[kBlock];
  double d[kBlock];
  int i[kBlock];
};

template <template <typename> class P, typename Th>
RN_KERNEL_FN void cross_entropy_body(const Th& th, CrossEntropyShared& sh, P<const float> logits,
                                     P<const int32_t> labels, int64_t k, float eps, float inv_n,
                                     P<float> dlogits, P<LossResult> out) {
  const int64_t row = th.block_x();
  const unsigned t = th.thread_x(), threads = th.block_dim_x();
  const P<const float> z = logits + row * k;
  const int32_t label = labels[row];
  if (label < 0 || label >= k) {
    // Checked on the host after the copy back: one clear error instead of a wild read. The whole
    // block leaves here (one row, one label), before any barrier.
    if (t == 0) out[0].bad_label = 1;
    return;
  }
  float mx = -FLT_MAX;
  for (int64_t j = t; j < k; j += threads) mx = z[j] > mx ? z[j] : mx;
  mx = block_reduce(th, mx, sh.f, MaxOp{});
  // Sums in double, as the CPU backend: the loss of a batch is compared across backends.
  double sum = 0, sum_z = 0;
  int greater = 0;
  const float zl = z[label];
  for (int64_t j = t; j < k; j += threads) {
    sum += kexp(static_cast<double>(z[j] - mx));
    sum_z += z[j];
    greater += z[j] > zl;
  }
  sum = block_reduce(th, sum, sh.d, SumOp{});
  sum_z = block_reduce(th, sum_z, sh.d, SumOp{});
  greater = block_reduce(th, greater, sh.i, SumOp{});
  const double log_sum = klog(sum) + mx;
  if (t == 0) {
    // (1 - eps) * -log p_y + eps * mean_j(-log p_j), as PyTorch's label_smoothing.
    th.atomic_add(&out[0].loss, (1 - eps) * (log_sum - zl) + eps * (log_sum - sum_z / k));
    if (greater == 0) th.atomic_add(&out[0].top1, 1ull);
    if (greater < 5) th.atomic_add(&out[0].top5, 1ull);
  }
  if (dlogits) {
    const P<float> g = dlogits + row * k;
    for (int64_t j = t; j < k; j += threads) {
      const double prob = kexp(z[j] - log_sum);
      const double target = (j == label ? 1 - eps : 0) + eps / k;
      g[j] = static_cast<float>((prob - target) * inv_n);
    }
  }
}

}  // namespace rn::cuda

// Softmax cross-entropy with label smoothing, and top-1 / top-5 counts, on plain N x K logits.
#include <algorithm>
#include <cmath>

#include "core/backend/cpu/cpu_backend.h"

namespace rn::cpu {

LossStats CpuBackend::softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                            const CrossEntropyParams& p, Tensor* dlogits) {
  RN_CHECK(logits.is_plain() && logits.shape().rank() == 2,
           "[cross_entropy] logits must be plain N x K, got " << logits.desc().str());
  const int64_t n = logits.shape()[0], k = logits.shape()[1];
  RN_CHECK(labels.dtype() == DType::i32 && labels.numel() == n,
           "[cross_entropy] need " << n << " i32 labels, got " << labels.desc().str());
  const float* z = logits.data_as<float>();
  const int32_t* y = labels.data_as<int32_t>();
  float* dz = dlogits ? dlogits->data_as<float>() : nullptr;
  const double eps = p.label_smoothing;
  // Checked before the parallel loop: an exception must not leave an OpenMP region.
  for (int64_t i = 0; i < n; ++i)
    RN_CHECK(y[i] >= 0 && y[i] < k,
             "[cross_entropy] label " << y[i] << " outside [0, " << k << ")");
  double loss = 0;
  int64_t top1 = 0, top5 = 0;
#pragma omp parallel for num_threads(threads_) reduction(+ : loss, top1, top5) if (n * k > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = z + i * k;
    const int32_t label = y[i];
    const float mx = *std::max_element(row, row + k);
    double sum = 0, sum_z = 0;
    for (int64_t j = 0; j < k; ++j)
      sum += std::exp(static_cast<double>(row[j] - mx)), sum_z += row[j];
    const double log_sum = std::log(sum) + mx;
    // (1 - eps) * -log p_y + eps * mean_j(-log p_j), as PyTorch's label_smoothing.
    loss += (1 - eps) * (log_sum - row[label]) + eps * (log_sum - sum_z / k);
    int64_t greater = 0;
    for (int64_t j = 0; j < k; ++j) greater += row[j] > row[label];
    top1 += greater == 0;
    top5 += greater < 5;
    if (dz) {
      float* g = dz + i * k;
      for (int64_t j = 0; j < k; ++j) {
        const double prob = std::exp(row[j] - log_sum);
        const double target = (j == label ? 1 - eps : 0) + eps / k;
        g[j] = static_cast<float>((prob - target) / n);
      }
    }
  }
  return LossStats{loss / n, top1, top5};
}

}  // namespace rn::cpu

// Softmax cross-entropy with label smoothing, and top-1 / top-5 counts, on plain N x K fp32
// logits: one block per sample, the batch sums gathered on the device and read back once, when
// the caller asks for them (a training step: at its end).
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/loss_kernels.h"

namespace rn::cuda {
namespace {

__global__ void cross_entropy_kernel(const float* logits, const int32_t* labels, int64_t k,
                                     float eps, float inv_n, float* dlogits, LossResult* out) {
  cross_entropy_body<DevicePtr>(DeviceThread{}, shared_memory<CrossEntropyShared>(), logits, labels,
                                k, eps, inv_n, dlogits, out);
}

}  // namespace

void CudaBackend::queue_softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                              const CrossEntropyParams& p, Tensor* dlogits) {
  RN_CHECK(logits.is_plain() && logits.shape().rank() == 2 && logits.dtype() == DType::f32,
           "[cross_entropy] logits must be plain N x K f32, got " << logits.desc().str());
  const int64_t n = logits.shape()[0], k = logits.shape()[1];
  RN_CHECK(labels.dtype() == DType::i32 && labels.numel() == n,
           "[cross_entropy] need " << n << " i32 labels, got " << labels.desc().str());
  RN_CHECK(labels.device().kind == DeviceKind::cuda, "[cross_entropy] labels must be uploaded");
  RN_CHECK(!dlogits || dlogits->desc().same_layout(logits.desc()),
           "[cross_entropy] dlogits must be " << logits.desc().str());
  static_assert(sizeof(LossResult) <= 64, "the result words hold 64 bytes");
  // Its own half of the device words: the finiteness check uses the first.
  auto* dev = reinterpret_cast<LossResult*>(device_result_.data_as<char>() + 64);
  RN_CUDA_CHECK(cudaMemsetAsync(dev, 0, sizeof(LossResult), ctx_.stream()));
  const LaunchShape ls = cross_entropy_launch(n);
  cross_entropy_kernel<<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(
      logits.data_as<float>(), labels.data_as<int32_t>(), k, p.label_smoothing,
      1.f / static_cast<float>(n), dlogits ? dlogits->data_as<float>() : nullptr, dev);
  RN_CUDA_CHECK(cudaGetLastError());
  RN_CUDA_CHECK(
      cudaMemcpyAsync(host_loss_, dev, sizeof(LossResult), cudaMemcpyDeviceToHost, ctx_.stream()));
  RN_CUDA_CHECK(cudaEventRecord(loss_done_, ctx_.stream()));
  loss_n_ = n, loss_k_ = k;
}

LossStats CudaBackend::queued_loss_stats() {
  RN_CHECK(loss_n_ > 0, "[cross_entropy] no loss was queued");
  RN_CUDA_CHECK(cudaEventSynchronize(loss_done_));
  const auto& r = *static_cast<const LossResult*>(host_loss_);
  const int64_t n = loss_n_, k = loss_k_;
  loss_n_ = 0;
  RN_CHECK(r.bad_label == 0, "[cross_entropy] a label lies outside [0, " << k << ")");
  return LossStats{r.loss / n, static_cast<int64_t>(r.top1), static_cast<int64_t>(r.top5)};
}

LossStats CudaBackend::softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                             const CrossEntropyParams& p, Tensor* dlogits) {
  queue_softmax_cross_entropy(logits, labels, p, dlogits);
  return queued_loss_stats();
}

}  // namespace rn::cuda

// Softmax cross-entropy with label smoothing, and top-1 / top-5 counts, on plain N x K fp32
// logits: one block per sample, the batch sums gathered on the device and read back once, when
// the caller asks for them (a training step: at its end).
#include <cfloat>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_util.cuh"

namespace rn::cuda {
namespace {

// What the kernel returns to the host in one copy.
struct LossResult {
  double loss;
  unsigned long long top1, top5;
  int bad_label;
};

// Block-wide reduction through shared memory; every thread gets the result.
template <typename T, typename Op>
__device__ T block_reduce(T v, T* shared, Op op) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  T r = shared[0];
  __syncthreads();
  return r;
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

__global__ void cross_entropy_kernel(const float* logits, const int32_t* labels, int64_t k,
                                     float eps, float inv_n, float* dlogits, LossResult* out) {
  __shared__ float fshared[kBlock];
  __shared__ double dshared[kBlock];
  __shared__ int ishared[kBlock];
  const int64_t row = blockIdx.x;
  const float* z = logits + row * k;
  const int32_t label = labels[row];
  if (label < 0 || label >= k) {
    // Checked on the host after the copy back: one clear error instead of a wild read.
    if (threadIdx.x == 0) out->bad_label = 1;
    return;
  }
  float mx = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, z[j]);
  mx = block_reduce(mx, fshared, Max{});
  // Sums in double, as the CPU backend: the loss of a batch is compared across backends.
  double sum = 0, sum_z = 0;
  int greater = 0;
  const float zl = z[label];
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    sum += exp(static_cast<double>(z[j] - mx));
    sum_z += z[j];
    greater += z[j] > zl;
  }
  sum = block_reduce(sum, dshared, Sum{});
  sum_z = block_reduce(sum_z, dshared, Sum{});
  greater = block_reduce(greater, ishared, Sum{});
  const double log_sum = log(sum) + mx;
  if (threadIdx.x == 0) {
    // (1 - eps) * -log p_y + eps * mean_j(-log p_j), as PyTorch's label_smoothing.
    atomicAdd(&out->loss, (1 - eps) * (log_sum - zl) + eps * (log_sum - sum_z / k));
    if (greater == 0) atomicAdd(&out->top1, 1ull);
    if (greater < 5) atomicAdd(&out->top5, 1ull);
  }
  if (dlogits) {
    float* g = dlogits + row * k;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      const double prob = exp(z[j] - log_sum);
      const double target = (j == label ? 1 - eps : 0) + eps / k;
      g[j] = static_cast<float>((prob - target) * inv_n);
    }
  }
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
  cross_entropy_kernel<<<static_cast<unsigned>(n), kBlock, 0, ctx_.stream()>>>(
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

// The CUDA context, memory pools, layouts and cuDNN descriptors shared by every CUDA op.
#include "core/backend/cuda/cuda_common.h"

#include <algorithm>

namespace rn::cuda {

bool is_nhwc(const TensorDesc& d) {
  return d.layout && dynamic_cast<const NhwcLayout*>(d.layout.get()) != nullptr;
}

TensorDesc nhwc_desc(const Shape& s, DType t) {
  RN_CHECK(s.rank() == 4, "[cuda] NHWC needs a 4-D shape, got " << s.str());
  const size_t bytes = static_cast<size_t>(s.numel()) * dtype_size(t);
  return TensorDesc{s, t, std::make_shared<NhwcLayout>(bytes)};
}

Strides4 strides_of(const TensorDesc& d) {
  RN_CHECK(d.shape.rank() == 4, "[cuda] expected a 4-D tensor, got " << d.str());
  RN_CHECK(!d.layout || is_nhwc(d), "[cuda] tensor has a layout of another backend: " << d.str());
  const int64_t c = d.shape[1], h = d.shape[2], w = d.shape[3];
  if (is_nhwc(d)) return Strides4{h * w * c, 1, w * c, c};
  return Strides4{c * h * w, h * w, w, 1};
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    case DType::f16:
      return CUDNN_DATA_HALF;
    case DType::i32:
      return CUDNN_DATA_INT32;
  }
  return CUDNN_DATA_FLOAT;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    case DType::i32:
      return CUDA_R_32I;
  }
  return CUDA_R_32F;
}

void set_tensor_desc(cudnnTensorDescriptor_t td, const TensorDesc& d) {
  const Strides4 s = strides_of(d);
  RN_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(
      td, cudnn_type(d.dtype), static_cast<int>(d.shape[0]), static_cast<int>(d.shape[1]),
      static_cast<int>(d.shape[2]), static_cast<int>(d.shape[3]), static_cast<int>(s.n),
      static_cast<int>(s.c), static_cast<int>(s.h), static_cast<int>(s.w)));
}

DevicePool::~DevicePool() {
  trim();
}

void* DevicePool::allocate(size_t bytes) {
  // Rounded up so that near sizes share buffers, and every buffer suits 16-byte vector access.
  bytes = std::max<size_t>((bytes + 511) & ~size_t{511}, 512);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_.lower_bound(bytes);
  if (it != free_.end() && it->first <= 2 * bytes) {
    void* p = it->second;
    free_.erase(it);
    return p;
  }
  void* p = nullptr;
  cudaError_t rc = cudaMalloc(&p, bytes);
  if (rc != cudaSuccess && !free_.empty()) {
    // Out of memory with idle buffers of the wrong sizes: give them back and try once more.
    cudaGetLastError();
    for (auto& [size, q] : free_) {
      cudaFree(q);
      held_ -= size;
      real_size_.erase(q);
    }
    free_.clear();
    rc = cudaMalloc(&p, bytes);
  }
  RN_CHECK(rc == cudaSuccess, "[cuda] cannot allocate " << bytes << " bytes ("
                                                        << cudaGetErrorString(rc) << ", " << held_
                                                        << " bytes held by the pool)");
  real_size_[p] = bytes;
  held_ += bytes;
  return p;
}

void DevicePool::release(void* ptr, size_t) noexcept {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = real_size_.find(ptr);
  if (it == real_size_.end()) return;
  free_.emplace(it->second, ptr);
}

size_t DevicePool::held_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

void DevicePool::trim() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [size, p] : free_) {
    RN_CUDA_CHECK_PRINT(cudaFree(p));
    held_ -= size;
    real_size_.erase(p);
  }
  free_.clear();
}

void* DeviceAllocator::allocate(size_t bytes) {
  void* p = nullptr;
  RN_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 256)));
  return p;
}

void DeviceAllocator::release(void* ptr, size_t) noexcept {
  if (ptr) RN_CUDA_CHECK_PRINT(cudaFree(ptr));
}

CudaContext::CudaContext(int device) : device_(device) {
  RN_CUDA_CHECK(cudaSetDevice(device));
  RN_CUDA_CHECK(cudaGetDeviceProperties(&props_, device));
  // Non-blocking: the NCCL communicator's stream must not be serialised behind it implicitly.
  RN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RN_CUDNN_CHECK(cudnnCreate(&cudnn_));
  RN_CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
  RN_CUBLAS_CHECK(cublasCreate(&cublas_));
  RN_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  size_t free_bytes = 0, total = 0;
  RN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  workspace_limit_ = std::min(free_bytes / 8, size_t{4} << 30);
}

CudaContext::~CudaContext() {
  if (stream_) RN_CUDA_CHECK_PRINT(cudaStreamSynchronize(stream_));
  pool_.trim();
  if (cublas_) cublasDestroy(cublas_);
  if (cudnn_) cudnnDestroy(cudnn_);
  if (stream_) RN_CUDA_CHECK_PRINT(cudaStreamDestroy(stream_));
}

Tensor CudaContext::allocate(const TensorDesc& d) {
  return Tensor(d, std::make_shared<Storage>(pool_, d.bytes(), Device{DeviceKind::cuda, device_}));
}

Tensor CudaContext::scratch(size_t bytes) {
  const int64_t n = static_cast<int64_t>((bytes + 3) / 4);
  return allocate(TensorDesc{Shape{std::max<int64_t>(n, 1)}, DType::f32, nullptr});
}

}  // namespace rn::cuda

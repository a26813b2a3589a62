// Shared pieces of the CUDA backend: RAII library handles, the NHWC layout, the device memory
// pool, and the context (stream, cuDNN and cuBLAS handles, the convolution algorithm cache) that
// every op of one backend uses.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/backend/cuda/kernels/kernel_thread.h"
#include "core/check.h"
#include "core/tensor.h"

namespace rn::cuda {

// One owner per library handle: Create in the constructor, Destroy in the destructor.
template <typename H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
class CudnnHandle {
 public:
  CudnnHandle() { RN_CUDNN_CHECK(Create(&h_)); }
  ~CudnnHandle() {
    if (h_) Destroy(h_);
  }
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  CudnnHandle(CudnnHandle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  CudnnHandle& operator=(CudnnHandle&& o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  H get() const { return h_; }
  operator H() const { return h_; }

 private:
  H h_ = nullptr;
};
using TensorDescriptor =
    CudnnHandle<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDescriptor =
    CudnnHandle<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvolutionDescriptor =
    CudnnHandle<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                cudnnDestroyConvolutionDescriptor>;
using ActivationDescriptor =
    CudnnHandle<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor,
                cudnnDestroyActivationDescriptor>;

// Channels-last activations (and OHWI convolution weights): the layout cuDNN's tensor-core
// kernels read without transposes. The logical shape stays N x C x H x W, as everywhere.
class NhwcLayout final : public Layout {
 public:
  explicit NhwcLayout(size_t bytes) : bytes_(bytes) {}
  size_t bytes() const override { return bytes_; }
  bool equals(const Layout& other) const override {
    auto* o = dynamic_cast<const NhwcLayout*>(&other);
    return o != nullptr && o->bytes_ == bytes_;
  }
  std::string str() const override { return "nhwc"; }

 private:
  size_t bytes_;
};

bool is_nhwc(const TensorDesc& d);
TensorDesc nhwc_desc(const Shape& s, DType t);
// Element strides (n, c, h, w) of a 4-D plain or NHWC tensor.
Strides4 strides_of(const TensorDesc& d);

cudnnDataType_t cudnn_type(DType t);
cudaDataType_t cuda_type(DType t);
// A cuDNN descriptor of a 4-D tensor as it lies in memory (NCHW when plain, NHWC otherwise).
void set_tensor_desc(cudnnTensorDescriptor_t td, const TensorDesc& d);

// Device buffers recycled by best fit, as the CPU backend's pool: after the first steps every
// request is a hit, so a training step calls neither cudaMalloc nor cudaFree (each of which
// synchronises the device). All work runs on one stream in order, so a buffer released by the
// host may be handed out again at once: the next kernel to touch it is queued after the last.
class DevicePool final : public Allocator {
 public:
  ~DevicePool() override;
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) noexcept override;
  size_t held_bytes() const;
  void trim();

 private:
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> real_size_;
  size_t held_ = 0;
};

// Long-lived buffers (parameters, optimizer state): cudaMalloc / cudaFree directly.
class DeviceAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) noexcept override;
};

// The convolution algorithms cuDNN found fastest for one problem, shared by every layer of
// that shape (ResNet-50 repeats most of its shapes many times).
struct ConvAlgos {
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  // The math type each was measured with (tensor ops or not), set again before each call.
  cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
  bool has_fwd = false, has_bwd_data = false, has_bwd_filter = false;
};

class CudaContext {
 public:
  explicit CudaContext(int device);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  cublasHandle_t cublas() const { return cublas_; }
  DevicePool& pool() { return pool_; }
  DeviceAllocator& persistent() { return persistent_; }
  Tensor allocate(const TensorDesc& d);
  // A scratch buffer of at least `bytes` from the pool (returned when the tensor goes).
  Tensor scratch(size_t bytes);
  ConvAlgos& conv_algos(const std::string& key) { return algos_[key]; }
  // Largest workspace an algorithm may ask for: an eighth of the memory free at start-up, at
  // most 4 GiB (the pool keeps each size it hands out).
  size_t workspace_limit() const { return workspace_limit_; }
  const cudaDeviceProp& props() const { return props_; }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  DevicePool pool_;
  DeviceAllocator persistent_;
  std::map<std::string, ConvAlgos> algos_;
  size_t workspace_limit_ = 0;
  cudaDeviceProp props_{};
};

}  // namespace rn::cuda

// CudaBackend: device selection, transfers and reorders; the op bodies live in their own files
// (the NCHW <-> NHWC change in layout.cu). Also the entry points make_cuda_backend and
// cuda_available.
#include "core/backend/cuda/cuda_backend.h"

#include <cudnn.h>

namespace rn::cuda {

CudaBackend::CudaBackend(int device, MathMode math) : ctx_(device), math_(math) {
  RN_CUDA_CHECK(cudaMallocHost(&host_result_, 64));
  RN_CUDA_CHECK(cudaMallocHost(&host_loss_, 64));
  RN_CUDA_CHECK(cudaEventCreateWithFlags(&loss_done_, cudaEventDisableTiming));
  device_result_ = ctx_.allocate(TensorDesc{Shape{32}, DType::f32, nullptr});
}

CudaBackend::~CudaBackend() {
  device_result_ = Tensor();
  if (copy_stream_) RN_CUDA_CHECK_PRINT(cudaStreamSynchronize(copy_stream_));
  if (copy_done_) RN_CUDA_CHECK_PRINT(cudaEventDestroy(copy_done_));
  if (compute_mark_) RN_CUDA_CHECK_PRINT(cudaEventDestroy(compute_mark_));
  if (copy_stream_) RN_CUDA_CHECK_PRINT(cudaStreamDestroy(copy_stream_));
  if (loss_done_) RN_CUDA_CHECK_PRINT(cudaEventDestroy(loss_done_));
  if (host_loss_) RN_CUDA_CHECK_PRINT(cudaFreeHost(host_loss_));
  if (host_result_) RN_CUDA_CHECK_PRINT(cudaFreeHost(host_result_));
}

std::string CudaBackend::name() const {
  const auto& p = ctx_.props();
  const size_t v = cudnnGetVersion();
  return str_cat("cuda:", ctx_.device(), " (", p.name, ", sm_", p.major, p.minor, ", cuDNN ",
                 v / 10000, ".", (v % 10000) / 100, ".", v % 100, ")");
}

Tensor CudaBackend::allocate_persistent(const TensorDesc& desc) {
  return Tensor(desc, std::make_shared<Storage>(ctx_.persistent(), desc.bytes(), device()));
}

LayoutPtr CudaBackend::layout_like(const TensorDesc& like, const Shape& shape) {
  if (!is_nhwc(like)) return nullptr;
  return nhwc_desc(shape, like.dtype).layout;
}

Tensor CudaBackend::upload_persistent(const Tensor& host) {
  RN_CHECK(host.is_plain() && host.device().kind == DeviceKind::cpu,
           "[upload] expects a plain host tensor, got " << host.desc().str());
  Tensor t = allocate_persistent(host.desc());
  // Pageable source: the copy is staged before the call returns, so `host` may go at once.
  RN_CUDA_CHECK(
      cudaMemcpyAsync(t.data(), host.data(), host.bytes(), cudaMemcpyHostToDevice, ctx_.stream()));
  return t;
}

Tensor CudaBackend::upload(const Tensor& host) {
  RN_CHECK(host.is_plain() && host.device().kind == DeviceKind::cpu,
           "[upload] expects a plain host tensor, got " << host.desc().str());
  Tensor t = allocate(host.desc());
  RN_CUDA_CHECK(
      cudaMemcpyAsync(t.data(), host.data(), host.bytes(), cudaMemcpyHostToDevice, ctx_.stream()));
  return t;
}

void* PinnedAllocator::allocate(size_t bytes) {
  void* p = nullptr;
  RN_CUDA_CHECK(cudaHostAlloc(&p, std::max<size_t>(bytes, 64), cudaHostAllocDefault));
  return p;
}

void PinnedAllocator::release(void* ptr, size_t) noexcept {
  if (ptr) RN_CUDA_CHECK_PRINT(cudaFreeHost(ptr));
}

Tensor CudaBackend::allocate_pinned(const TensorDesc& desc) {
  static PinnedAllocator pinned;  // stateless
  RN_CHECK(!desc.layout, "[upload] pinned host tensors are plain, got " << desc.str());
  return Tensor(desc, std::make_shared<Storage>(pinned, desc.bytes(), Device{}));
}

void CudaBackend::upload_ahead(const Tensor& host, Tensor& dst) {
  RN_CHECK(host.is_plain() && host.device().kind == DeviceKind::cpu && dst.is_plain() &&
               host.desc().same_layout(dst.desc()) && dst.device() == device(),
           "[upload] upload_ahead copies a plain host tensor into a plain device tensor of its "
           "desc, got "
               << host.desc().str() << " -> " << dst.desc().str());
  if (!copy_stream_) {
    RN_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    RN_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
    RN_CUDA_CHECK(cudaEventCreateWithFlags(&copy_done_, cudaEventDisableTiming));
  }
  // The copy waits for the compute queued before the previous call (the step that read this
  // buffer, with two in turn), then overlaps the compute queued since.
  if (has_mark_) RN_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, compute_mark_, 0));
  RN_CUDA_CHECK(
      cudaMemcpyAsync(dst.data(), host.data(), host.bytes(), cudaMemcpyHostToDevice, copy_stream_));
  RN_CUDA_CHECK(cudaEventRecord(copy_done_, copy_stream_));
  RN_CUDA_CHECK(cudaStreamWaitEvent(ctx_.stream(), copy_done_, 0));
  RN_CUDA_CHECK(cudaEventRecord(compute_mark_, ctx_.stream()));
  has_mark_ = true;
}

Tensor CudaBackend::download(const Tensor& t) {
  RN_CHECK(t.defined(), "[download] undefined tensor");
  Tensor plain = t;
  if (!t.is_plain()) {
    plain = allocate(TensorDesc{t.shape(), t.dtype(), nullptr});
    transform(t, plain);
  }
  Tensor out = Tensor::zeros(t.shape(), t.dtype());
  RN_CUDA_CHECK(cudaMemcpyAsync(out.data(), plain.data(), out.bytes(), cudaMemcpyDeviceToHost,
                                ctx_.stream()));
  RN_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  return out;
}

void CudaBackend::reorder(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.numel() == dst.numel(),
           "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
  if (src.dtype() != dst.dtype()) {
    cast(src, dst);
    return;
  }
  if (src.shape() == dst.shape()) {
    transform(src, dst);
    return;
  }
  // Same element count, other shape (N x C x 1 x 1 as N x C): plain bytes are the same.
  RN_CHECK(src.is_plain() && dst.is_plain(),
           "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
  copy_bytes(src, 0, dst, 0, src.bytes());
}

Tensor CudaBackend::as_layout(const Tensor& t, const TensorDesc& want) {
  if (t.desc().same_layout(want)) return t;
  Tensor out = allocate(want);
  reorder(t, out);
  return out;
}

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.desc().same_layout(dst.desc()),
           "[copy] operands differ: " << src.desc().str() << " vs " << dst.desc().str());
  copy_bytes(src, 0, dst, 0, src.bytes());
}

void CudaBackend::copy_bytes(const Tensor& src, size_t src_offset, Tensor& dst, size_t dst_offset,
                             size_t bytes) {
  RN_CHECK(src_offset + bytes <= src.bytes() && dst_offset + bytes <= dst.bytes(),
           "[copy_bytes] " << bytes << " bytes out of range");
  RN_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst.data()) + dst_offset,
                                static_cast<const char*>(src.data()) + src_offset, bytes,
                                cudaMemcpyDeviceToDevice, ctx_.stream()));
}

void CudaBackend::synchronize() {
  RN_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  if (copy_stream_) RN_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
}

std::unique_ptr<ConvOp> CudaBackend::make_conv(const ConvParams& p, const TensorDesc& x,
                                               bool training) {
  return cuda::make_conv(*this, p, x, training);
}

std::unique_ptr<BatchNormOp> CudaBackend::make_batch_norm(const BatchNormParams& p,
                                                          const TensorDesc& x, bool) {
  return cuda::make_batch_norm(*this, p, x);
}

std::unique_ptr<PoolOp> CudaBackend::make_pool(const PoolParams& p, const TensorDesc& x,
                                               bool training) {
  return cuda::make_pool(*this, p, x, training);
}

std::unique_ptr<LinearOp> CudaBackend::make_linear(const LinearParams& p, const TensorDesc& x) {
  return cuda::make_linear(*this, p, x);
}

}  // namespace rn::cuda

namespace rn {

bool cuda_available() {
  // Without a driver (no libcuda.so.1) the runtime reports an error here instead of failing to
  // load: that is what lets this binary run CPU work anywhere.
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

std::string cuda_gpu_of(int device_index) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return "";
  }
  char bus[32] = {};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, device_index % n) != cudaSuccess) {
    cudaGetLastError();
    return "device " + std::to_string(device_index % n);
  }
  return bus;
}

std::vector<std::pair<std::string, std::string>> cuda_runtime_report() {
  std::vector<std::pair<std::string, std::string>> r;
  const auto version = [](int v) { return str_cat(v / 1000, ".", (v % 1000) / 10); };
  int driver = 0, runtime = 0;
  if (cudaDriverGetVersion(&driver) == cudaSuccess)
    r.emplace_back("cuda_driver", driver ? version(driver) : "none (no NVIDIA driver)");
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess)
    r.emplace_back("cuda_runtime", version(runtime));
  const size_t dnn = cudnnGetVersion();
  r.emplace_back("cudnn",
                 str_cat(dnn / 10000, ".", (dnn % 10000) / 100, ".", dnn % 100, " (built with ",
                         CUDNN_MAJOR, ".", CUDNN_MINOR, ".", CUDNN_PATCHLEVEL, ")"));
  int blas[3] = {0, 0, 0};
  const libraryPropertyType parts[3] = {MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL};
  for (int i = 0; i < 3; ++i) cublasGetProperty(parts[i], &blas[i]);
  r.emplace_back("cublas", str_cat(blas[0], ".", blas[1], ".", blas[2]));
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    cudaGetLastError();
    r.emplace_back("gpus", str_cat("none usable (", cudaGetErrorString(rc), ")"));
    return r;
  }
  r.emplace_back("gpus", std::to_string(n));
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    r.emplace_back(str_cat("gpu", i),
                   str_cat(p.name, ", sm_", p.major, p.minor, ", ", p.totalGlobalMem >> 20,
                           " MiB, ", p.multiProcessorCount, " SMs"));
  }
  return r;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, MathMode math) {
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess || n == 0) {
    cudaGetLastError();
    RN_FAIL("train.device 'cuda': no usable GPU ("
            << (rc != cudaSuccess ? cudaGetErrorString(rc) : "no CUDA device found") << ")");
  }
  // One GPU per rank: ranks on one node take the GPUs in turn by their local rank.
  return std::make_unique<cuda::CudaBackend>(device_index % n, math);
}

}  // namespace rn

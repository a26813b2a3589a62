// CudaBackend: device selection, transfers, layouts and reorders; the op bodies live in their
// own files. Also the entry points make_cuda_backend and cuda_available.
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

void CudaBackend::transform(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.dtype() == dst.dtype() && src.shape() == dst.shape(),
           "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
  if (src.desc().same_layout(dst.desc()) || src.shape().rank() != 4) {
    RN_CHECK(src.bytes() == dst.bytes(),
             "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
    copy_bytes(src, 0, dst, 0, src.bytes());
    return;
  }
  TensorDescriptor a, b;
  set_tensor_desc(a, src.desc());
  set_tensor_desc(b, dst.desc());
  const float one = 1.f, zero = 0.f;
  RN_CUDNN_CHECK(cudnnTransformTensor(ctx_.cudnn(), &one, a, src.data(), &zero, b, dst.data()));
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

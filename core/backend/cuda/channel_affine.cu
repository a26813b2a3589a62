// The per-channel affine accumulation of the CUDA backend, y += scale[c] * x + shift[c]: the
// cross-replica batch norm's gradient correction, on plain (NCHW) or NHWC tensors of any type.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_util.cuh"

namespace rn::cuda {
namespace {

// One thread per element in memory order, so that neighbouring threads touch neighbouring
// elements (coalesced) in NHWC and NCHW alike: both are dense, only where the channel index
// comes from differs (the fastest dimension in NHWC, every H x W elements in NCHW). Both
// operands share one layout, so one offset serves both.
template <typename T>
__global__ void channel_affine_add_kernel(T* y, const T* x, const float* scale, const float* shift,
                                          int64_t total, int64_t c, int64_t hw, bool nhwc) {
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    const int64_t ci = nhwc ? i % c : (i / hw) % c;
    y[i] = from_f<T>(to_f(y[i]) + scale[ci] * to_f(x[i]) + shift[ci]);
  }
}

}  // namespace

void CudaBackend::channel_affine_add(Tensor& y, const Tensor& x, const Tensor& scale,
                                     const Tensor& shift) {
  const Shape& s = x.shape();
  RN_CHECK(y.desc().same_layout(x.desc()) && s.rank() == 4 && scale.numel() == s[1] &&
               shift.numel() == s[1] && scale.dtype() == DType::f32 && shift.dtype() == DType::f32,
           "[channel_affine_add] " << y.desc().str() << " += " << x.desc().str() << " with "
                                   << scale.numel() << " scales and " << shift.numel()
                                   << " shifts");
  const unsigned grid = grid_for(x.numel(), kBlock);
  // strides_of accepts plain NCHW and NHWC only: both dense.
  strides_of(x.desc());
  const bool nhwc = is_nhwc(x.desc());
  switch (x.dtype()) {
#define RN_AFFINE_CASE(DT, T)                                                               \
  case DT:                                                                                  \
    channel_affine_add_kernel<T><<<grid, kBlock, 0, ctx_.stream()>>>(                       \
        static_cast<T*>(y.data()), static_cast<const T*>(x.data()), scale.data_as<float>(), \
        shift.data_as<float>(), x.numel(), s[1], s[2] * s[3], nhwc);                         \
    break;
    RN_AFFINE_CASE(DType::f32, float)
    RN_AFFINE_CASE(DType::bf16, __nv_bfloat16)
    RN_AFFINE_CASE(DType::f16, __half)
#undef RN_AFFINE_CASE
    default:
      RN_FAIL("[channel_affine_add] unsupported type " << dtype_name(x.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

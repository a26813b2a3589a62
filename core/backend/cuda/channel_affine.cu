// The per-channel affine accumulation of the CUDA backend, y += scale[c] * x + shift[c]: the
// cross-replica batch norm's gradient correction, on plain (NCHW) or NHWC tensors of any type.
// The body is channel_affine_add_body (kernels/eltwise_kernels.h).
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/eltwise_kernels.h"

namespace rn::cuda {
namespace {

template <typename T>
__global__ void channel_affine_add_kernel(T* y, const T* x, const float* scale, const float* shift,
                                          int64_t total, int64_t c, int64_t hw, bool nhwc) {
  channel_affine_add_body<DevicePtr>(DeviceThread{}, y, x, scale, shift, total, c, hw, nhwc);
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
  const LaunchShape ls = linear_launch(x.numel());
  // strides_of accepts plain NCHW and NHWC only: both dense.
  strides_of(x.desc());
  const bool nhwc = is_nhwc(x.desc());
  for_storage_type(x.dtype(), "channel_affine_add", [&](auto v) {
    using T = decltype(v);
    channel_affine_add_kernel<T><<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(
        static_cast<T*>(y.data()), static_cast<const T*>(x.data()), scale.data_as<float>(),
        shift.data_as<float>(), x.numel(), s[1], s[2] * s[3], nhwc);
  });
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

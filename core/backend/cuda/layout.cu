// The CUDA backend's layout change between NCHW (plain) and NHWC, in either direction and for
// every storage type: the tiled transpose of kernels/layout_kernels.h, moving 16- or 32-bit
// elements as bits. (cuDNN's cudnnTransformTensor documents no list of the types it takes, and
// every bf16 step crosses this change at the network's edges.)
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/layout_kernels.h"

namespace rn::cuda {
namespace {

template <typename T>
__global__ void transpose_kernel(const T* in, T* out, int64_t rows, int64_t cols) {
  transpose_body<DevicePtr>(DeviceThread{}, shared_memory<TransposeTile<T>>(), in, out, rows, cols);
}

}  // namespace

void CudaBackend::transform(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.dtype() == dst.dtype() && src.shape() == dst.shape(),
           "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
  if (src.desc().same_layout(dst.desc()) || src.shape().rank() != 4) {
    RN_CHECK(src.bytes() == dst.bytes(),
             "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
    copy_bytes(src, 0, dst, 0, src.bytes());
    return;
  }
  // Both are plain or NHWC (strides_of refuses a layout of another backend).
  strides_of(src.desc());
  strides_of(dst.desc());
  const Shape& s = src.shape();
  const int64_t batch = s[0], c = s[1], hw = s[2] * s[3];
  // Per image: NCHW -> NHWC moves C x HW into HW x C, and back.
  const bool to_nhwc = is_nhwc(dst.desc());
  const int64_t rows = to_nhwc ? c : hw, cols = to_nhwc ? hw : c;
  if (batch * rows * cols == 0) return;
  const LaunchShape ls = transpose_launch(batch, rows, cols);
  RN_CHECK(batch <= 65535 && ls.grid.y <= 65535,
           "[reorder] " << s.str() << " is beyond the layout kernel's grid (65535 images, "
                        << 65535 * kTransposeTile << " rows)");
  cudaStream_t st = ctx_.stream();
  switch (dtype_size(src.dtype())) {
    case 2:
      transpose_kernel<uint16_t><<<grid_of(ls), block_of(ls), 0, st>>>(
          static_cast<const uint16_t*>(src.data()), static_cast<uint16_t*>(dst.data()), rows, cols);
      break;
    case 4:
      transpose_kernel<uint32_t><<<grid_of(ls), block_of(ls), 0, st>>>(
          static_cast<const uint32_t*>(src.data()), static_cast<uint32_t*>(dst.data()), rows, cols);
      break;
    default:
      RN_FAIL("[reorder] no layout change for " << dtype_name(src.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

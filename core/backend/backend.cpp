// Backend selection by device, and the shape arithmetic both backends share.
#include "core/backend/backend.h"

#include "core/backend/batch_norm_paths.h"

#include "core/check.h"

namespace rn {

Shape conv_output_shape(const ConvParams& p, const Shape& x) {
  const int64_t c = x[1], h = x[2], w = x[3];
  RN_CHECK(p.groups >= 1 && c % p.groups == 0 && p.out_channels % p.groups == 0,
           "[conv] channels " << c << " -> " << p.out_channels << " not divisible by groups "
                              << p.groups);
  const int64_t span = static_cast<int64_t>(p.dilation) * (p.kernel - 1) + 1;
  const int64_t oh = (h + 2 * p.pad - span) / p.stride + 1;
  const int64_t ow = (w + 2 * p.pad - span) / p.stride + 1;
  RN_CHECK(oh > 0 && ow > 0, "[conv] input " << x.str() << " too small for kernel " << p.kernel
                                             << " stride " << p.stride);
  return Shape{x[0], p.out_channels, oh, ow};
}

MathChoice math_choice(DType storage, MathMode mode) {
  if (storage != DType::f32) return MathChoice{.tensor_cores = true, .tf32 = false};
  return mode == MathMode::fast ? MathChoice{.tensor_cores = true, .tf32 = true}
                                : MathChoice{.tensor_cores = false, .tf32 = false};
}

const char* cuda_batch_norm_path_name(CudaBatchNormPath p) {
  switch (p) {
    case CudaBatchNormPath::fused_relu_persistent:
      return "fused_relu_persistent";
    case CudaBatchNormPath::persistent:
      return "persistent";
    case CudaBatchNormPath::spatial:
      return "spatial";
    case CudaBatchNormPath::f32_copy:
      return "f32_copy";
    case CudaBatchNormPath::native:
      return "native";
  }
  return "?";
}

std::vector<CudaBatchNormPath> cuda_batch_norm_paths(DType t, bool fuse_relu, const char* forced) {
  using P = CudaBatchNormPath;
  if (forced) {
    std::string names;
    for (P p : {P::fused_relu_persistent, P::persistent, P::spatial, P::f32_copy, P::native}) {
      if (cuda_batch_norm_path_name(p) != std::string(forced)) {
        names += std::string(names.empty() ? "" : ", ") + cuda_batch_norm_path_name(p);
        continue;
      }
      RN_CHECK(p != P::fused_relu_persistent || fuse_relu,
               "RESNET_CUDA_BATCH_NORM_PATH: 'fused_relu_persistent' on a batch norm that no ReLU "
               "follows (its reserve space is the fused ReLU's workspace); choose persistent, "
               "spatial, f32_copy or native, or unset it");
      return {p};
    }
    RN_FAIL("RESNET_CUDA_BATCH_NORM_PATH: unknown batch-norm path '" << forced << "'; one of "
                                                                     << names);
  }
  switch (t) {
    case DType::f16:
      if (fuse_relu) return {P::fused_relu_persistent, P::persistent, P::spatial, P::f32_copy};
      return {P::persistent, P::spatial, P::f32_copy};
    case DType::f32:
      return {P::persistent, P::spatial};
    case DType::bf16:
      return {P::native, P::f32_copy};
    default:
      RN_FAIL("[batch_norm] no batch norm for " << dtype_name(t) << " data");
  }
}

std::unique_ptr<Backend> make_backend(Device device, int threads) {
  if (device.kind == DeviceKind::cuda) return make_cuda_backend(device.index);
  return make_cpu_backend(threads);
}

}  // namespace rn

// The ways the CUDA batch norm may run, best first, for a storage type: a plain function of the
// documented cuDNN support, so that the choice is tested on machines without a GPU.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace rn {

enum class CudaBatchNormPath {
  fused_relu_persistent,  // CUDNN_BATCHNORM_OPS_BN_ACTIVATION, SPATIAL_PERSISTENT, NHWC
  persistent,             // CUDNN_BATCHNORM_OPS_BN, SPATIAL_PERSISTENT
  spatial,                // CUDNN_BATCHNORM_OPS_BN, SPATIAL
  f32_copy,               // fp32 kernels on an fp32 copy of bf16 data, cast back
  native,                 // the project's own NHWC kernels (+ ReLU), any storage type
};

// fp16: fused with ReLU where asked (cuDNN documents the fused NHWC kernel for half), then
// persistent, spatial, and the fp32 copy last. fp32: persistent, spatial. bf16: the project's
// own kernels, then the fp32 copy: cuDNN's batch-norm entry points document half, float and
// double data, not bfloat16, and PyTorch never sends bf16 batch norm to cuDNN either.
// `forced` (the environment's RESNET_CUDA_BATCH_NORM_PATH, when set) replaces the list by the
// path of that name; an unknown name is an error listing the names, and the fused path forced on
// a batch norm without a ReLU to fuse is refused (its reserve space is the fused ReLU's
// workspace, which such a layer does not have).
std::vector<CudaBatchNormPath> cuda_batch_norm_paths(DType t, bool fuse_relu,
                                                     const char* forced = nullptr);
const char* cuda_batch_norm_path_name(CudaBatchNormPath p);

// Whether a cuDNN status refuses a configuration (which sends the batch norm to its next path)
// rather than reporting an error: CUDNN_STATUS_NOT_SUPPORTED (3000) and, since cuDNN 9, its
// sub-codes 3001-3999 (CUDNN_STATUS_NOT_SUPPORTED_SHAPE, ..._LAYOUT, ...: the statuses whose
// CUDNN_STATUS_CATEGORY is CUDNN_STATUS_NOT_SUPPORTED). Arithmetic on the value, so that it is
// tested without cuDNN; batch_norm.cpp checks the constants against cudnn_graph.h.
constexpr int kCudnnStatusNotSupported = 3000;
constexpr bool cudnn_status_is_refusal(int status) {
  return status / 1000 * 1000 == kCudnnStatusNotSupported;
}

}  // namespace rn

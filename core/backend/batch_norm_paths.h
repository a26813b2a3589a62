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
};

// fp16: fused with ReLU where asked (cuDNN documents the fused NHWC kernel for half), then
// persistent, spatial, and the fp32 copy last. fp32: persistent, spatial. bf16: the fp32 copy
// only: cuDNN's batch-norm entry points document half, float and double data, not bfloat16, and
// PyTorch never sends bf16 batch norm to cuDNN either.
std::vector<CudaBatchNormPath> cuda_batch_norm_paths(DType t, bool fuse_relu);

}  // namespace rn

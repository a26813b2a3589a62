// Parameter structs of the op set: small, named fields instead of long argument lists.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace rn {

// How a CPU backend computes the 3x3 convolutions of stride 1 in fp32, for which oneDNN also has
// Winograd F(4x4, 3x3) kernels (jit_wino_4x3): `direct` always; `winograd` wherever oneDNN runs
// it; `automatic` per layer and pass by a model measured on the layers' shapes (conv.cpp's
// winograd_wins). Other convolutions (1x1, strided, grouped, bf16) are direct whatever the
// choice. CUDA keeps cuDNN's own measured choice.
enum class ConvAlgorithm { automatic, direct, winograd };
// The passes of a convolution, each with its own algorithm.
enum class ConvPass { forward, backward_data, backward_weights };

struct ConvParams {
  int out_channels = 0;
  int kernel = 3;  // square kernels only: every network of the papers uses them
  int stride = 1;
  int pad = 1;
  int dilation = 1;
  int groups = 1;
  bool bias = false;
};

struct BatchNormParams {
  double eps = 1e-5;
  bool fuse_relu = false;  // y = max(bn(x), 0) in one pass, with a bitmask for backward
};

enum class PoolKind { max, avg };
struct PoolParams {
  PoolKind kind = PoolKind::max;
  int kernel = 3;
  int stride = 2;
  int pad = 1;
  bool global = false;  // average over the whole H x W (kernel/stride/pad ignored)
};

struct LinearParams {
  int out_features = 0;
  bool bias = true;
};

// PyTorch's SGD: d = g + wd*w; m = momentum*m + d; d = nesterov ? d + momentum*m : m; w -= lr*d.
struct SgdParams {
  float lr = 0.1f;
  float momentum = 0.9f;
  float weight_decay = 0.f;
  bool nesterov = false;
};

// LARS (You et al. 2017): the step of each tensor is scaled by
// trust = eta * |w| / (|g| + wd * |w|), then SGD with momentum.
struct LarsParams {
  float lr = 0.1f;
  float momentum = 0.9f;
  float weight_decay = 0.f;
  float eta = 0.001f;
};

// How fp32 convolutions and matrix products may round on CUDA. `fast` lets them use TF32 tensor
// cores (10-bit mantissa products, fp32 accumulation: cuDNN's default math on Ampere and later,
// cuBLAS's COMPUTE_32F_FAST_TF32), as PyTorch does for convolutions; `exact` keeps full fp32
// (CUDNN_FMA_MATH, CUBLAS_COMPUTE_32F), for finite-difference checks. bf16 and fp16 use tensor
// cores in both (their products are exact in fp32 accumulators).
enum class MathMode : uint8_t { fast, exact };

// What a math mode allows for one storage type; the CUDA backend turns it into cuDNN's math
// type and cuBLAS's compute type.
struct MathChoice {
  bool tensor_cores = true;  // may use tensor-core kernels at all
  bool tf32 = false;         // fp32 inputs rounded to TF32 on them
};
MathChoice math_choice(DType storage, MathMode mode);

struct CrossEntropyParams {
  float label_smoothing = 0.f;
};

// Result of softmax cross-entropy over a batch: the mean loss and the correct counts.
struct LossStats {
  double loss = 0;  // mean over the batch
  int64_t top1 = 0;
  int64_t top5 = 0;
};

}  // namespace rn

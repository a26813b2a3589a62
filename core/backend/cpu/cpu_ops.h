// Constructors of the oneDNN op objects, one per file (conv.cpp, batch_norm.cpp, pool.cpp,
// linear.cpp); the element-wise ops, loss and optimizers are plain functions.
#pragma once

#include <memory>

#include "core/backend/backend.h"
#include "core/backend/cpu/dnnl_common.h"

namespace rn::cpu {

std::unique_ptr<ConvOp> make_conv(DnnlContext& ctx, const ConvParams& p, const TensorDesc& x,
                                  bool training);
std::unique_ptr<BatchNormOp> make_batch_norm(DnnlContext& ctx, const BatchNormParams& p,
                                             const TensorDesc& x, bool training);
std::unique_ptr<PoolOp> make_pool(DnnlContext& ctx, const PoolParams& p, const TensorDesc& x,
                                  bool training);
std::unique_ptr<LinearOp> make_linear(DnnlContext& ctx, const LinearParams& p, const TensorDesc& x);

// True when oneDNN fell back to its reference (slow) implementation.
inline bool is_reference_impl(const char* impl) {
  return std::string(impl).rfind("ref", 0) == 0;
}

}  // namespace rn::cpu

// Host side of the CUDA sources' launches: a LaunchShape as CUDA's dim3, and the C++ storage type
// of a DType, so that one generic lambda launches a kernel for every type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/backend/cuda/kernels/kernel_thread.h"
#include "core/check.h"
#include "core/tensor.h"

namespace rn::cuda {

inline dim3 grid_of(const LaunchShape& l) {
  return dim3(l.grid.x, l.grid.y, l.grid.z);
}
inline dim3 block_of(const LaunchShape& l) {
  return dim3(l.block.x, l.block.y, l.block.z);
}

// Calls run(T{}) with T the storage type of `t` (float, __nv_bfloat16 or __half); any other type
// is an error naming `op`.
template <typename Run>
void for_storage_type(DType t, const char* op, Run run) {
  switch (t) {
    case DType::f32:
      run(float{});
      break;
    case DType::bf16:
      run(__nv_bfloat16{});
      break;
    case DType::f16:
      run(__half{});
      break;
    default:
      RN_FAIL("[" << op << "] unsupported type " << dtype_name(t));
  }
}

}  // namespace rn::cuda

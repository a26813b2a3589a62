// Device helpers shared by the CUDA kernels: fp32 arithmetic on any storage type (f32, bf16,
// f16), 16-byte vectors, and the launch shape.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace rn::cuda {

// Threads per block of the element-wise kernels: enough warps to hide memory latency, few
// enough that small tensors still spread over many blocks.
constexpr int kBlock = 256;

__device__ __forceinline__ float to_f(float v) {
  return v;
}
__device__ __forceinline__ float to_f(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_f(__half v) {
  return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_f<__half>(float v) {
  return __float2half_rn(v);
}

// 16 bytes per load and store: element-wise kernels are bound by memory bandwidth, and one
// 128-bit access moves four floats or eight bf16 values in a single transaction. `N` = 1 is the
// scalar fallback of kernels templated on the width.
template <typename T, int N = static_cast<int>(16 / sizeof(T))>
struct alignas(sizeof(T) * N) Vec {
  static constexpr int kN = N;
  T v[N];
};

// The index of this thread in a grid-stride loop, and the stride.
__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

// Multi-tensor kernels take up to kMultiTensors tensors as kernel arguments (a launch takes at
// most 4 KB of them); each block handles one chunk of kMultiChunk elements of one tensor.
// `first_block[t]` is tensor t's first block (a prefix sum over the tensors' chunk counts);
// this block's tensor is the last t with first_block[t] <= blockIdx.x, found by binary search.
constexpr int kMultiTensors = 64;
constexpr int64_t kMultiChunk = 4096;
__device__ __forceinline__ int multi_tensor_of_block(const int64_t* first_block, int count) {
  const int64_t b = blockIdx.x;
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first_block[mid] <= b)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}
// Host side: adds a tensor of n > 0 elements to a list with the fields n, first_block and count
// (the caller fills its pointers at the returned slot, and launches when count reaches
// kMultiTensors).
template <typename List>
int multi_tensor_add(List& list, int64_t n) {
  const int k = list.count;
  list.n[k] = n;
  if (k == 0) list.first_block[0] = 0;
  list.first_block[k + 1] = list.first_block[k] + (n + kMultiChunk - 1) / kMultiChunk;
  list.count = k + 1;
  return k;
}

}  // namespace rn::cuda

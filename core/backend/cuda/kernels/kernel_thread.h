// What a kernel body of the CUDA backend sees: its thread's indices and launch shape, the block
// barrier, atomics, fp32 arithmetic on any storage type and 16-byte vector access. The bodies in
// this folder are written against these alone, so that each runs in its `__global__` wrapper on
// the GPU (DeviceThread, raw pointers) and in the tests' grid emulator on the CPU (an emulated
// thread, pointers that check every index and vector alignment): see
// tests/core/backend/kernel_emulator.h. Plain C++ outside nvcc; nothing here needs the toolkit.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
// Bodies are device functions in the CUDA sources, and ordinary inline functions elsewhere.
#define RN_KERNEL_FN __device__ __forceinline__
#define RN_UNROLL _Pragma("unroll")
#else
#define RN_KERNEL_FN inline
#define RN_UNROLL
#endif

namespace rn::cuda {

// Threads per block of the element-wise kernels: enough warps to hide memory latency, few
// enough that small tensors still spread over many blocks.
constexpr int kBlock = 256;

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// The grid and block of one launch, as the host code computes them; the emulator runs the same.
struct LaunchShape {
  Dim3 grid, block;
};

// Ceil-divided launch grid for `n` items with `block` threads, capped: the kernels stride over
// the rest (grid-stride loops), so one launch shape serves every size.
inline unsigned grid_for(int64_t n, int block) {
  const int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 65535 ? 65535 : g));
}
// A one-dimensional launch of `kBlock` threads over `n` items.
inline LaunchShape linear_launch(int64_t n) {
  return LaunchShape{Dim3{grid_for(n, kBlock)}, Dim3{static_cast<unsigned>(kBlock)}};
}

// A 4-D tensor's logical dimensions (tensors of another rank: n = numel, c = h = w = 1), and the
// element strides (n, c, h, w) of a 4-D plain (NCHW) or NHWC one.
struct Dims4 {
  int64_t n, c, h, w;
  RN_KERNEL_FN int64_t numel() const { return n * c * h * w; }
};
struct Strides4 {
  int64_t n, c, h, w;
};
// The logical (n, c, h, w) of the element at memory offset i of a dense NHWC or NCHW tensor.
struct Coords4 {
  int64_t n, c, h, w;
};
RN_KERNEL_FN Coords4 nhwc_coords(int64_t i, const Dims4& d) {
  Coords4 k;
  k.c = i % d.c, i /= d.c, k.w = i % d.w, i /= d.w, k.h = i % d.h, k.n = i / d.h;
  return k;
}
RN_KERNEL_FN Coords4 nchw_coords(int64_t i, const Dims4& d) {
  Coords4 k;
  k.w = i % d.w, i /= d.w, k.h = i % d.h, i /= d.h, k.c = i % d.c, k.n = i / d.c;
  return k;
}

// Raw device pointers: the memory space of the `__global__` wrappers. The emulator passes its
// own checked pointer template instead (bodies take the space as a template parameter `P`).
template <typename T>
using DevicePtr = T*;

#if defined(__CUDACC__)
// The block's shared memory as an `S`: __shared__ variables take no constructor, so the bytes are
// declared and viewed as S (one variable per S and kernel).
template <typename S>
__device__ __forceinline__ S& shared_memory() {
  __shared__ alignas(S) unsigned char raw[sizeof(S)];
  return *reinterpret_cast<S*>(raw);
}

// A thread of a real launch: the built-in indices, __syncthreads and hardware atomics.
struct DeviceThread {
  __device__ unsigned block_x() const { return blockIdx.x; }
  __device__ unsigned block_y() const { return blockIdx.y; }
  __device__ unsigned block_z() const { return blockIdx.z; }
  __device__ unsigned thread_x() const { return threadIdx.x; }
  __device__ unsigned thread_y() const { return threadIdx.y; }
  __device__ unsigned block_dim_x() const { return blockDim.x; }
  __device__ unsigned grid_dim_x() const { return gridDim.x; }
  // This thread's index in a grid-stride loop over x, and the stride.
  __device__ int64_t global_x() const {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  }
  __device__ int64_t stride_x() const { return static_cast<int64_t>(blockDim.x) * gridDim.x; }
  __device__ void sync() const { __syncthreads(); }
  template <typename T>
  __device__ void atomic_add(T* p, T v) const {
    atomicAdd(p, v);
  }
};
#endif

// fp32 arithmetic on a storage type: StorageOf<T>::load to float, ::store back with
// round-to-nearest-even. The emulator adds its host bf16 and f16 types.
template <typename T>
struct StorageOf;
template <>
struct StorageOf<float> {
  RN_KERNEL_FN static float load(float v) { return v; }
  RN_KERNEL_FN static float store(float v) { return v; }
};
#if defined(__CUDACC__)
template <>
struct StorageOf<__nv_bfloat16> {
  RN_KERNEL_FN static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  RN_KERNEL_FN static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};
template <>
struct StorageOf<__half> {
  RN_KERNEL_FN static float load(__half v) { return __half2float(v); }
  RN_KERNEL_FN static __half store(float v) { return __float2half_rn(v); }
};
#endif

template <typename T>
RN_KERNEL_FN float to_f(T v) {
  return StorageOf<T>::load(v);
}
template <typename T>
RN_KERNEL_FN T from_f(float v) {
  return StorageOf<T>::store(v);
}

// The element type a pointer of any memory space points to (without const).
template <typename P>
using element_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<P>()[0])>>;

// 16 bytes per load and store: element-wise kernels are bound by memory bandwidth, and one
// 128-bit access moves four floats or eight bf16 values in a single transaction. `N` = 1 is the
// scalar fallback of kernels templated on the width.
template <typename T, int N = static_cast<int>(16 / sizeof(T))>
struct alignas(sizeof(T) * N) Vec {
  static constexpr int kN = N;
  T v[N];
};

// Vector `i` (elements i * V::kN ...) of a raw pointer; the emulator's checked pointers have their
// own overloads, found by argument-dependent lookup.
template <typename V, typename T>
RN_KERNEL_FN V load_vec(const T* p, int64_t i) {
  return reinterpret_cast<const V*>(p)[i];
}
template <typename V, typename T>
RN_KERNEL_FN void store_vec(T* p, int64_t i, const V& v) {
  reinterpret_cast<V*>(p)[i] = v;
}

// The widest vector (16 bytes) whose element count divides `multiple_of` and whose alignment every
// pointer has; 1 otherwise (the scalar path). Host code chooses a body's width with it.
template <typename T, typename... Ptrs>
inline int vector_width(int64_t multiple_of, const Ptrs*... ptrs) {
  constexpr int kWide = Vec<T>::kN;
  uintptr_t bits = 0;
  ((bits |= reinterpret_cast<uintptr_t>(ptrs)), ...);
  return multiple_of % kWide == 0 && bits % alignof(Vec<T>) == 0 ? kWide : 1;
}

// Math that differs between the device and the host by name only.
RN_KERNEL_FN int64_t kmin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
RN_KERNEL_FN float kexp_fast(float v) {
#if defined(__CUDA_ARCH__)
  return __expf(v);
#else
  return std::exp(v);
#endif
}
RN_KERNEL_FN float krsqrt(float v) {
#if defined(__CUDA_ARCH__)
  return rsqrtf(v);
#else
  return 1.f / std::sqrt(v);
#endif
}
RN_KERNEL_FN float kfma(float a, float b, float c) {  // one rounding, on both sides
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
RN_KERNEL_FN double ksqrt(double v) {
#if defined(__CUDA_ARCH__)
  return sqrt(v);
#else
  return std::sqrt(v);
#endif
}
RN_KERNEL_FN double kexp(double v) {
#if defined(__CUDA_ARCH__)
  return exp(v);
#else
  return std::exp(v);
#endif
}
RN_KERNEL_FN double klog(double v) {
#if defined(__CUDA_ARCH__)
  return log(v);
#else
  return std::log(v);
#endif
}
RN_KERNEL_FN bool kisfinite(float v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

// Multi-tensor kernels take up to kMultiTensors tensors as kernel arguments (a launch takes at
// most 4 KB of them); each block handles one chunk of kMultiChunk elements of one tensor.
// `first_block[t]` is tensor t's first block (a prefix sum over the tensors' chunk counts);
// block `b`'s tensor is the last t with first_block[t] <= b, found by binary search.
constexpr int kMultiTensors = 64;
constexpr int64_t kMultiChunk = 4096;
RN_KERNEL_FN int multi_tensor_of_block(const int64_t* first_block, int count, int64_t b) {
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
// kMultiTensors). The launch is first_block[count] blocks of kBlock threads.
template <typename List>
int multi_tensor_add(List& list, int64_t n) {
  const int k = list.count;
  list.n[k] = n;
  if (k == 0) list.first_block[0] = 0;
  list.first_block[k + 1] = list.first_block[k] + (n + kMultiChunk - 1) / kMultiChunk;
  list.count = k + 1;
  return k;
}
template <typename List>
LaunchShape multi_tensor_launch(const List& list) {
  return LaunchShape{Dim3{static_cast<unsigned>(list.first_block[list.count])},
                     Dim3{static_cast<unsigned>(kBlock)}};
}

}  // namespace rn::cuda

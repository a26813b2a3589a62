// A grid emulator for the CUDA backend's kernel bodies (core/backend/cuda/kernels/): it runs a
// body over the launch shape the backend computes, on the CPU, with pointers that check every
// index against their buffer's extent and every 16-byte vector access for alignment, so that a
// kernel's index math is tested on machines without a GPU.
//
// Kernels without barriers run as a loop over blocks and threads. Kernels with shared memory and
// __syncthreads run each block's threads as fibers (ucontext): every thread runs up to the
// barrier, then the next phase begins, in thread order. That is the semantics of the barrier
// itself rather than of one schedule of it, it needs no rewrite of a body into phases, and a
// block of 256 threads costs 256 small stacks instead of 256 system threads. A barrier that some
// threads of a block never reach (they returned) fails the launch, as does a barrier in a launch
// declared without them. Shared memory starts as 0xff bytes (NaN in floats) in every block, so a
// read before the write that should precede it shows in the result.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/backend/cuda/kernels/kernel_thread.h"

namespace rn::cuda::emu {

// Host storage types with the bits of CUDA's __nv_bfloat16 and __half.
struct Bf16 {
  uint16_t bits;
};
struct Half {
  uint16_t bits;
};
// Conversions as the device's __float2bfloat16_rn / __float2half_rn (round to nearest even; NaN
// stays NaN) and back. Inline: the emulated kernels convert every element they touch.
inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(bits >> 16);
}
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

}  // namespace rn::cuda::emu

namespace rn::cuda {
template <>
struct StorageOf<emu::Bf16> {
  static float load(emu::Bf16 v) { return emu::bf16_to_float(v.bits); }
  static emu::Bf16 store(float v) { return emu::Bf16{emu::float_to_bf16(v)}; }
};
template <>
struct StorageOf<emu::Half> {
  static float load(emu::Half v) { return emu::half_to_float(v.bits); }
  static emu::Half store(float v) { return emu::Half{emu::float_to_half(v)}; }
};
}  // namespace rn::cuda

namespace rn::cuda::emu {

// What a faulting access says: the kernel, the thread, the buffer and the index.
class KernelFault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fault(const std::string& what);

// A pointer into an emulated device buffer: `base` is the buffer's first element, `size` its
// element count, `offset` where this pointer points. Indexing checks the element lies inside the
// buffer; the vector accesses (load_vec / store_vec below) check the whole vector and its
// alignment. A default-constructed one is null.
template <typename T>
class Checked {
 public:
  Checked() = default;
  Checked(T* base, int64_t size, const char* name, int64_t offset = 0)
      : base_(base), size_(size), offset_(offset), name_(name) {}
  // T* converts to const T*.
  template <typename U,
            typename = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  Checked(const Checked<U>& o)  // NOLINT: as implicit as the pointer conversion it stands for
      : base_(o.base()), size_(o.size()), offset_(o.offset()), name_(o.name()) {}

  explicit operator bool() const { return base_ != nullptr; }
  T& operator[](int64_t i) const { return base_[element(i, 1, 1)]; }
  Checked operator+(int64_t k) const { return Checked(base_, size_, name_, offset_ + k); }

  // The buffer index of elements i .. i + count - 1 from here, after checking them; `align` is
  // the alignment in bytes the access needs.
  int64_t element(int64_t i, int count, size_t align) const;

  T* base() const { return base_; }
  int64_t size() const { return size_; }
  int64_t offset() const { return offset_; }
  const char* name() const { return name_; }

 private:
  T* base_ = nullptr;
  int64_t size_ = 0, offset_ = 0;
  const char* name_ = "";
};

// The running thread's description for fault messages: "[kernel K] block (x,y,z) thread (x,y,z)".
std::string running_thread();

template <typename T>
int64_t Checked<T>::element(int64_t i, int count, size_t align) const {
  if (!base_) fault(running_thread() + ": access through a null pointer ('" + name_ + "')");
  const int64_t first = offset_ + i;
  if (first < 0 || first + count > size_)
    fault(running_thread() + ": '" + name_ + "'[" + std::to_string(first) +
          (count > 1 ? ".." + std::to_string(first + count - 1) : std::string()) +
          "] is outside its " + std::to_string(size_) + " elements");
  const auto address = reinterpret_cast<uintptr_t>(base_ + first);
  if (address % align != 0)
    fault(running_thread() + ": " + std::to_string(count * sizeof(T)) + "-byte access to '" +
          name_ + "'[" + std::to_string(first) + "] at an address " +
          std::to_string(address % align) + " bytes past a " + std::to_string(align) +
          "-byte boundary (misaligned)");
  return first;
}

// Vector i (elements i * V::kN ...) through a checked pointer: bounds and alignment.
template <typename V, typename T>
V load_vec(const Checked<T>& p, int64_t i) {
  const int64_t e = p.element(i * V::kN, V::kN, alignof(V));
  V v;
  std::memcpy(&v, p.base() + e, sizeof(V));
  return v;
}
template <typename V, typename T>
void store_vec(const Checked<T>& p, int64_t i, const V& v) {
  const int64_t e = p.element(i * V::kN, V::kN, alignof(V));
  std::memcpy(p.base() + e, &v, sizeof(V));
}

// Emulated device memory: 256-byte aligned as cudaMalloc's, filled with `fill`.
template <typename T>
class Buffer {
 public:
  Buffer(std::string name, int64_t size, T fill = T{}) : name_(std::move(name)), size_(size) {
    const size_t bytes =
        (std::max<size_t>(static_cast<size_t>(size) * sizeof(T), 1) + 255) / 256 * 256;
    data_.reset(static_cast<T*>(std::aligned_alloc(256, bytes)));
    for (int64_t i = 0; i < size; ++i) data_.get()[i] = fill;
  }
  Buffer(std::string name, const std::vector<T>& values)
      : Buffer(std::move(name), int64_t(values.size())) {
    std::copy(values.begin(), values.end(), data_.get());
  }
  // A pointer to element `offset` (a sub-tensor or a bucket slice).
  Checked<T> ptr(int64_t offset = 0) {
    return Checked<T>(data_.get(), size_, name_.c_str(), offset);
  }
  Checked<const T> cptr(int64_t offset = 0) const {
    return Checked<const T>(data_.get(), size_, name_.c_str(), offset);
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  int64_t size() const { return size_; }
  T& operator[](int64_t i) { return data_.get()[i]; }
  std::vector<T> values() const { return std::vector<T>(data_.get(), data_.get() + size_); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::string name_;
  int64_t size_;
  std::unique_ptr<T, Free> data_;
};

class Grid;

// One emulated thread: the indices of kernel_thread.h's DeviceThread, its barrier and atomics.
class EmulatedThread {
 public:
  EmulatedThread(const Grid& grid, Dim3 block, Dim3 thread, const LaunchShape& shape)
      : grid_(&grid), block_(block), thread_(thread), shape_(shape) {}
  unsigned block_x() const { return block_.x; }
  unsigned block_y() const { return block_.y; }
  unsigned block_z() const { return block_.z; }
  unsigned thread_x() const { return thread_.x; }
  unsigned thread_y() const { return thread_.y; }
  unsigned block_dim_x() const { return shape_.block.x; }
  unsigned grid_dim_x() const { return shape_.grid.x; }
  int64_t global_x() const { return static_cast<int64_t>(block_.x) * shape_.block.x + thread_.x; }
  int64_t stride_x() const { return static_cast<int64_t>(shape_.block.x) * shape_.grid.x; }
  void sync() const;
  // One thread runs at a time: a plain addition is the atomic one.
  template <typename T>
  void atomic_add(T* p, T v) const {
    *p += v;
  }
  Dim3 block() const { return block_; }
  Dim3 thread() const { return thread_; }

 private:
  const Grid* grid_;
  Dim3 block_, thread_;
  LaunchShape shape_;
};

// Runs kernel bodies over launch shapes. `run` is for bodies without barriers: a loop over blocks
// and threads. `run_with_shared` gives each block a fresh S (0xff bytes) and runs its threads as
// fibers between barriers. Both throw KernelFault naming the kernel and thread that failed.
// `keep`, where given, picks the blocks that run of a launch too large to emulate whole (each
// block's index math is the same function of its indices: the first and last blocks of each
// dimension are the ones to keep).
class Grid {
 public:
  using BlockFilter = std::function<bool(const Dim3& block)>;

  Grid();
  ~Grid();
  Grid(const Grid&) = delete;
  Grid& operator=(const Grid&) = delete;

  template <typename Body>
  void run(const char* kernel, const LaunchShape& shape, Body body, const BlockFilter& keep = {}) {
    run_plain(
        kernel, shape, [&](const EmulatedThread& th) { body(th); }, keep);
  }
  template <typename S, typename Body>
  void run_with_shared(const char* kernel, const LaunchShape& shape, Body body,
                       const BlockFilter& keep = {}) {
    static_assert(std::is_trivially_destructible_v<S>, "shared memory holds plain values");
    std::vector<unsigned char> raw(sizeof(S) + alignof(S));
    void* p = raw.data();
    size_t space = raw.size();
    S* shared = static_cast<S*>(std::align(alignof(S), sizeof(S), p, space));
    run_fibers(
        kernel, shape, shared, sizeof(S), [&](const EmulatedThread& th) { body(th, *shared); },
        keep);
  }

  // Totals over every launch so far, for tests of the emulator itself.
  int64_t threads_run() const { return threads_run_; }
  int64_t barriers_passed() const { return barriers_passed_; }

  // Suspends the running fiber at its block's barrier (EmulatedThread::sync).
  void barrier() const;
  // The fibers of one block (kernel_emulator.cpp).
  struct Fibers;

 private:
  using ThreadBody = std::function<void(const EmulatedThread&)>;
  void run_plain(const char* kernel, const LaunchShape& shape, const ThreadBody& body,
                 const BlockFilter& keep);
  void run_fibers(const char* kernel, const LaunchShape& shape, void* shared, size_t shared_bytes,
                  const ThreadBody& body, const BlockFilter& keep);

  std::unique_ptr<Fibers> fibers_;
  int64_t threads_run_ = 0;
  mutable int64_t barriers_passed_ = 0;
};

// Host copies of values in a storage type, and back.
template <typename T>
std::vector<T> stored(const std::vector<float>& v) {
  std::vector<T> out;
  out.reserve(v.size());
  for (float f : v) out.push_back(from_f<T>(f));
  return out;
}
template <typename T>
std::vector<float> loaded(const std::vector<T>& v) {
  std::vector<float> out;
  out.reserve(v.size());
  for (const T& x : v) out.push_back(to_f(x));
  return out;
}

}  // namespace rn::cuda::emu

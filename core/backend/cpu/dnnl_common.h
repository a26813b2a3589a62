// Shared pieces of the oneDNN backend: the engine/stream context, oneDNN layouts as rn::Layout,
// the buffer pool, and prebuilt primitive calls that bind new pointers without allocating.
#pragma once

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <vector>

#include "core/backend/ops.h"
#include "core/check.h"
#include "core/tensor.h"

// Wraps a oneDNN call; dnnl::error carries the library's own message and status.
#define RN_DNNL_CHECK(expr)                                                                      \
  [&]() -> decltype(auto) {                                                                      \
    try {                                                                                        \
      return expr;                                                                               \
    } catch (const dnnl::error& e) {                                                             \
      ::rn::detail::throw_error(::rn::str_cat("oneDNN: ", e.what(), " (status ", e.status, ")"), \
                                #expr, __FILE__, __LINE__);                                      \
    }                                                                                            \
  }()

namespace rn::cpu {

using dnnl::memory;
using Tag = memory::format_tag;

// A oneDNN memory descriptor as the layout of an rn::Tensor.
class DnnlLayout final : public Layout {
 public:
  explicit DnnlLayout(memory::desc md) : md_(std::move(md)) {}
  const memory::desc& md() const { return md_; }
  size_t bytes() const override { return md_.get_size(); }
  bool equals(const Layout& other) const override;
  std::string str() const override;

 private:
  memory::desc md_;
};

memory::data_type dnnl_type(DType t);
memory::dims to_dims(const Shape& s);
// The row-major descriptor of `dims` (a, ab, abc, abcd, abcde).
memory::desc plain_md(const memory::dims& dims, DType t = DType::f32);
// `md` with another element type and the same blocking (oneDNN counts strides in elements, so
// any blocked format carries over, the bf16 weights' VNNI pairs too).
memory::desc retyped(const memory::desc& md, memory::data_type t);
// The descriptor a tensor's bytes follow: its layout's, or the plain one of its shape.
memory::desc md_of(const TensorDesc& d);
// The TensorDesc of logical `shape` laid out as `md`; plain when md is the plain layout of shape.
TensorDesc desc_of(const Shape& shape, const memory::desc& md, DType t = DType::f32);

// Recycles buffers: a request takes the smallest idle buffer of at least its size and at most
// twice it (best fit, so that a backward pass reuses the forward's freed activations of other
// sizes), else a new one. After the first training steps every request is a hit, so a step
// neither calls malloc nor page-faults. Thread-safe (loader threads may upload).
class PoolAllocator final : public Allocator {
 public:
  ~PoolAllocator() override;
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) noexcept override;
  size_t held_bytes() const;
  void trim();  // frees every idle buffer

 private:
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;            // idle buffers by real size
  std::unordered_map<void*, size_t> real_size_;  // every buffer handed out, by address
  size_t held_ = 0;
};

// Engine, stream, pool and the shared scratchpad every primitive uses in turn (execution is
// sequential on one stream, so one scratchpad serves all).
class DnnlContext {
 public:
  DnnlContext();
  ~DnnlContext();
  dnnl::engine& engine() { return engine_; }
  dnnl::stream& stream() { return stream_; }
  PoolAllocator& pool() { return pool_; }
  void* scratchpad(size_t bytes);
  // oneDNN runs on OpenMP, whose thread count is per calling thread, not per backend: every
  // primitive run sets this backend's count first.
  void set_threads(int n) { threads_ = n; }
  int threads() const { return threads_; }
  // Whether oneDNN dispatches AMX here (see cpu_isa_name()): the bf16 layouts depend on it.
  bool amx() const { return amx_; }
  void set_amx(bool amx) { amx_ = amx; }
  // What convolutions planned from now on run (ConvAlgorithm).
  ConvAlgorithm conv_algorithm() const { return conv_algorithm_; }
  void set_conv_algorithm(ConvAlgorithm a) { conv_algorithm_ = a; }
  // Each planned convolution pass counts its algorithm: [pass][0] direct, [pass][1] Winograd.
  void count_conv(ConvPass pass, bool winograd) {
    ++conv_counts_[static_cast<int>(pass)][winograd];
  }
  int conv_count(ConvPass pass, bool winograd) const {
    return conv_counts_[static_cast<int>(pass)][winograd];
  }
  Tensor allocate(const TensorDesc& d);
  // A primitive attribute asking for user-provided scratchpad.
  static dnnl::primitive_attr attr();

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  PoolAllocator pool_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  int threads_ = 1;
  bool amx_ = false;
  ConvAlgorithm conv_algorithm_ = ConvAlgorithm::automatic;
  int conv_counts_[3][2] = {};
};

// One primitive with its argument memories built once; each run binds the current pointers.
class BoundPrimitive {
 public:
  BoundPrimitive() = default;
  BoundPrimitive(dnnl::primitive prim, const dnnl::engine& eng,
                 const std::vector<std::pair<int, memory::desc>>& args, size_t scratchpad_bytes);
  bool valid() const { return static_cast<bool>(prim_); }
  BoundPrimitive& bind(int arg, const void* ptr);
  void run(DnnlContext& ctx);

 private:
  dnnl::primitive prim_;
  std::unordered_map<int, memory> args_;
  size_t scratchpad_bytes_ = 0;
  std::string name_;  // oneDNN's implementation name, for error messages
};

// A cached reorder between two descriptors.
class Reorderer {
 public:
  Reorderer() = default;
  Reorderer(DnnlContext& ctx, const memory::desc& from, const memory::desc& to);
  const memory::desc& from() const { return from_; }
  const memory::desc& to() const { return to_; }
  void run(DnnlContext& ctx, const void* src, void* dst);

 private:
  memory::desc from_, to_;
  BoundPrimitive prim_;
};

// Gives an op's input in the descriptor its primitive wants: the tensor's own buffer when the
// layouts agree, else a reorder into a buffer kept for the next call.
class InputAdapter {
 public:
  const void* get(DnnlContext& ctx, const Tensor& t, const memory::desc& t_md,
                  const memory::desc& want);
  // Returns the reorder buffer to the pool once the primitive has run, so that ops share
  // these buffers instead of each keeping its own (for ResNet-50, a copy of every weight).
  void release() { buffer_ = Tensor(); }

 private:
  Reorderer reorder_;
  Tensor buffer_;
};

// The converse for outputs: a buffer in the primitive's descriptor, reordered into the caller's
// tensor by finish() when the two differ.
class OutputAdapter {
 public:
  void* get(DnnlContext& ctx, Tensor& t, const memory::desc& t_md, const memory::desc& have);
  void finish(DnnlContext& ctx, Tensor& t);

 private:
  Reorderer reorder_;
  Tensor buffer_;
  bool pending_ = false;
};

}  // namespace rn::cpu

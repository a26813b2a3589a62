// The oneDNN context, layouts, pool and primitive binding shared by every CPU op.
#include "core/backend/cpu/dnnl_common.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace rn::cpu {

bool DnnlLayout::equals(const Layout& other) const {
  auto* o = dynamic_cast<const DnnlLayout*>(&other);
  return o != nullptr && o->md_ == md_;
}

std::string DnnlLayout::str() const {
  // Dimension letters outermost first, then the inner blocks, as oneDNN names tags: "aBcd16b".
  const auto& d = md_.data;
  if (d.format_kind != dnnl_blocked) return "opaque";
  const auto& b = d.format_desc.blocking;
  std::vector<int> order(d.ndims);
  for (int i = 0; i < d.ndims; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return b.strides[x] > b.strides[y]; });
  std::string s;
  for (int i : order) {
    bool blocked = false;
    for (int j = 0; j < b.inner_nblks; ++j) blocked |= b.inner_idxs[j] == i;
    s += static_cast<char>((blocked ? 'A' : 'a') + i);
  }
  for (int j = 0; j < b.inner_nblks; ++j)
    s += std::to_string(b.inner_blks[j]) + static_cast<char>('a' + b.inner_idxs[j]);
  return s;
}

memory::data_type dnnl_type(DType t) {
  switch (t) {
    case DType::f32:
      return memory::data_type::f32;
    case DType::bf16:
      return memory::data_type::bf16;
    case DType::f16:
      return memory::data_type::f16;
    case DType::i32:
      return memory::data_type::s32;
  }
  return memory::data_type::undef;
}

memory::dims to_dims(const Shape& s) {
  return memory::dims(s.dims().begin(), s.dims().end());
}

memory::desc plain_md(const memory::dims& dims, DType t) {
  memory::dims strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * dims[i + 1];
  return memory::desc(dims, dnnl_type(t), strides);
}

memory::desc retyped(const memory::desc& md, memory::data_type t) {
  if (md.data_type() == t) return md;
  dnnl_memory_desc_t d = md.data;
  d.data_type = static_cast<dnnl_data_type_t>(t);
  return memory::desc(d);
}

memory::desc md_of(const TensorDesc& d) {
  if (d.layout) {
    auto* l = dynamic_cast<const DnnlLayout*>(d.layout.get());
    RN_CHECK(l != nullptr, "[cpu] tensor has a layout of another backend: " << d.str());
    return l->md();
  }
  return plain_md(to_dims(d.shape), d.dtype);
}

TensorDesc desc_of(const Shape& shape, const memory::desc& md, DType t) {
  if (md == plain_md(md.dims(), t)) return TensorDesc{shape, t, nullptr};
  return TensorDesc{shape, t, std::make_shared<DnnlLayout>(md)};
}

PoolAllocator::~PoolAllocator() {
  trim();
}

void* PoolAllocator::allocate(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_.lower_bound(bytes);
  if (it != free_.end() && it->first <= 2 * bytes) {
    void* p = it->second;
    held_ -= it->first;
    free_.erase(it);
    return p;
  }
  void* p = host_allocator().allocate(bytes);
  real_size_[p] = bytes;
  return p;
}

void PoolAllocator::release(void* ptr, size_t) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = real_size_.find(ptr);
  try {
    free_.emplace(it->second, ptr);
    held_ += it->second;
  } catch (...) {
    host_allocator().release(ptr, it->second);
    real_size_.erase(it);
  }
}

size_t PoolAllocator::held_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

void PoolAllocator::trim() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [bytes, p] : free_) {
    host_allocator().release(p, bytes);
    real_size_.erase(p);
  }
  free_.clear();
  held_ = 0;
}

DnnlContext::DnnlContext()
    : engine_(RN_DNNL_CHECK(dnnl::engine(dnnl::engine::kind::cpu, 0))), stream_(engine_) {}

DnnlContext::~DnnlContext() {
  if (scratch_) host_allocator().release(scratch_, scratch_bytes_);
}

void* DnnlContext::scratchpad(size_t bytes) {
  if (bytes > scratch_bytes_) {
    if (scratch_) host_allocator().release(scratch_, scratch_bytes_);
    scratch_ = host_allocator().allocate(bytes);
    scratch_bytes_ = bytes;
  }
  return scratch_;
}

Tensor DnnlContext::allocate(const TensorDesc& d) {
  return Tensor(d, std::make_shared<Storage>(pool_, d.bytes(), Device{}));
}

dnnl::primitive_attr DnnlContext::attr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

BoundPrimitive::BoundPrimitive(dnnl::primitive prim, const dnnl::engine& eng,
                               const std::vector<std::pair<int, memory::desc>>& args,
                               size_t scratchpad_bytes)
    : prim_(std::move(prim)), scratchpad_bytes_(scratchpad_bytes) {
  const char* impl = nullptr;
  dnnl_primitive_desc_query(prim_.get_primitive_desc(), dnnl_query_impl_info_str, 0, &impl);
  name_ = impl ? impl : "?";
  for (const auto& [arg, md] : args) args_.emplace(arg, memory(md, eng, DNNL_MEMORY_NONE));
  if (scratchpad_bytes_ > 0)
    args_.emplace(DNNL_ARG_SCRATCHPAD,
                  memory(memory::desc({static_cast<memory::dim>(scratchpad_bytes_)},
                                      memory::data_type::u8, Tag::a),
                         eng, DNNL_MEMORY_NONE));
}

BoundPrimitive& BoundPrimitive::bind(int arg, const void* ptr) {
  auto it = args_.find(arg);
  RN_CHECK(it != args_.end(), "[cpu] primitive has no argument " << arg);
  it->second.set_data_handle(const_cast<void*>(ptr));
  return *this;
}

void BoundPrimitive::run(DnnlContext& ctx) {
  if (scratchpad_bytes_ > 0) bind(DNNL_ARG_SCRATCHPAD, ctx.scratchpad(scratchpad_bytes_));
  omp_set_num_threads(ctx.threads());
  try {
    prim_.execute(ctx.stream(), args_);
  } catch (const dnnl::error& e) {
    RN_CHECK(false, "oneDNN: " << e.what() << " (status " << e.status << ") in " << name_);
  }
}

Reorderer::Reorderer(DnnlContext& ctx, const memory::desc& from, const memory::desc& to)
    : from_(from), to_(to) {
  auto pd = RN_DNNL_CHECK(
      dnnl::reorder::primitive_desc(ctx.engine(), from, ctx.engine(), to, DnnlContext::attr()));
  prim_ =
      BoundPrimitive(dnnl::reorder(pd), ctx.engine(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}},
                     pd.scratchpad_desc().get_size());
}

void Reorderer::run(DnnlContext& ctx, const void* src, void* dst) {
  prim_.bind(DNNL_ARG_FROM, src).bind(DNNL_ARG_TO, dst).run(ctx);
}

const void* InputAdapter::get(DnnlContext& ctx, const Tensor& t, const memory::desc& t_md,
                              const memory::desc& want) {
  if (t_md == want) return t.data();
  if (!(reorder_.from() == t_md) || !(reorder_.to() == want)) reorder_ = Reorderer(ctx, t_md, want);
  buffer_ = ctx.allocate(desc_of(Shape(want.dims()), want));
  reorder_.run(ctx, t.data(), buffer_.data());
  return buffer_.data();
}

void* OutputAdapter::get(DnnlContext& ctx, Tensor& t, const memory::desc& t_md,
                         const memory::desc& have) {
  pending_ = !(t_md == have);
  if (!pending_) return t.data();
  if (!(reorder_.from() == have) || !(reorder_.to() == t_md)) reorder_ = Reorderer(ctx, have, t_md);
  buffer_ = ctx.allocate(desc_of(Shape(have.dims()), have));
  return buffer_.data();
}

void OutputAdapter::finish(DnnlContext& ctx, Tensor& t) {
  if (pending_) reorder_.run(ctx, buffer_.data(), t.data());
  pending_ = false;
  buffer_ = Tensor();
}

}  // namespace rn::cpu

// CpuBackend: op construction, transfers and reorders; the op bodies live in their own files.
#include "core/backend/cpu/cpu_backend.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "core/backend/cpu/cpu_ops.h"

namespace rn::cpu {

CpuBackend::CpuBackend(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {
  ctx_.set_threads(threads_);
  ctx_.set_amx(cpu_isa_name() == "avx512_core_amx");
}

std::string CpuBackend::conv_algorithm_summary() const {
  std::string out;
  const char* names[] = {"forward", "backward-data", "backward-weights"};
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_weights}) {
    const int wino = ctx_.conv_count(pass, true), all = wino + ctx_.conv_count(pass, false);
    if (all == 0) continue;
    out += str_cat(out.empty() ? "" : ", ", names[static_cast<int>(pass)], " ", wino, " of ", all);
  }
  return out.empty() ? out : "Winograd in " + out + " convolutions";
}

std::string CpuBackend::name() const {
  const dnnl_version_t* v = dnnl_version();
  return str_cat("cpu (oneDNN ", v->major, ".", v->minor, ".", v->patch, ", ", threads_,
                 " threads, ", cpu_isa_name(), ")");
}

LayoutPtr CpuBackend::layout_like(const TensorDesc& like, const Shape& shape) {
  if (!like.layout) return nullptr;
  if (shape == like.shape) {
    // The same blocking in like's element type: an f32 master beside its bf16 copy.
    return desc_of(shape, retyped(md_of(like), dnnl_type(like.dtype)), like.dtype).layout;
  }
  const auto& d = md_of(like).data;
  RN_CHECK(d.ndims == 4 && d.format_kind == dnnl_blocked, "[layout] unsupported " << like.str());
  const auto& b = d.format_desc.blocking;
  Tag tag = Tag::undef;
  if (b.inner_nblks == 0) {
    tag = b.strides[1] == 1 ? Tag::nhwc : Tag::nchw;
  } else if (b.inner_nblks == 1 && b.inner_idxs[0] == 1) {
    tag = b.inner_blks[0] == 16 ? Tag::nChw16c : b.inner_blks[0] == 8 ? Tag::nChw8c : Tag::nChw4c;
  }
  RN_CHECK(tag != Tag::undef, "[layout] no tag for " << like.str());
  return desc_of(shape, memory::desc(to_dims(shape), dnnl_type(like.dtype), tag), like.dtype)
      .layout;
}

Tensor CpuBackend::allocate_persistent(const TensorDesc& desc) {
  return Tensor(desc, std::make_shared<Storage>(host_allocator(), desc.bytes(), Device{}));
}

Tensor CpuBackend::upload_persistent(const Tensor& host) {
  RN_CHECK(host.is_plain(), "[upload] expects a plain host tensor");
  Tensor t = allocate_persistent(host.desc());
  std::memcpy(t.data(), host.data(), host.bytes());
  return t;
}

Tensor CpuBackend::upload(const Tensor& host) {
  RN_CHECK(host.is_plain(), "[upload] expects a plain host tensor");
  Tensor t = allocate(host.desc());
  std::memcpy(t.data(), host.data(), host.bytes());
  return t;
}

Tensor CpuBackend::download(const Tensor& t) {
  RN_CHECK(t.defined(), "[download] undefined tensor");
  Tensor out = Tensor::zeros(t.shape(), t.dtype());
  if (t.is_plain()) {
    std::memcpy(out.data(), t.data(), t.bytes());
  } else {
    const memory::desc from = md_of(t.desc());
    reorderer(from, plain_md(from.dims(), t.dtype())).run(ctx_, t.data(), out.data());
  }
  return out;
}

Reorderer& CpuBackend::reorderer(const memory::desc& from, const memory::desc& to) {
  for (auto& r : reorders_)
    if (r.from() == from && r.to() == to) return r;
  reorders_.emplace_back(ctx_, from, to);
  return reorders_.back();
}

void CpuBackend::reorder(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.numel() == dst.numel(),
           "[reorder] " << src.desc().str() << " -> " << dst.desc().str());
  memory::desc from = md_of(src.desc()), to = md_of(dst.desc());
  // Plain tensors of grouped weights are 4-D, their oneDNN layouts 5-D: same bytes.
  if (src.is_plain() && from.dims() != to.dims()) from = plain_md(to.dims(), src.dtype());
  if (dst.is_plain() && from.dims() != to.dims()) to = plain_md(from.dims(), dst.dtype());
  if (from == to) {
    std::memcpy(dst.data(), src.data(), src.bytes());
    return;
  }
  reorderer(from, to).run(ctx_, src.data(), dst.data());
}

void CpuBackend::cast(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.shape() == dst.shape(), "[cast] " << src.desc().str() << " -> " << dst.desc().str());
  reorder(src, dst);
}

std::unique_ptr<ConvOp> CpuBackend::make_conv(const ConvParams& p, const TensorDesc& x,
                                              bool training) {
  return cpu::make_conv(ctx_, p, x, training);
}

std::unique_ptr<BatchNormOp> CpuBackend::make_batch_norm(const BatchNormParams& p,
                                                         const TensorDesc& x, bool training) {
  return cpu::make_batch_norm(ctx_, p, x, training);
}

std::unique_ptr<PoolOp> CpuBackend::make_pool(const PoolParams& p, const TensorDesc& x,
                                              bool training) {
  return cpu::make_pool(ctx_, p, x, training);
}

std::unique_ptr<LinearOp> CpuBackend::make_linear(const LinearParams& p, const TensorDesc& x) {
  return cpu::make_linear(ctx_, p, x);
}

}  // namespace rn::cpu

namespace rn {
std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<cpu::CpuBackend>(threads);
}

namespace {
// The one place the CPU's instruction set is read: oneDNN's effective ISA (what it dispatches,
// capped by ONEDNN_MAX_CPU_ISA), whose bf16 kernels need AVX512-BF16 or AMX.
struct CpuIsa {
  std::string name;
  bool bf16 = false;
};
CpuIsa cpu_isa() {
  using dnnl::cpu_isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case cpu_isa::avx512_core_amx:
      return {"avx512_core_amx", true};
    case cpu_isa::avx512_core_bf16:
      return {"avx512_core_bf16", true};
    case cpu_isa::avx512_core_vnni:
      return {"avx512_core_vnni"};
    case cpu_isa::avx512_core:
      return {"avx512_core"};
    case cpu_isa::avx2_vnni:
      return {"avx2_vnni"};
    case cpu_isa::avx2:
      return {"avx2"};
    case cpu_isa::avx:
      return {"avx"};
    case cpu_isa::sse41:
      return {"sse41"};
    default:
      return {"other"};
  }
}
}  // namespace

std::string cpu_isa_name() {
  return cpu_isa().name;
}

std::string precision_unsupported(Device device, DType compute) {
  if (compute == DType::f32 || device.kind == DeviceKind::cuda) return "";
  if (compute == DType::f16) return "fp16 runs on CUDA only (on the CPU use bf16 or fp32)";
  if (compute != DType::bf16) return str_cat(dtype_name(compute), " is not a compute precision");
  const CpuIsa isa = cpu_isa();
  if (isa.bf16) return "";
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  return str_cat("bf16 on the CPU needs AMX (amx_bf16) or AVX512-BF16, and oneDNN runs ", isa.name,
                 " here", cap ? str_cat(" (ONEDNN_MAX_CPU_ISA=", cap, ")") : "", "; use fp32");
}
}  // namespace rn

#include "core/backend/cpu/winograd_conv.h"

#include <algorithm>
#include <cstring>

namespace rn::cpu {
namespace {

using winograd::kPoints;

// Tiles per chunk: a chunk's transformed input and products (36 rows of C and of K floats per
// tile) in at most `bytes`, which bounds the memory a pass takes whatever the batch (a
// 64-channel layer at 56x56 holds 115 MiB of them for a batch of 32 in one chunk); but at least
// 4 C K / (C + K) tiles, so that U (36 x C x K), which every chunk reads whole, serves enough
// products. Chunks small enough to stay in cache (2 MiB) did not pay on an AVX2 EPYC: their 36
// products are too thin for oneDNN's matmul (128 channels at 28x28 1.2x slower than one chunk).
int64_t chunk_tiles(const winograd::Geometry& g, int64_t bytes) {
  const int64_t by_memory = bytes / (kPoints * 4 * (g.c + g.k));
  const int64_t by_weights = 4 * g.c * g.k / (g.c + g.k);
  // As many chunks as that takes, of equal size: the last chunk's planes are as long as the
  // others', and a short last chunk would leave most of its products computed on zeros.
  const int64_t most = std::max(by_memory, by_weights);
  const int64_t chunks = (g.tiles() + most - 1) / most;
  return (g.tiles() + chunks - 1) / chunks;
}

// Zeros rows [from, rows) of each of the 36 planes of `rows` x `cols` floats.
void zero_tail(float* planes, int64_t rows, int64_t cols, int64_t from) {
  if (from >= rows) return;
  for (int64_t p = 0; p < kPoints; ++p)
    std::memset(planes + (p * rows + from) * cols, 0, sizeof(float) * (rows - from) * cols);
}

}  // namespace

WinogradConv::WinogradConv(DnnlContext& ctx, const winograd::Geometry& g, ConvPass pass,
                           int64_t chunk_bytes)
    : ctx_(ctx),
      g_(pass == ConvPass::backward_data ? winograd::backward_data_geometry(g) : g),
      pass_(pass),
      chunk_(chunk_tiles(g_, chunk_bytes)) {
  // M[p] = V[p] U[p] (rows x C times C x K); for backward-weights dU[p] += V[p]^T dM[p], the sum
  // over the chunks accumulated by the matmul's sum post-op.
  const auto f32 = memory::data_type::f32;
  const memory::dim p = kPoints, t = chunk_, c = g_.c, k = g_.k;
  const bool weights = pass == ConvPass::backward_weights;
  const memory::desc a = weights ? memory::desc({p, c, t}, f32, memory::dims{t * c, 1, c})
                                 : memory::desc({p, t, c}, f32, Tag::abc);
  const memory::desc b({p, weights ? t : c, k}, f32, Tag::abc);
  const memory::desc out({p, weights ? c : t, k}, f32, Tag::abc);
  dnnl::primitive_attr attr = DnnlContext::attr();
  if (weights) {
    dnnl::post_ops sum;
    sum.append_sum(1.f);
    attr.set_post_ops(sum);
  }
  const auto pd = RN_DNNL_CHECK(
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, out), attr, ctx.engine()));
  matmul_ = BoundPrimitive(dnnl::matmul(pd), ctx.engine(),
                           {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, out}},
                           pd.scratchpad_desc().get_size());
}

void WinogradConv::forward(const void* in, const void* w, void* out) {
  const int threads = ctx_.threads();
  // U from the forward's weights: K x C, or turned for backward-data (its C is their K).
  const bool rotate = pass_ == ConvPass::backward_data;
  Tensor u = scratch(kPoints * g_.c * g_.k), v = scratch(kPoints * chunk_ * g_.c),
         m = scratch(kPoints * chunk_ * g_.k);
  winograd::transform_weights(static_cast<const float*>(w), rotate ? g_.c : g_.k,
                              rotate ? g_.k : g_.c, rotate, u.data_as<float>(), threads);
  matmul_.bind(DNNL_ARG_SRC, v.data())
      .bind(DNNL_ARG_WEIGHTS, u.data())
      .bind(DNNL_ARG_DST, m.data());
  for (int64_t first = 0; first < g_.tiles(); first += chunk_) {
    const winograd::Tiles t{first, std::min(chunk_, g_.tiles() - first), chunk_};
    zero_tail(v.data_as<float>(), chunk_, g_.c, t.count);
    winograd::transform_input(g_, t, static_cast<const float*>(in), v.data_as<float>(), threads);
    matmul_.run(ctx_);
    winograd::transform_output(g_, t, m.data_as<float>(), static_cast<float*>(out), threads);
  }
}

void WinogradConv::backward_weights(const void* x, const void* dy, void* dw) {
  const int threads = ctx_.threads();
  Tensor v = scratch(kPoints * chunk_ * g_.c), dm = scratch(kPoints * chunk_ * g_.k),
         du = scratch(kPoints * g_.c * g_.k);
  std::memset(du.data(), 0, du.bytes());
  matmul_.bind(DNNL_ARG_SRC, v.data())
      .bind(DNNL_ARG_WEIGHTS, dm.data())
      .bind(DNNL_ARG_DST, du.data());
  for (int64_t first = 0; first < g_.tiles(); first += chunk_) {
    const winograd::Tiles t{first, std::min(chunk_, g_.tiles() - first), chunk_};
    zero_tail(v.data_as<float>(), chunk_, g_.c, t.count);
    zero_tail(dm.data_as<float>(), chunk_, g_.k, t.count);
    winograd::transform_input(g_, t, static_cast<const float*>(x), v.data_as<float>(), threads);
    winograd::transform_output_adjoint(g_, t, static_cast<const float*>(dy), dm.data_as<float>(),
                                       threads);
    matmul_.run(ctx_);
  }
  winograd::transform_weights_adjoint(du.data_as<float>(), g_.k, g_.c, static_cast<float*>(dw),
                                      threads);
}

}  // namespace rn::cpu

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

// Tiles per fused run: their transformed input and products in about `bytes`, in whole blocks of
// the products' accumulators.
int64_t run_tiles(const winograd::Geometry& g, int64_t bytes) {
  constexpr int64_t block = winograd::kProductRows;
  const int64_t tiles = bytes / (kPoints * 4 * (g.c + g.k));
  return std::max(block, tiles / block * block);
}

// Fused where a run of enough tiles stays in cache. Measured on 2 cores of an AVX2 EPYC, fused
// over matmul: 1.3-1.45x at 16 channels (N 128, 28x28), 1.4-1.7x at 32 (14x14) in every pass; at
// 64 channels 1.05-1.15x in forward and backward-data but 0.8x in backward-weights (its runs of
// six tiles are too short to keep dU's accumulators busy); at 128 and up 0.3-0.9x.
bool fuse(const winograd::Geometry& g, ConvPass pass) {
  return g.c + g.k <= (pass == ConvPass::backward_weights ? 64 : 128);
}

// Runs f(run, thread) for the runs of `run` tiles of g, each thread a contiguous share
// (winograd::for_each_share: backward-weights sums its threads' shares in their order, so a pass
// gives the same bits every time).
template <typename F>
void for_each_run(const winograd::Geometry& g, int64_t run, int threads, F f) {
  const int64_t runs = (g.tiles() + run - 1) / run;
  winograd::for_each_share(runs, threads, [&](int64_t begin, int64_t end, int thread) {
    for (int64_t r = begin; r < end; ++r)
      f(winograd::Tiles{r * run, std::min(run, g.tiles() - r * run), run}, thread);
  });
}

}  // namespace

WinogradConv::WinogradConv(DnnlContext& ctx, const winograd::Geometry& g, ConvPass pass,
                           WinogradProducts products, int64_t chunk_bytes, int64_t run_bytes)
    : ctx_(ctx),
      g_(pass == ConvPass::backward_data ? winograd::backward_data_geometry(g) : g),
      pass_(pass),
      chunk_(chunk_tiles(g_, chunk_bytes)) {
  if (products == WinogradProducts::fused ||
      (products == WinogradProducts::automatic && fuse(g_, pass))) {
    run_ = run_tiles(g_, run_bytes);
    return;
  }
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
  Tensor u = scratch(kPoints * g_.c * g_.k);
  winograd::transform_weights(static_cast<const float*>(w), rotate ? g_.c : g_.k,
                              rotate ? g_.k : g_.c, rotate, u.data_as<float>(), threads);
  if (fused()) {
    return forward_fused(static_cast<const float*>(in), u.data_as<float>(),
                         static_cast<float*>(out));
  }
  Tensor v = scratch(kPoints * chunk_ * g_.c), m = scratch(kPoints * chunk_ * g_.k);
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
  if (fused()) {
    Tensor du = scratch(threads * kPoints * g_.c * g_.k);
    backward_weights_fused(static_cast<const float*>(x), static_cast<const float*>(dy),
                           du.data_as<float>());
    winograd::transform_weights_adjoint(du.data_as<float>(), g_.k, g_.c, static_cast<float*>(dw),
                                        threads);
    return;
  }
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

void WinogradConv::forward_fused(const float* in, const float* u, float* out) {
  const int threads = ctx_.threads();
  const int64_t vn = kPoints * run_ * g_.c, mn = kPoints * run_ * g_.k;
  Tensor v = scratch(threads * vn), m = scratch(threads * mn);
  float *v0 = v.data_as<float>(), *m0 = m.data_as<float>();
  for_each_run(g_, run_, threads, [&](winograd::Tiles t, int thread) {
    float *vt = v0 + thread * vn, *mt = m0 + thread * mn;
    winograd::transform_input(g_, t, in, vt, 1);
    winograd::multiply(vt, u, mt, t, g_.c, g_.k);
    winograd::transform_output(g_, t, mt, out, 1);
  });
}

// Each thread sums its share of the tiles into its own dU; the shares are then added in thread
// order into the first, du's first 36 x C x K floats.
void WinogradConv::backward_weights_fused(const float* x, const float* dy, float* du) {
  const int threads = ctx_.threads();
  const int64_t vn = kPoints * run_ * g_.c, mn = kPoints * run_ * g_.k, un = kPoints * g_.c * g_.k;
  Tensor v = scratch(threads * vn), dm = scratch(threads * mn);
  float *v0 = v.data_as<float>(), *dm0 = dm.data_as<float>();
  std::memset(du, 0, sizeof(float) * threads * un);
  for_each_run(g_, run_, threads, [&](winograd::Tiles t, int thread) {
    float *vt = v0 + thread * vn, *dmt = dm0 + thread * mn;
    winograd::transform_input(g_, t, x, vt, 1);
    winograd::transform_output_adjoint(g_, t, dy, dmt, 1);
    winograd::multiply_weights(vt, dmt, du + thread * un, t, g_.c, g_.k);
  });
#pragma omp parallel for num_threads(threads)
  for (int64_t i = 0; i < un; ++i) {
    float s = du[i];
    for (int t = 1; t < threads; ++t) s += du[t * un + i];
    du[i] = s;
  }
}

}  // namespace rn::cpu

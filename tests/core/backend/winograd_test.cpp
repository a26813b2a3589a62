// The own Winograd F(4x4, 3x3) transforms (core/backend/cpu/winograd.h), run here on any
// processor: each pass assembled from the transforms and a plain loop for the 36 products, against
// the direct convolution in double of reference_conv.h, held to the bound ConvAlgorithmTest holds
// every Winograd to (kErrorShare of the sum of |a||b| behind each element); and the adjoint
// transforms as adjoints.
#include "core/backend/cpu/winograd.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>
#include <vector>

#include "core/backend/cpu/winograd_conv.h"
#include "core/check.h"
#include "tests/core/backend/reference_conv.h"
#include "tests/core/gradient_check.h"

namespace rn::cpu::winograd {
namespace {

using test::absolute;
using test::kErrorShare;
using test::random_values;
using test::ReferenceConv;
using test::worst_share;

// n x c x h x w between the plain layout (nchw) and nChw8c.
std::vector<float> reblocked(const std::vector<float>& v, int64_t n, int64_t c, int64_t h,
                             int64_t w, bool to_blocked) {
  std::vector<float> out(v.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t pos = 0; pos < h * w; ++pos) {
        const int64_t plain = (i * c + ch) * h * w + pos;
        const int64_t blocked =
            ((i * (c / kBlock) + ch / kBlock) * h * w + pos) * kBlock + ch % kBlock;
        if (to_blocked)
          out[blocked] = v[plain];
        else
          out[plain] = v[blocked];
      }
  return out;
}

// M[p] = V[p] U[p] (tiles x C times C x K), as the batched matmul computes it.
std::vector<float> products(const Geometry& g, const std::vector<float>& v,
                            const std::vector<float>& u) {
  const int64_t t = g.tiles();
  std::vector<float> m(static_cast<size_t>(kPoints * t * g.k), 0.f);
  for (int64_t p = 0; p < kPoints; ++p)
    for (int64_t i = 0; i < t; ++i)
      for (int64_t c = 0; c < g.c; ++c) {
        const float a = v[(p * t + i) * g.c + c];
        for (int64_t k = 0; k < g.k; ++k)
          m[(p * t + i) * g.k + k] += a * u[(p * g.c + c) * g.k + k];
      }
  return m;
}

struct Case {
  const char* name;
  int64_t n, c, k, h, w, pad;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

ConvParams conv3x3(const Geometry& g) {
  ConvParams p;
  p.out_channels = static_cast<int>(g.k);
  p.kernel = 3;
  p.pad = static_cast<int>(g.pad);
  return p;
}

// Each pass against ReferenceConv (a direct convolution in double on the plain layout); the
// transforms take and give nChw8c.
class WinogradTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case& c = GetParam();
    g_ = geometry(c.n, c.c, c.k, c.h, c.w, c.pad);
    ref_ = std::make_unique<ReferenceConv>(Shape{g_.n, g_.c, g_.h, g_.w}, conv3x3(g_));
    xp_ = random_values(g_.n * g_.c * g_.h * g_.w, 1);
    w_ = random_values(g_.k * g_.c * 9, 2);
    dyp_ = random_values(g_.n * g_.k * g_.oh * g_.ow, 3);
    x_ = reblocked(xp_, g_.n, g_.c, g_.h, g_.w, true);
    dy_ = reblocked(dyp_, g_.n, g_.k, g_.oh, g_.ow, true);
  }
  // The largest error of `got` (plain) against the reference's `exact`, of its sum|a||b|.
  static double worst(const char* pass, const std::vector<float>& got,
                      const std::vector<double>& exact, const std::vector<double>& share) {
    EXPECT_EQ(got.size(), exact.size());
    const double w = worst_share(got, exact, share);
    std::printf("  %s: largest error %.2e of sum|a||b|\n", pass, w);
    return w;
  }
  Geometry g_;
  std::unique_ptr<ReferenceConv> ref_;
  std::vector<float> xp_, w_, dyp_;  // plain
  std::vector<float> x_, dy_;        // nChw8c
};

TEST_P(WinogradTest, ForwardIsTheConvolution) {
  std::vector<float> u(static_cast<size_t>(kPoints * g_.c * g_.k)),
      v(static_cast<size_t>(kPoints * g_.tiles() * g_.c)), y(dy_.size(), NAN);
  transform_weights(w_.data(), g_.k, g_.c, false, u.data(), 2);
  transform_input(g_, all_tiles(g_), x_.data(), v.data(), 2);
  transform_output(g_, all_tiles(g_), products(g_, v, u).data(), y.data(), 2);
  EXPECT_LE(worst("forward", reblocked(y, g_.n, g_.k, g_.oh, g_.ow, false),
                  ref_->forward(xp_, w_, {}), ref_->forward(absolute(xp_), absolute(w_), {})),
            kErrorShare);
}

TEST_P(WinogradTest, BackwardDataIsTheForwardOfTheTurnedWeights) {
  const Geometry bd = backward_data_geometry(g_);
  ASSERT_EQ(bd.oh, g_.h);
  ASSERT_EQ(bd.ow, g_.w);
  std::vector<float> u(static_cast<size_t>(kPoints * g_.c * g_.k)),
      v(static_cast<size_t>(kPoints * bd.tiles() * bd.c)), dx(x_.size(), NAN);
  transform_weights(w_.data(), g_.k, g_.c, true, u.data(), 2);
  transform_input(bd, all_tiles(bd), dy_.data(), v.data(), 2);
  transform_output(bd, all_tiles(bd), products(bd, v, u).data(), dx.data(), 2);
  std::vector<double> exact, share, dw, db;
  ref_->backward(xp_, w_, dyp_, exact, dw, db);
  ref_->backward(absolute(xp_), absolute(w_), absolute(dyp_), share, dw, db);
  EXPECT_LE(worst("backward-data", reblocked(dx, g_.n, g_.c, g_.h, g_.w, false), exact, share),
            kErrorShare);
}

TEST_P(WinogradTest, BackwardWeightsIsTheAdjointChain) {
  const int64_t t = g_.tiles();
  std::vector<float> v(static_cast<size_t>(kPoints * t * g_.c)),
      dm(static_cast<size_t>(kPoints * t * g_.k)), du(static_cast<size_t>(kPoints * g_.c * g_.k)),
      dw(w_.size(), NAN);
  transform_input(g_, all_tiles(g_), x_.data(), v.data(), 2);
  transform_output_adjoint(g_, all_tiles(g_), dy_.data(), dm.data(), 2);
  for (int64_t p = 0; p < kPoints; ++p)  // dU[p] = V[p]^T dM[p]
    for (int64_t c = 0; c < g_.c; ++c)
      for (int64_t k = 0; k < g_.k; ++k) {
        float sum = 0;
        for (int64_t i = 0; i < t; ++i)
          sum += v[(p * t + i) * g_.c + c] * dm[(p * t + i) * g_.k + k];
        du[(p * g_.c + c) * g_.k + k] = sum;
      }
  transform_weights_adjoint(du.data(), g_.k, g_.c, dw.data(), 2);
  std::vector<double> dx, exact, share, db;
  ref_->backward(xp_, w_, dyp_, dx, exact, db);
  ref_->backward(absolute(xp_), absolute(w_), absolute(dyp_), dx, share, db);
  EXPECT_LE(worst("backward-weights", dw, exact, share), kErrorShare);
}

// multiply and multiply_weights, the fused passes' products, against the products in double, on
// the transforms of a run of tiles in planes longer than the run: M[p] = V[p] U[p] within 1e-6 of
// sum|v||u|, and dU[p] += V[p]^T dM[p] added to what dU held.
TEST_P(WinogradTest, ProductsAreTheMatrixProducts) {
  const int64_t rows = g_.tiles() + 3;
  const Tiles run{0, g_.tiles(), rows};
  std::vector<float> v(static_cast<size_t>(kPoints * rows * g_.c)),
      dm(static_cast<size_t>(kPoints * rows * g_.k)), m(dm.size(), NAN);
  transform_input(g_, run, x_.data(), v.data(), 1);
  transform_output_adjoint(g_, run, dy_.data(), dm.data(), 1);
  const auto u = random_values(kPoints * g_.c * g_.k, 10);
  auto du = random_values(kPoints * g_.c * g_.k, 11);
  const std::vector<float> du0 = du;
  multiply(v.data(), u.data(), m.data(), run, g_.c, g_.k);
  multiply_weights(v.data(), dm.data(), du.data(), run, g_.c, g_.k);
  double worst_m = 0, worst_du = 0;
  for (int64_t p = 0; p < kPoints; ++p) {
    for (int64_t i = 0; i < run.count; ++i)
      for (int64_t k = 0; k < g_.k; ++k) {
        double exact = 0, scale = 0;
        for (int64_t c = 0; c < g_.c; ++c) {
          const double a = v[(p * rows + i) * g_.c + c], b = u[(p * g_.c + c) * g_.k + k];
          exact += a * b, scale += std::abs(a * b);
        }
        worst_m = std::max(worst_m, std::abs(m[(p * rows + i) * g_.k + k] - exact) / scale);
      }
    for (int64_t c = 0; c < g_.c; ++c)
      for (int64_t k = 0; k < g_.k; ++k) {
        const size_t at = (p * g_.c + c) * g_.k + k;
        double exact = du0[at], scale = std::abs(du0[at]);
        for (int64_t i = 0; i < run.count; ++i) {
          const double a = v[(p * rows + i) * g_.c + c], b = dm[(p * rows + i) * g_.k + k];
          exact += a * b, scale += std::abs(a * b);
        }
        worst_du = std::max(worst_du, std::abs(du[at] - exact) / scale);
      }
  }
  std::printf("  products: largest error %.2e, weights' %.2e of sum|a||b|\n", worst_m, worst_du);
  EXPECT_LE(worst_m, 1e-6);
  EXPECT_LE(worst_du, 1e-6);
}

// sum a[i] b[i] in double, and the sum of |a[i] b[i]| (the scale its rounding follows).
double dot(const std::vector<float>& a, const std::vector<float>& b, double* scale = nullptr) {
  EXPECT_EQ(a.size(), b.size());
  double sum = 0, abs_sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sum += static_cast<double>(a[i]) * b[i];
    abs_sum += std::abs(static_cast<double>(a[i]) * b[i]);
  }
  if (scale) *scale = abs_sum;
  return sum;
}

// <output(M), Y> = <M, output_adjoint(Y)> and <weights(w), dU> = <w, weights_adjoint(dU)>.
TEST_P(WinogradTest, AdjointsAreAdjoints) {
  const auto m = random_values(kPoints * g_.tiles() * g_.k, 4);
  std::vector<float> y(dy_.size()), dm(m.size());
  transform_output(g_, all_tiles(g_), m.data(), y.data(), 2);
  transform_output_adjoint(g_, all_tiles(g_), dy_.data(), dm.data(), 2);
  double scale = 0;
  const double m_side = dot(m, dm, &scale);
  EXPECT_NEAR(dot(y, dy_), m_side, 1e-6 * scale);

  const auto du = random_values(kPoints * g_.c * g_.k, 5);
  std::vector<float> u(du.size()), dw(w_.size());
  transform_weights(w_.data(), g_.k, g_.c, false, u.data(), 2);
  transform_weights_adjoint(du.data(), g_.k, g_.c, dw.data(), 2);
  const double u_side = dot(u, du, &scale);
  EXPECT_NEAR(dot(w_, dw), u_side, 1e-6 * scale);
}

// Chunks of tiles (planes of 5 rows, the last chunk short) hold the same rows, bit for bit, as
// the transforms of all the tiles at once, and the output of every chunk together is the same.
TEST_P(WinogradTest, ChunksOfTilesAreTheSameTransforms) {
  const int64_t t = g_.tiles(), rows = 5;
  std::vector<float> v_all(static_cast<size_t>(kPoints * t * g_.c)),
      dm_all(static_cast<size_t>(kPoints * t * g_.k));
  transform_input(g_, all_tiles(g_), x_.data(), v_all.data(), 2);
  transform_output_adjoint(g_, all_tiles(g_), dy_.data(), dm_all.data(), 2);
  const auto m_all = random_values(kPoints * t * g_.k, 6);
  std::vector<float> y_all(dy_.size()), y_chunks(dy_.size(), NAN);
  transform_output(g_, all_tiles(g_), m_all.data(), y_all.data(), 2);
  for (int64_t first = 0; first < t; first += rows) {
    const Tiles chunk{first, std::min(rows, t - first), rows};
    std::vector<float> v(static_cast<size_t>(kPoints * rows * g_.c)),
        dm(static_cast<size_t>(kPoints * rows * g_.k)), m(dm.size());
    transform_input(g_, chunk, x_.data(), v.data(), 2);
    transform_output_adjoint(g_, chunk, dy_.data(), dm.data(), 2);
    for (int64_t p = 0; p < kPoints; ++p)
      for (int64_t r = 0; r < chunk.count; ++r) {
        for (int64_t c = 0; c < g_.c; ++c)
          ASSERT_EQ(v[(p * rows + r) * g_.c + c], v_all[(p * t + first + r) * g_.c + c]);
        for (int64_t k = 0; k < g_.k; ++k) {
          ASSERT_EQ(dm[(p * rows + r) * g_.k + k], dm_all[(p * t + first + r) * g_.k + k]);
          m[(p * rows + r) * g_.k + k] = m_all[(p * t + first + r) * g_.k + k];
        }
      }
    transform_output(g_, chunk, m.data(), y_chunks.data(), 2);
  }
  for (size_t i = 0; i < y_all.size(); ++i) ASSERT_EQ(y_chunks[i], y_all[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, WinogradTest,
                         ::testing::Values(Case{"pad1_whole_tiles", 2, 8, 16, 8, 12, 1},
                                           Case{"pad1_partial_tiles", 3, 16, 8, 7, 9, 1},
                                           Case{"pad0", 2, 16, 16, 10, 9, 0},
                                           Case{"pad2", 1, 8, 8, 5, 6, 2},
                                           Case{"one_pixel", 2, 8, 8, 1, 1, 1}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// The inputs of a WinogradConv pass of geometry g, and what a pass gives.
struct PassData {
  explicit PassData(const Geometry& g)
      : x(random_values(g.n * g.c * g.h * g.w, 7)),
        w(random_values(g.k * g.c * 9, 8)),
        dy(random_values(g.n * g.k * g.oh * g.ow, 9)) {}
  // The pass's output: y (forward), dx (backward-data) or dw (backward-weights).
  std::vector<float> run(WinogradConv& conv, ConvPass pass) const {
    if (pass == ConvPass::backward_weights) {
      std::vector<float> dw(w.size(), NAN);
      conv.backward_weights(x.data(), dy.data(), dw.data());
      return dw;
    }
    const bool fwd = pass == ConvPass::forward;
    std::vector<float> out(fwd ? dy.size() : x.size(), NAN);
    conv.forward(fwd ? x.data() : dy.data(), w.data(), out.data());
    return out;
  }
  std::vector<float> x, w, dy;
};

// a and b within 1e-4 of each other (relative, 1 + |a| at least): the same pass in another order.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, ConvPass pass) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-4 * (1 + std::abs(a[i]))) << static_cast<int>(pass) << " " << i;
}

// WinogradConv, the passes on oneDNN's matmul, gives in chunks of tiles (the last one short)
// what it gives in one chunk, in each pass.
TEST(WinogradConvTest, ChunksOfTilesGiveWhatOneChunkGives) {
  const Geometry g = geometry(3, 16, 24, 20, 19, 1);  // 3 x 5 x 5 = 75 tiles
  DnnlContext ctx;
  ctx.set_threads(2);
  const PassData data(g);
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_weights}) {
    // A budget of one byte leaves the least a chunk takes: 4 C K / (C + K) tiles.
    WinogradConv whole(ctx, g, pass, WinogradProducts::matmul),
        chunked(ctx, g, pass, WinogradProducts::matmul, 1);
    ASSERT_EQ(whole.chunk(), g.tiles());
    ASSERT_EQ(chunked.chunk(),
              pass == ConvPass::backward_data ? 4 * 24 * 16 / 40 : 4 * 16 * 24 / 40);
    expect_close(data.run(whole, pass), data.run(chunked, pass), pass);
  }
}

// The fused passes, in runs of six tiles (the last one short) on two threads, give what the
// matmul passes give, in each pass; backward-weights, which sums the threads' shares, gives the
// same bits every time.
TEST(WinogradConvTest, FusedRunsGiveWhatTheMatmulGives) {
  const Geometry g = geometry(3, 16, 24, 20, 19, 1);  // 75 tiles: 12 runs of 6 and one of 3
  DnnlContext ctx;
  ctx.set_threads(2);
  const PassData data(g);
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_weights}) {
    WinogradConv matmul(ctx, g, pass, WinogradProducts::matmul),
        fused(ctx, g, pass, WinogradProducts::fused, WinogradConv::kChunkBytes, 1);
    ASSERT_FALSE(matmul.fused());
    ASSERT_TRUE(fused.fused());
    ASSERT_EQ(fused.run(), 6);
    const std::vector<float> got = data.run(fused, pass);
    expect_close(data.run(matmul, pass), got, pass);
    if (pass == ConvPass::backward_weights) EXPECT_EQ(data.run(fused, pass), got);
  }
}

// automatic fuses the thin layers: every pass to 32 channels, forward and backward-data to 64.
TEST(WinogradConvTest, AutomaticFusesThinLayers) {
  DnnlContext ctx;
  const auto fused = [&](int64_t c, ConvPass pass) {
    return WinogradConv(ctx, geometry(2, c, c, 8, 8, 1), pass).fused();
  };
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_weights}) {
    EXPECT_TRUE(fused(16, pass));
    EXPECT_TRUE(fused(32, pass));
    EXPECT_EQ(fused(64, pass), pass != ConvPass::backward_weights);
    EXPECT_FALSE(fused(128, pass));
  }
}

TEST(WinogradGeometryTest, RejectsWhatItCannotRun) {
  EXPECT_THROW(geometry(1, 12, 8, 8, 8, 1), Error);  // channels not in blocks of 8
  EXPECT_THROW(geometry(1, 8, 8, 8, 8, 3), Error);   // a padding past 2
  EXPECT_THROW(geometry(1, 8, 8, 1, 1, 0), Error);   // no output
  const Geometry g = geometry(2, 8, 16, 7, 9, 1);
  EXPECT_EQ(g.oh, 7);
  EXPECT_EQ(g.ow, 9);
  EXPECT_EQ(g.tiles(), 2 * 2 * 3);
}

}  // namespace
}  // namespace rn::cpu::winograd

// The largest launches the CUDA backend makes for ResNet-50 at batch 256 in bf16, run by the grid
// emulator at their full size: the element-wise map and the native batch norm on the stem's
// 256 x 64 x 112 x 112 output (205 M elements: grids capped at 65535 blocks that stride 1.5
// times, and the statistics' 2 x 1024 blocks of 32 x 8 threads), the stem's max pooling forward
// and backward, the layout change of the 256 x 3 x 224 x 224 input, and the loss over 256 x
// 1000 logits. At this size the references are streamed on the host (fp64 statistics, direct
// loops) instead of the CPU backend's ops, which the smaller tests compare against, so that the
// test stays within 2 GB.
#include <gtest/gtest.h>

#include <cmath>

#include "core/backend/cuda/kernels/batch_norm_kernels.h"
#include "core/backend/cuda/kernels/eltwise_kernels.h"
#include "core/backend/cuda/kernels/layout_kernels.h"
#include "core/backend/cuda/kernels/loss_kernels.h"
#include "core/backend/cuda/kernels/pool_kernels.h"
#include "core/backend/dropout_mask.h"
#include "tests/core/backend/cuda/kernels/kernel_test_util.h"

namespace rn::cuda::emu {
namespace {

// The stem's output: N x C x H x W = 256 x 64 x 112 x 112, NHWC: rows = N H W, cols = C.
constexpr int64_t kN = 256, kC = 64, kH = 112, kW = 112;
constexpr int64_t kRows = kN * kH * kW, kTotal = kRows * kC;

// A deterministic value in [lo, hi) for element i (no host copy of the whole tensor needed).
float pattern(int64_t i, uint64_t seed, float lo, float hi) {
  const uint64_t r = mix64(seed ^ static_cast<uint64_t>(i));
  return lo + (hi - lo) * static_cast<float>(r >> 40) * (1.f / 16777216.f);
}

Buffer<Bf16> bf16_tensor(const char* name, int64_t n, uint64_t seed, float lo, float hi) {
  Buffer<Bf16> b(name, n);
  for (int64_t i = 0; i < n; ++i) b[i] = from_f<Bf16>(pattern(i, seed, lo, hi));
  return b;
}

TEST(ResNet50GridTest, ReluOverTheStemOutputStridesPastTheGridCap) {
  Buffer<Bf16> x = bf16_tensor("x", kTotal, 1, -1.f, 1.f), y("y", kTotal, from_f<Bf16>(7.f));
  const int w = map_width<Bf16>(y.data(), x.data(), nullptr, nullptr);
  const LaunchShape ls = map_launch(kTotal, w);
  ASSERT_EQ(w, 8);
  ASSERT_EQ(ls.grid.x, 65535u);  // capped: each thread strides over 1.5 vectors
  Grid grid;
  grid.run("map<relu>", ls, [&](const EmulatedThread& th) {
    map_body<8, Checked>(th, Relu{}, y.ptr(), x.cptr(), Checked<const Bf16>(),
                         Checked<const Bf16>(), kTotal);
  });
  for (int64_t i = 0; i < kTotal; ++i) {
    const float v = to_f(x[i]);
    ASSERT_EQ(to_f(y[i]), v > 0.f ? v : 0.f) << i;
  }
}

TEST(ResNet50GridTest, NativeBatchNormOnTheStemOutput) {
  // x in NHWC (rows x cols), offset from zero as activations are; dy centred.
  Buffer<Bf16> x = bf16_tensor("x", kTotal, 2, 1.f, 3.f),
               dy = bf16_tensor("dy", kTotal, 3, -1.f, 1.f);
  Buffer<Bf16> y("y", kTotal), dx("dx", kTotal);
  std::vector<float> g(kC), b(kC);
  for (int64_t c = 0; c < kC; ++c)
    g[c] = pattern(c, 4, 0.5f, 1.5f), b[c] = pattern(c, 5, -0.5f, 0.5f);
  Buffer<float> gamma("gamma", g), beta("beta", b), mean("mean", kC), var("var", kC);
  Buffer<float> affine("affine", 2 * kC), dgamma("dgamma", kC), dbeta("dbeta", kC);
  const float eps = 1e-5f;
  const ColumnSumPlan plan = column_sum_plan(kRows, kC);
  ASSERT_EQ(column_partial_launch(plan).grid.y, 1024u);
  ASSERT_EQ(batch_norm_elementwise_launch(kTotal, 8).grid.x, 65535u);
  Grid grid;
  {
    Buffer<float> partial("partial", plan.parts * kC * 3);
    grid.run_with_shared<MomentsTile>("moments_partial", column_partial_launch(plan),
                                      [&](const EmulatedThread& th, MomentsTile& sh) {
                                        moments_partial_body<Checked>(th, sh, x.cptr(),
                                                                      partial.ptr(), kRows, kC,
                                                                      plan.rows_per_part);
                                      });
    grid.run_with_shared<MomentsFinalShared>(
        "moments_final", per_channel_launch(kC),
        [&](const EmulatedThread& th, MomentsFinalShared& sh) {
          moments_final_body<Checked>(th, sh, partial.cptr(), plan.parts, kC, gamma.cptr(),
                                      beta.cptr(), mean.ptr(), var.ptr(), affine.ptr(), eps);
        });
    grid.run("normalize", batch_norm_elementwise_launch(kTotal, 8), [&](const EmulatedThread& th) {
      normalize_body<8, true, Checked>(th, x.cptr(), y.ptr(), affine.cptr(), kTotal, kC);
    });
  }
  // The statistics in fp64 from the same bf16 values.
  std::vector<double> sum(kC), sq(kC);
  for (int64_t i = 0; i < kTotal; ++i) {
    const double v = to_f(x[i]);
    sum[i % kC] += v, sq[i % kC] += v * v;
  }
  std::vector<double> mu(kC), variance(kC);
  for (int64_t c = 0; c < kC; ++c) {
    mu[c] = sum[c] / kRows, variance[c] = sq[c] / kRows - mu[c] * mu[c];
    ASSERT_NEAR(mean[c], mu[c], 1e-5 * std::fabs(mu[c])) << c;
    ASSERT_NEAR(var[c], variance[c], 1e-4 * variance[c]) << c;
  }
  for (int64_t i = 0; i < kTotal; i += 997) {
    const int64_t c = i % kC;
    const double want =
        std::max(0.0, g[c] * (to_f(x[i]) - mu[c]) / std::sqrt(variance[c] + eps) + b[c]);
    ASSERT_NEAR(to_f(y[i]), want, 8e-3 * std::fabs(want) + 1e-3) << i;
  }
  {
    Buffer<float> partial("partial", plan.parts * kC * 2), coef("coef", 3 * kC);
    grid.run_with_shared<GradTile>(
        "grad_partial", column_partial_launch(plan), [&](const EmulatedThread& th, GradTile& sh) {
          grad_partial_body<true, Checked>(th, sh, x.cptr(), dy.cptr(), mean.cptr(), affine.cptr(),
                                           partial.ptr(), kRows, kC, plan.rows_per_part);
        });
    grid.run_with_shared<GradFinalShared>(
        "grad_final", per_channel_launch(kC), [&](const EmulatedThread& th, GradFinalShared& sh) {
          grad_final_body<Checked>(th, sh, partial.cptr(), plan.parts, kRows, kC, gamma.cptr(),
                                   var.cptr(), dgamma.ptr(), dbeta.ptr(), coef.ptr(), eps);
        });
    grid.run("input_grad", batch_norm_elementwise_launch(kTotal, 8), [&](const EmulatedThread& th) {
      input_grad_body<8, true, Checked>(th, x.cptr(), dy.cptr(), dx.ptr(), mean.cptr(),
                                        affine.cptr(), coef.cptr(), kTotal, kC);
    });
  }
  // The gradients in fp64, with the ReLU's mask from the forward's own affine map.
  std::vector<double> sg(kC), sgx(kC);
  auto masked = [&](int64_t i) {
    const int64_t c = i % kC;
    const float xf = to_f(x[i]);
    return std::fma(xf, affine[c], affine[kC + c]) <= 0.f ? 0.0 : double(to_f(dy[i]));
  };
  for (int64_t i = 0; i < kTotal; ++i) {
    const double gi = masked(i);
    sg[i % kC] += gi, sgx[i % kC] += gi * (to_f(x[i]) - mean[i % kC]);
  }
  for (int64_t c = 0; c < kC; ++c) {
    const double inv = 1 / std::sqrt(double(var[c]) + eps);
    ASSERT_NEAR(dbeta[c], sg[c], 1e-4 * (std::fabs(sg[c]) + 100)) << c;
    ASSERT_NEAR(dgamma[c], sgx[c] * inv, 1e-4 * (std::fabs(sgx[c] * inv) + 100)) << c;
  }
  for (int64_t i = 0; i < kTotal; i += 997) {
    const int64_t c = i % kC;
    const double inv = 1 / std::sqrt(double(var[c]) + eps);
    const double want =
        g[c] * inv *
        (masked(i) - sg[c] / kRows - (to_f(x[i]) - mean[c]) * sgx[c] * inv * inv / kRows);
    ASSERT_NEAR(to_f(dx[i]), want, 8e-3 * std::fabs(want) + 1e-3) << i;
  }
}

TEST(ResNet50GridTest, StemMaxPoolingForwardAndBackward) {
  const PoolGeometry g =
      pool_geometry(PoolParams{PoolKind::max, 3, 2, 1, false}, Shape{kN, kC, kH, kW});
  ASSERT_EQ(g.oh, 56);
  const int64_t outputs = kN * kC * g.oh * g.ow;
  Buffer<Bf16> x = bf16_tensor("x", kTotal, 6, -4.f, 4.f), y("y", outputs);
  Buffer<uint8_t> arg("argmax", outputs);
  Grid grid;
  grid.run("pool_forward", linear_launch(outputs), [&](const EmulatedThread& th) {
    pool_forward_body<Checked>(th, g, x.cptr(), y.ptr(), arg.ptr());
  });
  // Every 101st output against its window, read directly (NHWC).
  for (int64_t i = 0; i < outputs; i += 101) {
    const int64_t c = i % kC, ox = (i / kC) % g.ow, oy = (i / kC / g.ow) % g.oh,
                  n = i / kC / g.ow / g.oh;
    float best = -INFINITY;
    for (int64_t yy = oy * 2 - 1; yy < oy * 2 + 2; ++yy)
      for (int64_t xx = ox * 2 - 1; xx < ox * 2 + 2; ++xx)
        if (yy >= 0 && yy < kH && xx >= 0 && xx < kW)
          best = std::max(best, to_f(x[((n * kH + yy) * kW + xx) * kC + c]));
    ASSERT_EQ(to_f(y[i]), best) << i;
  }
  Buffer<Bf16> dy = bf16_tensor("dy", outputs, 7, -1.f, 1.f), dx("dx", kTotal, from_f<Bf16>(7.f));
  grid.run("pool_backward", linear_launch(kTotal), [&](const EmulatedThread& th) {
    pool_backward_body<Checked>(th, g, dy.cptr(), arg.cptr(), dx.ptr());
  });
  // The gradient lands where the forward found each maximum: scattered from the outputs, the
  // sums per input equal the gathered ones.
  std::vector<float> want(kTotal, 0.f);
  for (int64_t i = 0; i < outputs; ++i) {
    const int64_t c = i % kC, ox = (i / kC) % g.ow, oy = (i / kC / g.ow) % g.oh,
                  n = i / kC / g.ow / g.oh;
    const int64_t yy = oy * 2 - 1 + arg[i] / 3, xx = ox * 2 - 1 + arg[i] % 3;
    want[((n * kH + yy) * kW + xx) * kC + c] += to_f(dy[i]);
  }
  for (int64_t i = 0; i < kTotal; ++i)
    ASSERT_NEAR(to_f(dx[i]), want[i], 8e-3 * std::fabs(want[i]) + 1e-6) << i;
}

TEST(ResNet50GridTest, InputBatchLayoutChange) {
  // 256 x 3 x 224 x 224 bf16: NCHW -> NHWC is 256 images of 3 x 50176 into 50176 x 3.
  const int64_t c = 3, hw = 224 * 224, total = kN * c * hw;
  Buffer<uint16_t> in("nchw", total), out("nhwc", total);
  for (int64_t i = 0; i < total; ++i) in[i] = static_cast<uint16_t>(mix64(i) >> 48);
  const LaunchShape ls = transpose_launch(kN, c, hw);
  EXPECT_EQ(ls.grid.x, 1568u);
  EXPECT_EQ(ls.grid.z, 256u);
  // The first and last two images: the whole grid is 401,408 blocks of 256 threads, each block's
  // index math the same function of (x, y, z).
  const auto images = {int64_t{0}, int64_t{1}, kN - 2, kN - 1};
  Grid grid;
  grid.run_with_shared<TransposeTile<uint16_t>>(
      "transpose", ls,
      [&](const EmulatedThread& th, TransposeTile<uint16_t>& sh) {
        transpose_body<Checked>(th, sh, in.cptr(), out.ptr(), c, hw);
      },
      [&](const Dim3& b) { return b.z < 2 || b.z >= kN - 2; });
  for (int64_t n : images)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t k = 0; k < c; ++k)
        ASSERT_EQ(out[(n * hw + p) * c + k], in[(n * c + k) * hw + p]) << n << "," << p << "," << k;
}

TEST(ResNet50GridTest, LossOverABatchOf256) {
  const int64_t n = 256, k = 1000;
  std::vector<float> z(n * k);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n * k; ++i) z[i] = pattern(i, 8, -6.f, 6.f);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>(mix64(i) % k);
  Buffer<float> zb("logits", z), dz("dlogits", n * k);
  Buffer<int32_t> lb("labels", labels);
  Buffer<LossResult> out("result", 1, LossResult{});
  Grid grid;
  grid.run_with_shared<CrossEntropyShared>("cross_entropy", cross_entropy_launch(n),
                                           [&](const EmulatedThread& th, CrossEntropyShared& sh) {
                                             cross_entropy_body<Checked>(
                                                 th, sh, zb.cptr(), lb.cptr(), k, 0.1f, 1.f / n,
                                                 dz.ptr(), out.ptr());
                                           });
  double loss = 0;
  int64_t top1 = 0, top5 = 0;
  for (int64_t r = 0; r < n; ++r) {
    double mx = -INFINITY, s = 0, sz = 0;
    int greater = 0;
    for (int64_t j = 0; j < k; ++j) mx = std::max(mx, double(z[r * k + j]));
    for (int64_t j = 0; j < k; ++j)
      s += std::exp(z[r * k + j] - mx), sz += z[r * k + j],
          greater += z[r * k + j] > z[r * k + labels[r]];
    const double ls = std::log(s) + mx;
    loss += 0.9 * (ls - z[r * k + labels[r]]) + 0.1 * (ls - sz / k);
    top1 += greater == 0, top5 += greater < 5;
    for (int64_t j = 0; j < k; ++j) {
      const double want =
          (std::exp(z[r * k + j] - ls) - ((j == labels[r] ? 0.9 : 0) + 0.1 / k)) / n;
      ASSERT_NEAR(dz[r * k + j], want, 1e-6 * std::fabs(want) + 1e-10) << r << "," << j;
    }
  }
  // The kernel weighs the terms with fp32's 1 - 0.1f: a few parts in 10^8.
  EXPECT_NEAR(out[0].loss, loss, 1e-7 * loss);
  EXPECT_EQ(static_cast<int64_t>(out[0].top1), top1);
  EXPECT_EQ(static_cast<int64_t>(out[0].top5), top5);
}

}  // namespace
}  // namespace rn::cuda::emu

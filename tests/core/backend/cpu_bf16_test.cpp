// The CPU backend's bf16 ops against its fp32 ops: convolution (forward, backward-data and the
// f32 backward-weights), batch norm (plain and fused with ReLU; training, inference, backward),
// pooling and every element-wise op, within bf16 tolerances. Skipped, with the reason, where
// the CPU has neither AMX nor AVX512-BF16; the refusal itself is tested in launch/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "core/backend/backend.h"
#include "tests/core/gradient_check.h"

namespace rn {
namespace {

using test::random_values;

TensorDesc plain(const Shape& s, DType t = DType::f32) {
  return TensorDesc{s, t, nullptr};
}

// Whether bf16 pays here (train.precision: auto): a verdict and its reason on every CPU; where
// only AVX512-BF16 decides, the measured rate ratio does, and measuring again gives the same
// answer (the machines seen measure about 2 or about 0.5 against a threshold of 1.5).
TEST(CpuBf16Verdict, SaysWhyAndAgreesWithItself) {
  const Bf16Verdict v = cpu_bf16_verdict();
  EXPECT_FALSE(v.why.empty());
  const std::string isa = cpu_isa_name();
  if (!precision_unsupported(Device{}, DType::bf16).empty()) {
    EXPECT_FALSE(v.faster);
    EXPECT_NE(v.why.find("without AMX or AVX512-BF16"), std::string::npos) << v.why;
    return;
  }
  if (isa == "avx512_core_amx") {
    EXPECT_TRUE(v.faster) << v.why;
    return;
  }
  ASSERT_GT(v.ratio, 0) << v.why;
  EXPECT_EQ(v.faster, v.ratio >= kBf16MinRatio) << v.why;
  EXPECT_NE(v.why.find("x the multiply-adds per second of its fp32 FMAs"), std::string::npos)
      << v.why;
  const Bf16Verdict again = cpu_bf16_verdict();
  EXPECT_EQ(again.faster, v.faster) << v.why << " / " << again.why;
  EXPECT_NEAR(again.ratio, v.ratio, 0.3 * v.ratio) << v.why << " / " << again.why;
}

class CpuBf16Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = precision_unsupported(Device{}, DType::bf16);
    if (!why.empty()) GTEST_SKIP() << why;
    be_ = make_cpu_backend(2);
  }

  Tensor f32(const Shape& s, const std::vector<float>& v) {
    return be_->upload(Tensor::from_vector(s, v));
  }
  // Values in the layout and dtype of `d`.
  Tensor as(const TensorDesc& d, const std::vector<float>& v) {
    Tensor t = be_->allocate(d);
    be_->reorder(f32(d.shape, v), t);
    return t;
  }
  std::vector<float> values(const Tensor& t) {
    Tensor f = be_->allocate(plain(t.shape()));
    be_->reorder(t, f);
    return be_->download(f).to_vector();
  }
  // bf16 keeps 8 significant bits: inputs rounded by 2^-9 relative, sums of many such products
  // by about that times the magnitude of the result, so the bound scales with the largest value.
  ::testing::AssertionResult close(const std::vector<float>& low, const std::vector<float>& ref,
                                   double atol = 2e-2, double rtol = 2e-2) {
    double mx = 0;
    for (float v : ref) mx = std::max(mx, static_cast<double>(std::abs(v)));
    return test::all_close(low, ref, atol * std::max(1.0, mx), rtol);
  }

  std::unique_ptr<Backend> be_;
};

struct ConvCase {
  std::string name;
  Shape x;
  ConvParams p;
};
std::ostream& operator<<(std::ostream& os, const ConvCase& c) {
  return os << c.name;
}

class CpuBf16ConvTest : public CpuBf16Test, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(CpuBf16ConvTest, ForwardAndBackwardMatchFp32) {
  const ConvCase& c = GetParam();
  const ConvParams& p = c.p;
  const Shape ws{p.out_channels, c.x[1] / p.groups, p.kernel, p.kernel};
  const auto xv = random_values(c.x.numel(), 1), wv = random_values(ws.numel(), 2, -.5f, .5f),
             bv = random_values(p.out_channels, 3);
  auto ref = be_->make_conv(p, plain(c.x), true);
  auto low = be_->make_conv(p, plain(c.x, DType::bf16), true);
  const Shape ys = ref->output_desc().shape;
  ASSERT_EQ(low->output_desc().shape, ys);
  ASSERT_EQ(low->output_desc().dtype, DType::bf16);
  ASSERT_EQ(low->weight_desc().dtype, DType::bf16);
  ASSERT_TRUE(low->weight_grad_f32());
  const auto dyv = random_values(ys.numel(), 4);

  Tensor x = f32(c.x, xv), w = as(ref->weight_desc(), wv), b = f32(Shape{p.out_channels}, bv);
  Tensor y = be_->allocate(ref->output_desc()), dy = as(ref->output_desc(), dyv);
  Tensor dx = be_->allocate(plain(c.x)), dw = be_->allocate(ref->weight_desc()),
         db = be_->allocate(plain(Shape{p.out_channels}));
  ref->forward(x, w, p.bias ? &b : nullptr, y);
  ref->backward_data(dy, w, dx);
  ref->backward_weights(x, dy, dw, p.bias ? &db : nullptr);

  Tensor lx = as(plain(c.x, DType::bf16), xv), lw = as(low->weight_desc(), wv);
  Tensor ly = be_->allocate(low->output_desc()), ldy = as(low->output_desc(), dyv);
  Tensor ldx = be_->allocate(plain(c.x, DType::bf16));
  // The weight gradient in f32, in the bf16 weights' layout family (where the master lives).
  TensorDesc gd = low->weight_desc();
  gd.dtype = DType::f32;
  gd.layout = be_->layout_like(TensorDesc{gd.shape, DType::f32, gd.layout}, gd.shape);
  Tensor ldw = be_->allocate(gd), ldb = be_->allocate(plain(Shape{p.out_channels}));
  low->forward(lx, lw, p.bias ? &b : nullptr, ly);
  EXPECT_TRUE(close(values(ly), values(y))) << "forward";
  low->backward_data(ldy, lw, ldx);
  EXPECT_TRUE(close(values(ldx), values(dx))) << "backward data";
  low->backward_weights(lx, ldy, ldw, p.bias ? &ldb : nullptr);
  EXPECT_EQ(ldw.dtype(), DType::f32);
  EXPECT_TRUE(close(values(ldw), values(dw))) << "backward weights";
  if (p.bias) {
    EXPECT_TRUE(close(values(ldb), values(db))) << "bias gradient";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bf16, CpuBf16ConvTest,
    ::testing::Values(
        ConvCase{"k3_64", Shape{2, 64, 10, 10}, ConvParams{.out_channels = 64}},
        ConvCase{"k3_16", Shape{4, 16, 9, 9}, ConvParams{.out_channels = 32}},
        ConvCase{"k1_stride2", Shape{2, 32, 8, 8},
                 ConvParams{.out_channels = 64, .kernel = 1, .stride = 2, .pad = 0}},
        // 1x1: on AMX the weight gradient is a matrix product (dY^T X).
        ConvCase{"k1_expand", Shape{2, 64, 7, 7},
                 ConvParams{.out_channels = 256, .kernel = 1, .stride = 1, .pad = 0}},
        ConvCase{"k1_reduce_odd", Shape{3, 40, 5, 6},
                 ConvParams{.out_channels = 24, .kernel = 1, .stride = 1, .pad = 0}},
        // ... and with a stride, of X's sampled positions (odd sides keep the convolution).
        ConvCase{"k1_stride2_even", Shape{2, 48, 8, 6},
                 ConvParams{.out_channels = 32, .kernel = 1, .stride = 2, .pad = 0}},
        ConvCase{"k1_stride2_odd", Shape{2, 48, 9, 7},
                 ConvParams{.out_channels = 32, .kernel = 1, .stride = 2, .pad = 0}},
        ConvCase{"grouped", Shape{2, 64, 8, 8}, ConvParams{.out_channels = 64, .groups = 4}},
        ConvCase{"stem_1ch", Shape{4, 1, 28, 28}, ConvParams{.out_channels = 16}},
        ConvCase{"stem_7x7_bias", Shape{2, 3, 32, 32},
                 ConvParams{.out_channels = 64, .kernel = 7, .stride = 2, .pad = 3, .bias = true}}),
    [](const auto& info) { return info.param.name; });

// (fused ReLU, nhwc): the bf16 activations in the layout the convolutions leave them in (nhwc
// on AMX, nChw16c on AVX512-BF16), or in nhwc as a grouped convolution of small groups leaves
// them on every CPU.
class CpuBf16BatchNormTest : public CpuBf16Test,
                             public ::testing::WithParamInterface<std::tuple<bool, bool>> {};

TEST_P(CpuBf16BatchNormTest, TrainingInferenceAndBackwardMatchFp32) {
  const auto [fuse, nhwc] = GetParam();
  const Shape xs{4, 32, 6, 6};
  const int64_t c = xs[1];
  const BatchNormParams p{.eps = 1e-5, .fuse_relu = fuse};
  const auto dyv = random_values(xs.numel(), 2), gv = random_values(c, 3, .5f, 1.5f),
             bv = random_values(c, 4, -.5f, .5f), rv = random_values(c, 5, .5f, 2.f);
  // Without the ReLU, each channel about its own mean (1 to 2.5), so that a gradient term
  // proportional to the mean is checked too. (With it, bf16's coarser rounding of the shifted
  // values moves some outputs across the kink at zero, where the gradients of the two runs
  // rightly differ.)
  auto xv = random_values(xs.numel(), 1, -2.f, 2.f);
  const auto offset = random_values(c, 6, 1.f, 2.5f);
  if (!fuse)
    for (size_t i = 0; i < xv.size(); ++i) xv[i] += offset[(i / (xs[2] * xs[3])) % c];
  const TensorDesc low_desc{
      xs, DType::bf16,
      be_->make_conv(ConvParams{.out_channels = static_cast<int>(c), .groups = nhwc ? 8 : 1},
                     plain(xs, DType::bf16), true)
          ->output_desc()
          .layout};
  struct Run {
    std::vector<float> y, mean, var, dx, dgamma, dbeta, infer;
  };
  auto run = [&](const TensorDesc& d) {
    auto op = be_->make_batch_norm(p, d, true);
    Tensor x = as(d, xv), g = f32(Shape{c}, gv), b = f32(Shape{c}, bv);
    Tensor y = be_->allocate(op->output_desc()), m = be_->allocate(plain(Shape{c})),
           v = be_->allocate(plain(Shape{c}));
    EXPECT_EQ(op->output_desc().dtype, d.dtype);
    Tensor ws = fuse ? be_->allocate(op->workspace_desc()) : Tensor();
    op->forward_training(x, g, b, y, m, v, fuse ? &ws : nullptr);
    Tensor dy = as(d, dyv), dx = be_->allocate(op->output_desc()),
           dg = be_->allocate(plain(Shape{c})), db = be_->allocate(plain(Shape{c}));
    op->backward(x, dy, g, m, v, fuse ? &ws : nullptr, dx, dg, db);
    Tensor rm = f32(Shape{c}, bv), rvar = f32(Shape{c}, rv), yi = be_->allocate(op->output_desc());
    be_->make_batch_norm(p, d, false)->forward_inference(x, g, b, rm, rvar, yi);
    return Run{values(y), values(m), values(v), values(dx), values(dg), values(db), values(yi)};
  };
  const Run ref = run(plain(xs)), low = run(low_desc);
  EXPECT_TRUE(close(low.y, ref.y)) << "forward";
  EXPECT_TRUE(close(low.mean, ref.mean, 1e-2, 1e-2)) << "batch mean";
  EXPECT_TRUE(close(low.var, ref.var, 1e-2, 1e-2)) << "batch variance";
  EXPECT_TRUE(close(low.dx, ref.dx)) << "backward data";
  EXPECT_TRUE(close(low.dgamma, ref.dgamma)) << "scale gradient";
  EXPECT_TRUE(close(low.dbeta, ref.dbeta)) << "shift gradient";
  EXPECT_TRUE(close(low.infer, ref.infer)) << "inference";
}

INSTANTIATE_TEST_SUITE_P(Bf16, CpuBf16BatchNormTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "fused_relu" : "plain") +
                                  (std::get<1>(info.param) ? "_nhwc" : "_conv_layout");
                         });

class CpuBf16PoolTest : public CpuBf16Test, public ::testing::WithParamInterface<PoolParams> {};

TEST_P(CpuBf16PoolTest, ForwardAndBackwardMatchFp32) {
  const PoolParams p = GetParam();
  const Shape xs{2, 32, 9, 9};
  // Distinct integers within each 9 x 9 plane, exact in bf16, so that max pooling picks the same
  // element in both types (bf16 rounding of random values makes ties, sending the gradient to
  // another element of the window).
  std::vector<float> xv(static_cast<size_t>(xs.numel()));
  for (int64_t i = 0; i < xs.numel(); ++i) {
    const int64_t pos = i % 81, plane = i / 81;
    xv[i] = static_cast<float>((pos * 37 + plane * 11) % 81 + 1) - 41.f;
  }
  std::vector<float> y[2], dx[2];
  for (int i = 0; i < 2; ++i) {
    const DType t = i ? DType::bf16 : DType::f32;
    auto op = be_->make_pool(p, plain(xs, t), true);
    EXPECT_EQ(op->output_desc().dtype, t);
    Tensor x = as(plain(xs, t), xv), out = be_->allocate(op->output_desc());
    Tensor ws = op->workspace_desc().shape.rank() ? be_->allocate(op->workspace_desc()) : Tensor();
    op->forward(x, out, ws.defined() ? &ws : nullptr);
    Tensor dy = as(op->output_desc(), random_values(out.numel(), 2));
    Tensor g = be_->allocate(plain(xs, t));
    op->backward(dy, ws.defined() ? &ws : nullptr, g);
    y[i] = values(out), dx[i] = values(g);
  }
  EXPECT_TRUE(close(y[1], y[0])) << "forward";
  EXPECT_TRUE(close(dx[1], dx[0])) << "backward";
}

INSTANTIATE_TEST_SUITE_P(Bf16, CpuBf16PoolTest,
                         ::testing::Values(PoolParams{.kind = PoolKind::max},
                                           PoolParams{.kind = PoolKind::avg},
                                           PoolParams{.kind = PoolKind::avg, .global = true}),
                         [](const auto& info) {
                           return std::string(info.param.global                  ? "global_avg"
                                              : info.param.kind == PoolKind::max ? "max"
                                                                                 : "avg");
                         });

TEST_F(CpuBf16Test, ElementwiseOpsMatchFp32) {
  const Shape s{2, 32, 5, 5};
  const auto av = random_values(s.numel(), 1), bv = random_values(s.numel(), 2),
             yv = random_values(s.numel(), 3);
  const auto sc = random_values(32, 4), sh = random_values(32, 5);
  // Each op once per type, on the layout a bf16 convolution leaves (nhwc) and on f32 plain.
  const TensorDesc low_desc{
      s, DType::bf16,
      be_->make_conv(ConvParams{.out_channels = 32}, plain(s, DType::bf16), true)
          ->output_desc()
          .layout};
  auto run = [&](const TensorDesc& d) {
    std::vector<std::vector<float>> out;
    Tensor a = as(d, av), b = as(d, bv), y = as(d, yv), o = be_->allocate(d);
    be_->relu_forward(a, o), out.push_back(values(o));
    be_->relu_backward(y, a, o), out.push_back(values(o));
    be_->relu_backward_add(y, a, b, o), out.push_back(values(o));
    be_->add(a, b, o, false), out.push_back(values(o));
    be_->add(a, b, o, true), out.push_back(values(o));
    Tensor acc = as(d, yv);
    be_->add_inplace(acc, a), out.push_back(values(acc));
    be_->axpby(acc, .5f, b, 2.f), out.push_back(values(acc));
    be_->channel_affine_add(acc, a, f32(Shape{32}, sc), f32(Shape{32}, sh));
    out.push_back(values(acc));
    be_->fill(o, 1.5f), out.push_back(values(o));
    be_->scale(acc, -3.f), out.push_back(values(acc));
    return out;
  };
  const auto ref = run(plain(s)), low = run(low_desc);
  const char* names[] = {"relu",        "relu_backward", "relu_backward_add",  "add",  "add_relu",
                         "add_inplace", "axpby",         "channel_affine_add", "fill", "scale"};
  ASSERT_EQ(ref.size(), low.size());
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(close(low[i], ref[i])) << names[i];
}

TEST_F(CpuBf16Test, ShortcutAndCastsRoundTrip) {
  const Shape xs{2, 16, 8, 8}, ys{2, 32, 4, 4};
  const auto xv = random_values(xs.numel(), 1);
  std::vector<float> y[2], dx[2];
  for (int i = 0; i < 2; ++i) {
    const DType t = i ? DType::bf16 : DType::f32;
    Tensor x = as(plain(xs, t), xv), out = be_->allocate(plain(ys, t));
    be_->pad_shortcut_forward(x, 2, out);
    Tensor g = be_->allocate(plain(xs, t));
    be_->pad_shortcut_backward(out, 2, g);
    y[i] = values(out), dx[i] = values(g);
  }
  EXPECT_TRUE(close(y[1], y[0])) << "option-A shortcut forward";
  EXPECT_TRUE(close(dx[1], dx[0])) << "option-A shortcut backward";
  // f32 -> bf16 rounds to nearest even (8 significant bits), bf16 -> f32 is exact.
  // 1 + 2^-8 and 1 + 3 * 2^-8 lie halfway between two bf16 values and go to the even one.
  const std::vector<float> v = {1.f, 1.00390625f, 1.01171875f, -2.5f, 0.1f};
  const std::vector<float> rounded = {1.f, 1.f, 1.015625f, -2.5f, 0.10009765625f};
  Tensor low = be_->allocate(plain(Shape{5}, DType::bf16));
  be_->cast(f32(Shape{5}, v), low);
  EXPECT_EQ(values(low), rounded);
  // The element-wise loops round the same way as oneDNN's reorder.
  for (size_t i = 0; i < v.size(); ++i) {
    Tensor one = be_->allocate(plain(Shape{1}, DType::bf16));
    be_->fill(one, v[i]);
    EXPECT_EQ(values(one)[0], rounded[i]) << "fill " << v[i];
  }
}

}  // namespace
}  // namespace rn

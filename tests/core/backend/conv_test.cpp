// Convolution: forward, backward-data and backward-weights against a direct loop in double and
// against finite differences, over strides, padding, kernels, dilation, groups and odd shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"
#include "tests/core/backend/reference_conv.h"
#include "tests/core/gradient_check.h"

namespace rn {
namespace {

using test::absolute;
using test::all_close;
using test::gradient_matches;
using test::kErrorShare;
using test::plain_desc;
using test::plain_values;
using test::random_values;
using test::ReferenceConv;
using test::upload_values;
using test::worst_share;

struct ConvCase {
  std::string name;
  Shape x;  // N x C x H x W
  ConvParams p;
};

std::ostream& operator<<(std::ostream& os, const ConvCase& c) {
  return os << c.name;
}

class ConvTest : public ::testing::TestWithParam<ConvCase> {
 protected:
  void SetUp() override {
    const ConvCase& c = GetParam();
    ref_ = std::make_unique<ReferenceConv>(c.x, c.p);
    op_ = be_->make_conv(c.p, plain_desc(c.x), /*training=*/true);
    xv_ = random_values(c.x.numel(), 11);
    wv_ = random_values(ref_->w_shape().numel(), 12);
    bv_ = random_values(c.p.out_channels, 13);
    rv_ = random_values(ref_->y_shape().numel(), 14);
  }

  // The op's output for input values `x` and weight values `w`, as plain values.
  std::vector<float> run_forward(const std::vector<float>& x, const std::vector<float>& w,
                                 const std::vector<float>& b) {
    const ConvCase& c = GetParam();
    Tensor xt = upload_values(*be_, c.x, x);
    Tensor wt = upload_values(*be_, ref_->w_shape(), w);
    Tensor bt = upload_values(*be_, Shape{c.p.out_channels}, b);
    Tensor y = be_->allocate(op_->output_desc());
    op_->forward(xt, wt, c.p.bias ? &bt : nullptr, y);
    return plain_values(*be_, y);
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  std::unique_ptr<ReferenceConv> ref_;
  std::unique_ptr<ConvOp> op_;
  std::vector<float> xv_, wv_, bv_, rv_;
};

TEST_P(ConvTest, OutputShapeFollowsTheConvolutionArithmetic) {
  EXPECT_EQ(op_->output_desc().shape, ref_->y_shape());
  EXPECT_EQ(op_->weight_desc().shape, ref_->w_shape());
}

TEST_P(ConvTest, ForwardMatchesDirectConvolution) {
  EXPECT_TRUE(all_close(run_forward(xv_, wv_, bv_), ref_->forward(xv_, wv_, bv_), 1e-4, 1e-4));
}

TEST_P(ConvTest, ForwardTakesWeightsInThePreferredLayout) {
  const ConvCase& c = GetParam();
  Tensor w = test::upload_as(*be_, op_->weight_desc(), wv_);
  Tensor x = upload_values(*be_, c.x, xv_);
  Tensor b = upload_values(*be_, Shape{c.p.out_channels}, bv_);
  Tensor y = be_->allocate(op_->output_desc());
  op_->forward(x, w, c.p.bias ? &b : nullptr, y);
  EXPECT_TRUE(all_close(plain_values(*be_, y), ref_->forward(xv_, wv_, bv_), 1e-4, 1e-4));
}

TEST_P(ConvTest, BackwardDataMatchesReferenceAndFiniteDifferences) {
  const ConvCase& c = GetParam();
  Tensor dy = upload_values(*be_, ref_->y_shape(), rv_);
  Tensor w = upload_values(*be_, ref_->w_shape(), wv_);
  Tensor dx = be_->allocate(plain_desc(c.x));
  op_->backward_data(dy, w, dx);
  const std::vector<float> got = plain_values(*be_, dx);

  std::vector<double> dx_ref, dw_ref, db_ref;
  ref_->backward(xv_, wv_, rv_, dx_ref, dw_ref, db_ref);
  EXPECT_TRUE(all_close(got, dx_ref, 1e-4, 1e-4));
  EXPECT_TRUE(
      gradient_matches([&](const std::vector<float>& x) { return run_forward(x, wv_, bv_); }, xv_,
                       rv_, got, {.max_points = 120}));
}

TEST_P(ConvTest, BackwardWeightsMatchesReferenceAndFiniteDifferences) {
  const ConvCase& c = GetParam();
  Tensor x = upload_values(*be_, c.x, xv_);
  Tensor dy = upload_values(*be_, ref_->y_shape(), rv_);
  // The gradient in the op's preferred layout, as the layers keep it.
  Tensor dw = be_->allocate(op_->weight_desc());
  Tensor db = be_->allocate(plain_desc(Shape{c.p.out_channels}));
  op_->backward_weights(x, dy, dw, c.p.bias ? &db : nullptr);
  const std::vector<float> got_w = plain_values(*be_, dw);

  std::vector<double> dx_ref, dw_ref, db_ref;
  ref_->backward(xv_, wv_, rv_, dx_ref, dw_ref, db_ref);
  EXPECT_TRUE(all_close(got_w, dw_ref, 1e-4, 1e-4));
  EXPECT_TRUE(
      gradient_matches([&](const std::vector<float>& w) { return run_forward(xv_, w, bv_); }, wv_,
                       rv_, got_w, {.max_points = 120}));
  if (c.p.bias) {
    const std::vector<float> got_b = plain_values(*be_, db);
    EXPECT_TRUE(all_close(got_b, db_ref, 1e-4, 1e-4));
    EXPECT_TRUE(gradient_matches(
        [&](const std::vector<float>& b) { return run_forward(xv_, wv_, b); }, bv_, rv_, got_b));
  }
}

TEST_P(ConvTest, BackwardWeightsWritesPlainGradients) {
  const ConvCase& c = GetParam();
  Tensor x = upload_values(*be_, c.x, xv_);
  Tensor dy = upload_values(*be_, ref_->y_shape(), rv_);
  Tensor dw = be_->allocate(plain_desc(ref_->w_shape()));
  Tensor db = be_->allocate(plain_desc(Shape{c.p.out_channels}));
  op_->backward_weights(x, dy, dw, c.p.bias ? &db : nullptr);
  std::vector<double> dx_ref, dw_ref, db_ref;
  ref_->backward(xv_, wv_, rv_, dx_ref, dw_ref, db_ref);
  EXPECT_TRUE(all_close(plain_values(*be_, dw), dw_ref, 1e-4, 1e-4));
}

TEST_P(ConvTest, RepeatedCallsGiveTheSameResult) {
  // The op binds fresh pointers on each call and reuses its buffers: a second input must not see
  // the first one's data.
  const std::vector<float> first = run_forward(xv_, wv_, bv_);
  const std::vector<float> x2 = random_values(GetParam().x.numel(), 99);
  EXPECT_TRUE(all_close(run_forward(x2, wv_, bv_), ref_->forward(x2, wv_, bv_), 1e-4, 1e-4));
  EXPECT_TRUE(all_close(run_forward(xv_, wv_, bv_), first, 0.0));
}

ConvParams conv(int out, int kernel, int stride, int pad, int groups = 1, bool bias = false,
                int dilation = 1) {
  return ConvParams{.out_channels = out,
                    .kernel = kernel,
                    .stride = stride,
                    .pad = pad,
                    .dilation = dilation,
                    .groups = groups,
                    .bias = bias};
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConvTest,
    ::testing::Values(
        ConvCase{"k3s1p1_c3to16", Shape{2, 3, 7, 5}, conv(16, 3, 1, 1)},
        ConvCase{"k3s1p0_c3to8_bias", Shape{2, 3, 6, 8}, conv(8, 3, 1, 0, 1, true)},
        ConvCase{"k3s2p1_c16to24_bias", Shape{2, 16, 9, 6}, conv(24, 3, 2, 1, 1, true)},
        ConvCase{"k1s1p0_c24to16", Shape{2, 24, 5, 7}, conv(16, 1, 1, 0)},
        ConvCase{"k1s2p0_c16to32", Shape{2, 16, 7, 6}, conv(32, 1, 2, 0)},
        ConvCase{"k7s2p3_c3to16_bias", Shape{1, 3, 11, 13}, conv(16, 7, 2, 3, 1, true)},
        ConvCase{"k3_dilation2_c16to16", Shape{1, 16, 9, 8}, conv(16, 3, 1, 2, 1, false, 2)},
        ConvCase{"groups2_c16to24", Shape{2, 16, 6, 5}, conv(24, 3, 1, 1, 2)},
        ConvCase{"groups4_c24to16_bias", Shape{2, 24, 5, 6}, conv(16, 3, 2, 1, 4, true)},
        ConvCase{"depthwise_c16_s2", Shape{2, 16, 7, 9}, conv(16, 3, 2, 1, 16)},
        ConvCase{"depthwise_c24_s1", Shape{1, 24, 6, 5}, conv(24, 3, 1, 1, 24)},
        ConvCase{"c1to3", Shape{3, 1, 5, 4}, conv(3, 3, 1, 1)}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; });

class ConvLayoutTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = test::make_test_backend();
};

TEST_F(ConvLayoutTest, AcceptsBlockedInputAndWritesPlainOutput) {
  const Shape xs{2, 16, 6, 7};
  const ConvParams p = conv(24, 3, 1, 1);
  const TensorDesc blocked = test::blocked_desc(*be_, xs);
  auto op = be_->make_conv(p, blocked, true);
  ReferenceConv ref(xs, p);
  const std::vector<float> xv = random_values(xs.numel(), 1),
                           wv = random_values(ref.w_shape().numel(), 2);
  Tensor x = test::upload_as(*be_, blocked, xv);
  Tensor w = upload_values(*be_, ref.w_shape(), wv);
  Tensor y = be_->allocate(plain_desc(ref.y_shape()));
  op->forward(x, w, nullptr, y);
  EXPECT_TRUE(all_close(y.to_vector(), ref.forward(xv, wv, {}), 1e-4, 1e-4));

  // Backward data into a plain gradient, from a plain dy.
  const std::vector<float> dyv = random_values(ref.y_shape().numel(), 3);
  Tensor dx = be_->allocate(plain_desc(xs));
  op->backward_data(upload_values(*be_, ref.y_shape(), dyv), w, dx);
  std::vector<double> dx_ref, dw_ref, db_ref;
  ref.backward(xv, wv, dyv, dx_ref, dw_ref, db_ref);
  EXPECT_TRUE(all_close(dx.to_vector(), dx_ref, 1e-4, 1e-4));
}

// Batch norm has fast kernels for nChw16c, nhwc and plain activations only; a grouped
// convolution whose groups are not multiples of 16 channels must not hand it oneDNN's own
// choice there, a 4-channel blocking that batch norm runs in reference code, 20x slower.
TEST_F(ConvLayoutTest, GroupedConvolutionsWriteALayoutBatchNormHasKernelsFor) {
  for (const auto& [c, groups] : std::vector<std::pair<int, int>>{{40, 2}, {32, 8}, {48, 4}}) {
    auto op = be_->make_conv(conv(c, 3, 1, 1, groups), plain_desc(Shape{8, c, 14, 14}), true);
    const LayoutPtr& l = op->output_desc().layout;
    const std::string name = l ? l->str() : "plain";
    EXPECT_TRUE(name == "plain" || name == "acdb" || name == "aBcd16b")
        << c << " channels in " << groups << " groups: " << name;
  }
}

TEST_F(ConvLayoutTest, RejectsAnInputOfAnotherShape) {
  auto op = be_->make_conv(conv(16, 3, 1, 1), plain_desc(Shape{2, 3, 8, 8}), true);
  Tensor x = be_->allocate(plain_desc(Shape{2, 3, 9, 8}));
  Tensor w = be_->allocate(plain_desc(Shape{16, 3, 3, 3}));
  Tensor y = be_->allocate(op->output_desc());
  EXPECT_THROW(op->forward(x, w, nullptr, y), Error);
}

TEST_F(ConvLayoutTest, RejectsChannelsNotDivisibleByGroups) {
  EXPECT_THROW(be_->make_conv(conv(16, 3, 1, 1, 3), plain_desc(Shape{1, 12, 8, 8}), true), Error);
  EXPECT_THROW(be_->make_conv(conv(16, 3, 1, 1, 3), plain_desc(Shape{1, 16, 8, 8}), true), Error);
}

TEST_F(ConvLayoutTest, RejectsAKernelLargerThanThePaddedInput) {
  EXPECT_THROW(be_->make_conv(conv(8, 7, 1, 0), plain_desc(Shape{1, 3, 5, 5}), true), Error);
}

// The convolution algorithms (ConvAlgorithm): each pass of a 3x3 convolution of stride 1 in fp32
// runs Winograd where asked (or where the automatic model says it wins), and its error stays
// within kErrorShare of sum|a||b| (reference_conv.h); the direct kernels within a tenth of it.
struct AlgorithmCase {
  std::string name;
  Shape x;
  ConvParams p;
  ConvAlgorithm algorithm;
  // What each pass runs: forward, backward-data, backward-weights.
  std::vector<std::string> expected;
  // Where the automatic model of the project's own Winograd (AVX2) differs from oneDNN's.
  std::vector<std::string> expected_avx2 = {};
};

std::ostream& operator<<(std::ostream& os, const AlgorithmCase& c) {
  return os << c.name;
}

class ConvAlgorithmTest : public ::testing::TestWithParam<AlgorithmCase> {};

TEST_P(ConvAlgorithmTest, EachPassRunsItsAlgorithmWithinTheErrorBound) {
  AlgorithmCase c = GetParam();
  if (!c.expected_avx2.empty() && cpu_isa_name().rfind("avx2", 0) == 0)
    c.expected = c.expected_avx2;
  if (std::count(c.expected.begin(), c.expected.end(), "winograd") > 0 &&
      cpu_isa_name().rfind("avx", 0) != 0)
    GTEST_SKIP() << "Winograd runs on AVX-512 (oneDNN's kernels) and AVX2 (the project's, on "
                    "nChw8c); oneDNN runs "
                 << cpu_isa_name() << " here";
  auto be = test::make_test_backend(2);
  be->set_conv_algorithm(c.algorithm);
  auto op = be->make_conv(c.p, plain_desc(c.x), /*training=*/true);
  const ReferenceConv ref(c.x, c.p);
  const auto xv = random_values(c.x.numel(), 21), wv = random_values(ref.w_shape().numel(), 22);
  const auto dyv = random_values(ref.y_shape().numel(), 23);
  Tensor x = upload_values(*be, c.x, xv), w = upload_values(*be, ref.w_shape(), wv);
  Tensor dy = upload_values(*be, ref.y_shape(), dyv);
  Tensor y = be->allocate(op->output_desc());
  op->forward(x, w, nullptr, y);
  Tensor dx = be->allocate(plain_desc(c.x)), dw = be->allocate(plain_desc(ref.w_shape()));
  op->backward_data(dy, w, dx);
  op->backward_weights(x, dy, dw, nullptr);
  const char* pass_names[] = {"forward", "backward-data", "backward-weights"};
  for (int pass = 0; pass < 3; ++pass)
    EXPECT_EQ(op->algorithm(static_cast<ConvPass>(pass)), c.expected[pass]) << pass_names[pass];

  const std::vector<double> y_exact = ref.forward(xv, wv, {}),
                            y_share = ref.forward(absolute(xv), absolute(wv), {});
  std::vector<double> dx_exact, dw_exact, db, dx_share, dw_share;
  ref.backward(xv, wv, dyv, dx_exact, dw_exact, db);
  ref.backward(absolute(xv), absolute(wv), absolute(dyv), dx_share, dw_share, db);
  const double worst[] = {worst_share(plain_values(*be, y), y_exact, y_share),
                          worst_share(plain_values(*be, dx), dx_exact, dx_share),
                          worst_share(plain_values(*be, dw), dw_exact, dw_share)};
  for (int pass = 0; pass < 3; ++pass) {
    EXPECT_LE(worst[pass], kErrorShare) << pass_names[pass] << " (" << c.expected[pass] << ")";
    if (c.expected[pass] == "direct") {
      EXPECT_LE(worst[pass], kErrorShare / 10) << pass_names[pass];
    }
    std::printf("  %s %s: largest error %.2e of sum|a||b|\n", pass_names[pass],
                c.expected[pass].c_str(), worst[pass]);
  }
}

const std::vector<std::string> kAllWinograd{"winograd", "winograd", "winograd"};
const std::vector<std::string> kAllDirect{"direct", "direct", "direct"};

INSTANTIATE_TEST_SUITE_P(
    Algorithms, ConvAlgorithmTest,
    ::testing::Values(
        AlgorithmCase{"c32_winograd", Shape{2, 32, 12, 12}, conv(32, 3, 1, 1),
                      ConvAlgorithm::winograd, kAllWinograd},
        AlgorithmCase{"c64to48_7x7_winograd", Shape{3, 64, 7, 7}, conv(48, 3, 1, 1),
                      ConvAlgorithm::winograd, kAllWinograd},
        AlgorithmCase{"c32_pad0_winograd", Shape{2, 32, 10, 9}, conv(32, 3, 1, 0),
                      ConvAlgorithm::winograd, kAllWinograd},
        AlgorithmCase{"c32_direct", Shape{2, 32, 12, 12}, conv(32, 3, 1, 1), ConvAlgorithm::direct,
                      kAllDirect},
        // The models: oneDNN's Winograd (AVX-512) wins in backward-weights always, in forward
        // and backward-data from 32 channels; the own (AVX2, fused products) in every pass from
        // 16 channels, and in none below.
        AlgorithmCase{"c8_auto",
                      Shape{2, 8, 14, 14},
                      conv(8, 3, 1, 1),
                      ConvAlgorithm::automatic,
                      {"direct", "direct", "winograd"},
                      kAllDirect},
        AlgorithmCase{"c16_auto",
                      Shape{2, 16, 14, 14},
                      conv(16, 3, 1, 1),
                      ConvAlgorithm::automatic,
                      {"direct", "direct", "winograd"},
                      kAllWinograd},
        AlgorithmCase{"c32_auto", Shape{2, 32, 12, 12}, conv(32, 3, 1, 1), ConvAlgorithm::automatic,
                      kAllWinograd},
        AlgorithmCase{"c64_auto", Shape{2, 64, 9, 9}, conv(64, 3, 1, 1), ConvAlgorithm::automatic,
                      kAllWinograd},
        // Strided and 1x1 convolutions have no Winograd kernel: direct, whatever is asked.
        AlgorithmCase{"c32_stride2_winograd", Shape{2, 32, 12, 12}, conv(32, 3, 2, 1),
                      ConvAlgorithm::winograd, kAllDirect},
        AlgorithmCase{"c32_1x1_winograd", Shape{2, 32, 6, 6}, conv(32, 1, 1, 0),
                      ConvAlgorithm::winograd, kAllDirect}),
    [](const ::testing::TestParamInfo<AlgorithmCase>& info) { return info.param.name; });

}  // namespace
}  // namespace rn

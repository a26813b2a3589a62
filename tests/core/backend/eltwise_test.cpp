// Element-wise ops (relu, sigmoid, products, dropout, add, add_inplace, axpby, fill, scale, copy),
// reorders between plain and blocked layouts, and the option-A shortcut, on plain and blocked
// tensors whose channel count is not a multiple of the block, so the padded tail of the last
// block is exercised too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/dropout_mask.h"
#include "core/check.h"
#include "tests/core/gradient_check.h"

namespace rn {
namespace {

using test::all_close;
using test::gradient_matches;
using test::plain_desc;
using test::plain_values;
using test::random_values;
using test::upload_as;

// 20 channels: a padded last block in both blocked layouts oneDNN picks (8 channels a block on
// AVX2, 16 on AVX-512).
const Shape kShape{2, 20, 5, 3};

class EltwiseTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    desc_ = GetParam() ? test::blocked_desc(*be_, kShape) : plain_desc(kShape);
    av_ = random_values(kShape.numel(), 61);
    bv_ = random_values(kShape.numel(), 62);
    a_ = upload_as(*be_, desc_, av_);
    b_ = upload_as(*be_, desc_, bv_);
  }

  std::vector<float> values(const Tensor& t) { return plain_values(*be_, t); }

  // Raw float offsets of the padded tail of the last channel block (none in the plain layout).
  std::vector<int64_t> padding_offsets() {
    Tensor ones = upload_as(*be_, desc_, std::vector<float>(kShape.numel(), 1.f));
    std::vector<int64_t> pad;
    const float* p = ones.data_as<float>();
    for (int64_t i = 0; i < static_cast<int64_t>(ones.bytes() / sizeof(float)); ++i)
      if (p[i] != 1.f) pad.push_back(i);
    return pad;
  }

  ::testing::AssertionResult padding_is_zero(const Tensor& t) {
    const float* p = t.data_as<float>();
    for (int64_t i : padding_offsets())
      if (p[i] != 0.f)
        return ::testing::AssertionFailure() << "padding float " << i << " is " << p[i];
    return ::testing::AssertionSuccess();
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  TensorDesc desc_;
  std::vector<float> av_, bv_;
  Tensor a_, b_;
};

TEST_P(EltwiseTest, BlockedLayoutPadsTheLastChannelBlock) {
  const size_t padded = padding_offsets().size();
  if (GetParam()) {
    EXPECT_GT(padded, 0u);
    EXPECT_EQ(a_.bytes(), padded * sizeof(float) + kShape.numel() * sizeof(float));
  } else {
    EXPECT_EQ(padded, 0u);
  }
}

TEST_P(EltwiseTest, ReorderRoundTripIsExact) {
  Tensor plain = be_->allocate(plain_desc(kShape));
  be_->reorder(a_, plain);
  EXPECT_EQ(plain.to_vector(), av_);
  Tensor back = be_->allocate(desc_);
  be_->reorder(plain, back);
  EXPECT_EQ(values(back), av_);
  EXPECT_TRUE(padding_is_zero(back));
}

TEST_P(EltwiseTest, ReluForwardClampsNegatives) {
  Tensor y = be_->allocate(desc_);
  be_->relu_forward(a_, y);
  std::vector<float> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = av_[i] > 0 ? av_[i] : 0.f;
  EXPECT_EQ(values(y), expected);
  EXPECT_TRUE(padding_is_zero(y));
}

TEST_P(EltwiseTest, ReluBackwardPassesGradientWhereOutputIsPositive) {
  // Inputs kept 0.05 away from the kink so that the finite-difference step never crosses it.
  std::vector<float> xv(av_.size());
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::copysign(0.05f + std::abs(av_[i]), av_[i]);
  Tensor y = be_->allocate(desc_), dx = be_->allocate(desc_);
  be_->relu_forward(upload_as(*be_, desc_, xv), y);
  be_->relu_backward(y, b_, dx);
  const std::vector<float> got = values(dx);
  std::vector<float> expected(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) expected[i] = xv[i] > 0 ? bv_[i] : 0.f;
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& x) {
        Tensor out = be_->allocate(desc_);
        be_->relu_forward(upload_as(*be_, desc_, x), out);
        return values(out);
      },
      xv, bv_, got, {.step = 1e-2, .max_points = 100}));
}

// dx = (a + b) where y > 0, else 0, exactly; a gradient that is not finite where y is not
// positive is masked to 0 too, as the condition does.
TEST_P(EltwiseTest, ReluBackwardOfASumPassesTheSumWhereOutputIsPositive) {
  Tensor y = be_->allocate(desc_), dx = be_->allocate(desc_);
  be_->relu_forward(a_, y);
  std::vector<float> bv = bv_;
  for (size_t i = 0; i < bv.size(); ++i)
    if (av_[i] <= 0 && i % 3 == 0) bv[i] = i % 2 ? INFINITY : NAN;
  be_->relu_backward_add(y, a_, upload_as(*be_, desc_, bv), dx);
  std::vector<float> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = av_[i] > 0 ? av_[i] + bv[i] : 0.f;
  EXPECT_EQ(values(dx), expected);
  EXPECT_TRUE(padding_is_zero(dx));
}

TEST_P(EltwiseTest, AddSumsAndOptionallyClamps) {
  Tensor y = be_->allocate(desc_), yr = be_->allocate(desc_);
  be_->add(a_, b_, y, /*relu=*/false);
  be_->add(a_, b_, yr, /*relu=*/true);
  std::vector<float> sum(av_.size()), clamped(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) {
    sum[i] = av_[i] + bv_[i];
    clamped[i] = sum[i] > 0 ? sum[i] : 0.f;
  }
  EXPECT_EQ(values(y), sum);
  EXPECT_EQ(values(yr), clamped);
  EXPECT_TRUE(padding_is_zero(yr));
}

TEST_P(EltwiseTest, AddInplaceAccumulates) {
  be_->add_inplace(a_, b_);
  be_->add_inplace(a_, b_);
  std::vector<float> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = av_[i] + bv_[i] + bv_[i];
  EXPECT_EQ(values(a_), expected);
  EXPECT_EQ(values(b_), bv_);
}

TEST_P(EltwiseTest, AxpbyScalesBothOperands) {
  be_->axpby(a_, 0.5f, b_, -2.f);  // a = 0.5 b - 2 a
  std::vector<double> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = 0.5 * bv_[i] - 2.0 * av_[i];
  EXPECT_TRUE(all_close(values(a_), expected, 1e-6));
  EXPECT_EQ(values(b_), bv_);
}

TEST_P(EltwiseTest, ChannelAffineAddAccumulatesPerChannel) {
  const int64_t c = kShape[1], hw = kShape[2] * kShape[3];
  const auto scale = random_values(c, 63), shift = random_values(c, 64);
  be_->channel_affine_add(a_, b_, be_->upload(Tensor::from_vector(Shape{c}, scale)),
                          be_->upload(Tensor::from_vector(Shape{c}, shift)));
  std::vector<float> want(av_.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const int64_t ch = (static_cast<int64_t>(i) / hw) % c;
    want[i] = av_[i] + scale[ch] * bv_[i] + shift[ch];
  }
  EXPECT_TRUE(all_close(values(a_), want, 1e-6f));
  EXPECT_TRUE(padding_is_zero(a_));
}

TEST_P(EltwiseTest, FillSetsEveryElement) {
  be_->fill(a_, 2.5f);
  EXPECT_EQ(values(a_), std::vector<float>(av_.size(), 2.5f));
  be_->fill(a_, 0.f);
  EXPECT_EQ(values(a_), std::vector<float>(av_.size(), 0.f));
}

TEST_P(EltwiseTest, FillLeavesThePaddingZero) {
  // The padding takes part in whole-buffer reductions (LARS norms), so it must stay zero.
  be_->fill(a_, 2.5f);
  EXPECT_TRUE(padding_is_zero(a_));
}

TEST_P(EltwiseTest, ScaleMultipliesEveryElement) {
  be_->scale(a_, -3.f);
  std::vector<double> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = -3.0 * av_[i];
  EXPECT_TRUE(all_close(values(a_), expected, 1e-6));
  EXPECT_TRUE(padding_is_zero(a_));
}

TEST_P(EltwiseTest, SigmoidAndItsGradient) {
  Tensor y = be_->allocate(desc_), dx = be_->allocate(desc_);
  be_->sigmoid_forward(a_, y);
  std::vector<double> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = 1.0 / (1.0 + std::exp(-av_[i]));
  EXPECT_TRUE(all_close(values(y), expected, 1e-6));
  EXPECT_TRUE(padding_is_zero(y));  // sigmoid(0) is 1/2: the padding is not an element
  be_->sigmoid_backward(y, b_, dx);
  EXPECT_TRUE(padding_is_zero(dx));
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& x) {
        Tensor out = be_->allocate(desc_);
        be_->sigmoid_forward(upload_as(*be_, desc_, x), out);
        return values(out);
      },
      av_, bv_, values(dx), {.step = 1e-2, .max_points = 100}));
}

TEST_P(EltwiseTest, ProductWithAnAffineSecondOperand) {
  Tensor y = be_->allocate(desc_), z = be_->allocate(desc_);
  be_->mul(a_, b_, y);
  be_->mul(a_, b_, z, -1.f, 1.f);  // a * (1 - b): a gate's complement
  std::vector<double> product(av_.size()), complement(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) {
    product[i] = static_cast<double>(av_[i]) * bv_[i];
    complement[i] = static_cast<double>(av_[i]) * (1.0 - bv_[i]);
  }
  EXPECT_TRUE(all_close(values(y), product, 1e-6));
  EXPECT_TRUE(all_close(values(z), complement, 1e-6));
  EXPECT_TRUE(padding_is_zero(z));
  // d(a*b)/da = b: the finite differences of the product in a, against b * dy.
  std::vector<float> da(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) da[i] = bv_[i] * 0.5f;
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& x) {
        Tensor out = be_->allocate(desc_);
        be_->mul(upload_as(*be_, desc_, x), b_, out);
        return values(out);
      },
      av_, std::vector<float>(av_.size(), 0.5f), da, {.step = 1e-2, .max_points = 100}));
}

TEST_P(EltwiseTest, ScaleToLeavesTheSourceAlone) {
  Tensor y = be_->allocate(desc_);
  be_->scale_to(a_, 0.5f, y);
  std::vector<double> expected(av_.size());
  for (size_t i = 0; i < av_.size(); ++i) expected[i] = 0.5 * av_[i];
  EXPECT_TRUE(all_close(values(y), expected, 1e-7));
  EXPECT_EQ(values(a_), av_);
}

TEST_P(EltwiseTest, DropoutMaskIsAFunctionOfKeyAndElement) {
  const float p = 0.25f;
  Tensor y = be_->allocate(desc_), again = be_->allocate(desc_), other = be_->allocate(desc_);
  be_->dropout_forward(a_, p, 42, y);
  be_->dropout_forward(a_, p, 42, again);
  be_->dropout_forward(a_, p, 43, other);
  const std::vector<float> got = values(y);
  EXPECT_EQ(got, values(again));
  EXPECT_NE(got, values(other));
  EXPECT_TRUE(padding_is_zero(y));
  // The mask as dropout_keep defines it on the N x C x H x W index, whatever the layout.
  const uint32_t threshold = dropout_threshold(p);
  int64_t kept = 0;
  for (size_t i = 0; i < av_.size(); ++i) {
    const bool keep = dropout_keep(42, static_cast<int64_t>(i), threshold);
    kept += keep;
    ASSERT_FLOAT_EQ(got[i], keep ? av_[i] / (1.f - p) : 0.f) << i;
  }
  const double n = static_cast<double>(av_.size());
  EXPECT_NEAR(kept / n, 1 - p, 4 * std::sqrt(p * (1 - p) / n));  // 720 draws: within 4 sigma
  // Backward applies the same mask to the gradient: exactly the forward map's derivative.
  Tensor dx = be_->allocate(desc_);
  be_->dropout_backward(b_, p, 42, dx);
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& x) {
        Tensor out = be_->allocate(desc_);
        be_->dropout_forward(upload_as(*be_, desc_, x), p, 42, out);
        return values(out);
      },
      av_, bv_, values(dx), {.step = 1e-2, .max_points = 100}));
}

TEST_P(EltwiseTest, CopyDuplicates) {
  Tensor y = be_->allocate(desc_);
  be_->fill(y, 0.f);
  be_->copy(a_, y);
  EXPECT_EQ(values(y), av_);
  EXPECT_NE(y.data(), a_.data());
}

TEST_P(EltwiseTest, MismatchedLayoutsThrow) {
  const TensorDesc other = GetParam() ? plain_desc(kShape) : test::blocked_desc(*be_, kShape);
  Tensor o = be_->allocate(other);
  Tensor y = be_->allocate(desc_);
  EXPECT_THROW(be_->add(a_, o, y, false), Error);
  EXPECT_THROW(be_->add_inplace(y, o), Error);
  EXPECT_THROW(be_->copy(o, y), Error);
  EXPECT_THROW(be_->relu_forward(o, y), Error);
  Tensor small = be_->allocate(plain_desc(Shape{2, 24, 5, 2}));
  EXPECT_THROW(be_->axpby(small, 1.f, o, 1.f), Error);
}

INSTANTIATE_TEST_SUITE_P(Layouts, EltwiseTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "blocked" : "plain";
                         });

// Tensors above the parallel grain, on two threads: each thread's share must land in place.
TEST(EltwiseParallelTest, LargeTensorsMatchTheElementwiseDefinition) {
  auto be = test::make_test_backend(2);
  const Shape s{2, 40, 40, 41};  // 131200 elements; 40 channels pad the last block
  const TensorDesc d = test::blocked_desc(*be, s);
  const std::vector<float> av = random_values(s.numel(), 1), bv = random_values(s.numel(), 2);
  Tensor a = upload_as(*be, d, av), b = upload_as(*be, d, bv), y = be->allocate(d);
  std::vector<float> expected(av.size());

  be->add(a, b, y, /*relu=*/true);
  for (size_t i = 0; i < av.size(); ++i) expected[i] = std::max(av[i] + bv[i], 0.f);
  EXPECT_EQ(plain_values(*be, y), expected);

  be->relu_backward(y, a, b);  // b = a where y > 0
  for (size_t i = 0; i < av.size(); ++i) expected[i] = av[i] + bv[i] > 0.f ? av[i] : 0.f;
  EXPECT_EQ(plain_values(*be, b), expected);

  be->axpby(y, 2.f, a, 0.5f);  // y = 2 a + 0.5 y
  be->scale(y, -1.f);
  std::vector<double> combined(av.size());
  for (size_t i = 0; i < av.size(); ++i)
    combined[i] = -(2.0 * av[i] + 0.5 * std::max(av[i] + bv[i], 0.f));
  EXPECT_TRUE(all_close(plain_values(*be, y), combined, 1e-6, 1e-6));

  be->fill(a, 0.25f);
  EXPECT_EQ(plain_values(*be, a), std::vector<float>(av.size(), 0.25f));

  Tensor wide = be->allocate(test::blocked_desc(*be, Shape{2, 80, 20, 21}));
  be->pad_shortcut_forward(upload_as(*be, d, av), 2, wide);
  const std::vector<float> got = plain_values(*be, wide);
  std::vector<float> shortcut(got.size(), 0.f);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 40; ++c)
      for (int64_t h = 0; h < 20; ++h)
        for (int64_t w = 0; w < 21; ++w)
          shortcut[((n * 80 + c + 20) * 20 + h) * 21 + w] =
              av[((n * 40 + c) * 40 + 2 * h) * 41 + 2 * w];
  EXPECT_EQ(got, shortcut);
}

// Shortcut option A: y[n, c + (Cy - Cx) / 2, h, w] = x[n, c, h s, w s], every other channel zero.
struct ShortcutCase {
  std::string name;
  Shape x, y;
  int stride;
  bool blocked;
};

std::ostream& operator<<(std::ostream& os, const ShortcutCase& c) {
  return os << c.name;
}

class ShortcutTest : public ::testing::TestWithParam<ShortcutCase> {
 protected:
  void SetUp() override {
    const ShortcutCase& c = GetParam();
    x_desc_ = c.blocked ? test::blocked_desc(*be_, c.x) : plain_desc(c.x);
    y_desc_ = c.blocked ? test::blocked_desc(*be_, c.y) : plain_desc(c.y);
    xv_ = random_values(c.x.numel(), 71);
    dyv_ = random_values(c.y.numel(), 72);
  }

  // Calls f(x index, y index) for every element of y that copies one of x.
  template <typename F>
  void for_each_pair(F f) const {
    const ShortcutCase& c = GetParam();
    const int64_t before = (c.y[1] - c.x[1]) / 2;
    for (int64_t n = 0; n < c.x[0]; ++n)
      for (int64_t ch = 0; ch < c.x[1]; ++ch)
        for (int64_t h = 0; h < c.y[2]; ++h)
          for (int64_t w = 0; w < c.y[3]; ++w)
            f(((n * c.x[1] + ch) * c.x[2] + h * c.stride) * c.x[3] + w * c.stride,
              ((n * c.y[1] + ch + before) * c.y[2] + h) * c.y[3] + w);
  }

  std::vector<float> forward(const std::vector<float>& x) {
    Tensor y = be_->allocate(y_desc_);
    be_->fill(y, 7.f);  // stale data the op must overwrite
    be_->pad_shortcut_forward(upload_as(*be_, x_desc_, x), GetParam().stride, y);
    return plain_values(*be_, y);
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  TensorDesc x_desc_, y_desc_;
  std::vector<float> xv_, dyv_;
};

TEST_P(ShortcutTest, ForwardSubsamplesAndPadsChannels) {
  std::vector<float> expected(static_cast<size_t>(GetParam().y.numel()), 0.f);
  for_each_pair([&](int64_t xi, int64_t yi) { expected[yi] = xv_[xi]; });
  EXPECT_EQ(forward(xv_), expected);
}

TEST_P(ShortcutTest, BackwardRoutesGradientsToTheSampledPositions) {
  Tensor dx = be_->allocate(x_desc_);
  be_->fill(dx, 7.f);  // stale data the op must overwrite
  be_->pad_shortcut_backward(upload_as(*be_, y_desc_, dyv_), GetParam().stride, dx);
  const std::vector<float> got = plain_values(*be_, dx);
  std::vector<float> expected(xv_.size(), 0.f);
  for_each_pair([&](int64_t xi, int64_t yi) { expected[xi] = dyv_[yi]; });
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(gradient_matches([&](const std::vector<float>& x) { return forward(x); }, xv_, dyv_,
                               got, {.max_points = 100}));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ShortcutTest,
    ::testing::Values(
        ShortcutCase{"plain_stride2_odd", Shape{2, 16, 7, 5}, Shape{2, 32, 4, 3}, 2, false},
        ShortcutCase{"blocked_stride2_odd", Shape{2, 16, 7, 5}, Shape{2, 32, 4, 3}, 2, true},
        ShortcutCase{"plain_stride1", Shape{1, 16, 5, 5}, Shape{1, 32, 5, 5}, 1, false},
        ShortcutCase{"blocked_stride1", Shape{1, 16, 5, 5}, Shape{1, 32, 5, 5}, 1, true},
        ShortcutCase{"plain_c3_to_c8", Shape{2, 3, 5, 6}, Shape{2, 8, 3, 3}, 2, false},
        ShortcutCase{"blocked_c16_to_c24", Shape{2, 16, 7, 9}, Shape{2, 24, 4, 5}, 2, true}),
    [](const ::testing::TestParamInfo<ShortcutCase>& info) { return info.param.name; });

TEST(ShortcutErrorTest, RejectsShapesThatDoNotMatchTheStride) {
  auto be = test::make_test_backend();
  Tensor x = be->allocate(plain_desc(Shape{2, 16, 8, 8}));
  Tensor y = be->allocate(plain_desc(Shape{2, 32, 8, 8}));
  EXPECT_THROW(be->pad_shortcut_forward(x, 2, y), Error);
  Tensor fewer = be->allocate(plain_desc(Shape{2, 8, 4, 4}));
  EXPECT_THROW(be->pad_shortcut_forward(x, 2, fewer), Error);
}

}  // namespace
}  // namespace rn

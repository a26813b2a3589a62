// Fully connected layer: y = x W^T + b on N x K, N x K x 1 x 1 and blocked N x K x 1 x 1 inputs,
// forward and backward against a direct product and finite differences.
#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"
#include "tests/core/gradient_check.h"

namespace rn {
namespace {

using test::all_close;
using test::gradient_matches;
using test::plain_desc;
using test::plain_values;
using test::random_values;
using test::upload_values;

constexpr int64_t kN = 5, kK = 24, kOut = 10;

enum class InputForm { matrix, plain4d, blocked4d };

struct LinearCase {
  std::string name;
  InputForm form;
  bool bias;
};

std::ostream& operator<<(std::ostream& os, const LinearCase& c) {
  return os << c.name;
}

class LinearTest : public ::testing::TestWithParam<LinearCase> {
 protected:
  void SetUp() override {
    const LinearCase& c = GetParam();
    const Shape xs = c.form == InputForm::matrix ? Shape{kN, kK} : Shape{kN, kK, 1, 1};
    x_desc_ = c.form == InputForm::blocked4d ? test::blocked_desc(*be_, xs) : plain_desc(xs);
    op_ = be_->make_linear(LinearParams{.out_features = kOut, .bias = c.bias}, x_desc_);
    xv_ = random_values(kN * kK, 51);
    wv_ = random_values(kOut * kK, 52);
    bv_ = random_values(kOut, 53);
    rv_ = random_values(kN * kOut, 54);
  }

  std::vector<double> reference_forward() const {
    std::vector<double> y(kN * kOut);
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t o = 0; o < kOut; ++o) {
        double s = GetParam().bias ? bv_[o] : 0.0;
        for (int64_t k = 0; k < kK; ++k)
          s += static_cast<double>(xv_[n * kK + k]) * wv_[o * kK + k];
        y[n * kOut + o] = s;
      }
    return y;
  }

  std::vector<float> run_forward(const std::vector<float>& x, const std::vector<float>& w,
                                 const std::vector<float>& b) {
    Tensor bt = upload_values(*be_, Shape{kOut}, b);
    Tensor y = be_->allocate(op_->output_desc());
    op_->forward(test::upload_as(*be_, x_desc_, x), upload_values(*be_, Shape{kOut, kK}, w),
                 GetParam().bias ? &bt : nullptr, y);
    return plain_values(*be_, y);
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  TensorDesc x_desc_;
  std::unique_ptr<LinearOp> op_;
  std::vector<float> xv_, wv_, bv_, rv_;
};

TEST_P(LinearTest, OutputIsBatchByFeatures) {
  EXPECT_EQ(op_->output_desc().shape, (Shape{kN, kOut}));
}

TEST_P(LinearTest, ForwardMatchesDirectProduct) {
  EXPECT_TRUE(all_close(run_forward(xv_, wv_, bv_), reference_forward(), 1e-5, 1e-5));
}

TEST_P(LinearTest, BackwardDataMatchesReferenceAndFiniteDifferences) {
  Tensor dx = be_->allocate(x_desc_);
  op_->backward_data(upload_values(*be_, Shape{kN, kOut}, rv_),
                     upload_values(*be_, Shape{kOut, kK}, wv_), dx);
  EXPECT_EQ(dx.shape(), x_desc_.shape);
  const std::vector<float> got = plain_values(*be_, dx);
  std::vector<double> expected(kN * kK, 0.0);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t k = 0; k < kK; ++k)
      for (int64_t o = 0; o < kOut; ++o)
        expected[n * kK + k] += static_cast<double>(rv_[n * kOut + o]) * wv_[o * kK + k];
  EXPECT_TRUE(all_close(got, expected, 1e-5, 1e-5));
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& x) { return run_forward(x, wv_, bv_); }, xv_, rv_, got));
}

TEST_P(LinearTest, BackwardWeightsMatchesReferenceAndFiniteDifferences) {
  Tensor dw = be_->allocate(plain_desc(Shape{kOut, kK}));
  Tensor db = be_->allocate(plain_desc(Shape{kOut}));
  op_->backward_weights(test::upload_as(*be_, x_desc_, xv_),
                        upload_values(*be_, Shape{kN, kOut}, rv_), dw,
                        GetParam().bias ? &db : nullptr);
  const std::vector<float> got_w = dw.to_vector();
  std::vector<double> expected_w(kOut * kK, 0.0), expected_b(kOut, 0.0);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t o = 0; o < kOut; ++o) {
      expected_b[o] += rv_[n * kOut + o];
      for (int64_t k = 0; k < kK; ++k)
        expected_w[o * kK + k] += static_cast<double>(rv_[n * kOut + o]) * xv_[n * kK + k];
    }
  EXPECT_TRUE(all_close(got_w, expected_w, 1e-5, 1e-5));
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& w) { return run_forward(xv_, w, bv_); }, wv_, rv_, got_w));
  if (GetParam().bias) {
    const std::vector<float> got_b = db.to_vector();
    EXPECT_TRUE(all_close(got_b, expected_b, 1e-5, 1e-5));
    EXPECT_TRUE(gradient_matches(
        [&](const std::vector<float>& b) { return run_forward(xv_, wv_, b); }, bv_, rv_, got_b));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LinearTest,
    ::testing::Values(LinearCase{"matrix_bias", InputForm::matrix, true},
                      LinearCase{"matrix_no_bias", InputForm::matrix, false},
                      LinearCase{"plain4d_bias", InputForm::plain4d, true},
                      LinearCase{"plain4d_no_bias", InputForm::plain4d, false},
                      LinearCase{"blocked4d_bias", InputForm::blocked4d, true}),
    [](const ::testing::TestParamInfo<LinearCase>& info) { return info.param.name; });

TEST(LinearErrorTest, RejectsInputsWithSpatialExtent) {
  auto be = test::make_test_backend();
  EXPECT_THROW(be->make_linear(LinearParams{.out_features = 4}, plain_desc(Shape{2, 8, 2, 2})),
               Error);
  EXPECT_THROW(be->make_linear(LinearParams{.out_features = 4}, plain_desc(Shape{16})), Error);
}

}  // namespace
}  // namespace rn

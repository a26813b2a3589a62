// Batch normalization: training statistics and output, inference with given statistics, the
// fused ReLU, and backward against the closed form and finite differences, in plain, blocked
// and nhwc layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <ostream>
#include <random>
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

constexpr double kEps = 1e-5;

enum class Layout { plain, blocked, nhwc };

struct BatchNormCase {
  std::string name;
  Shape x;
  Layout layout = Layout::plain;
  bool fuse_relu = false;
};

std::ostream& operator<<(std::ostream& os, const BatchNormCase& c) {
  return os << c.name;
}

// Per-channel statistics and the normalised values, in double.
struct ReferenceBatchNorm {
  ReferenceBatchNorm(const Shape& s, const std::vector<float>& x, const std::vector<float>& gamma,
                     const std::vector<float>& beta, bool relu)
      : n(s[0]), c(s[1]), hw(s[2] * s[3]), mean(c, 0.0), var(c, 0.0), xhat(x.size()), y(x.size()) {
    const double m = static_cast<double>(n * hw);
    for (int64_t i = 0; i < n * c * hw; ++i) mean[channel(i)] += x[i] / m;
    for (int64_t i = 0; i < n * c * hw; ++i)
      var[channel(i)] += std::pow(x[i] - mean[channel(i)], 2) / m;
    for (int64_t i = 0; i < n * c * hw; ++i) {
      const int64_t ch = channel(i);
      xhat[i] = (x[i] - mean[ch]) / std::sqrt(var[ch] + kEps);
      y[i] = gamma[ch] * xhat[i] + beta[ch];
      if (relu) y[i] = std::max(y[i], 0.0);
    }
  }

  int64_t channel(int64_t i) const { return (i / hw) % c; }

  // The gradients of sum(y * dy) with the statistics depending on x.
  void backward(const std::vector<float>& dy, const std::vector<float>& gamma,
                std::vector<double>& dx, std::vector<double>& dgamma,
                std::vector<double>& dbeta) const {
    const double m = static_cast<double>(n * hw);
    std::vector<double> g(dy.size());
    for (size_t i = 0; i < g.size(); ++i) g[i] = y[i] > 0 || !relu_mask ? dy[i] : 0.0;
    dgamma.assign(c, 0.0);
    dbeta.assign(c, 0.0);
    for (int64_t i = 0; i < n * c * hw; ++i) {
      dbeta[channel(i)] += g[i];
      dgamma[channel(i)] += g[i] * xhat[i];
    }
    dx.resize(g.size());
    for (int64_t i = 0; i < n * c * hw; ++i) {
      const int64_t ch = channel(i);
      dx[i] =
          gamma[ch] / std::sqrt(var[ch] + kEps) * (g[i] - dbeta[ch] / m - xhat[i] * dgamma[ch] / m);
    }
  }

  int64_t n, c, hw;
  std::vector<double> mean, var, xhat, y;
  bool relu_mask = false;
};

class BatchNormTest : public ::testing::TestWithParam<BatchNormCase> {
 protected:
  void SetUp() override {
    const BatchNormCase& p = GetParam();
    const int64_t c = p.x[1], hw = p.x[2] * p.x[3], count = p.x[0] * hw;
    x_desc_ = p.layout == Layout::blocked ? test::blocked_desc(*be_, p.x)
              : p.layout == Layout::nhwc  ? test::nhwc_desc(*be_, p.x)
                                          : plain_desc(p.x);
    op_ =
        be_->make_batch_norm(BatchNormParams{.eps = kEps, .fuse_relu = p.fuse_relu}, x_desc_, true);
    // Each channel gets its own offset and spread. With the fused ReLU every channel holds pairs
    // +-a with a >= 0.5, so no normalised value lies near the kink at zero (beta is zero there).
    const std::vector<float> u = random_values(p.x.numel(), 21, 0.f, 1.f);
    const std::vector<float> offset = random_values(c, 22, -2.f, 2.f);
    const std::vector<float> spread = random_values(c, 23, 0.5f, 2.f);
    xv_.resize(static_cast<size_t>(p.x.numel()));
    std::mt19937 gen(24);
    for (int64_t ch = 0; ch < c; ++ch) {
      std::vector<float> values(static_cast<size_t>(count));
      for (int64_t j = 0; j < count; ++j) {
        const float a = p.fuse_relu ? 0.5f + u[ch * count + j / 2] : 2.f * u[ch * count + j] - 1.f;
        values[j] = p.fuse_relu && j % 2 ? -a : a;
      }
      std::shuffle(values.begin(), values.end(), gen);
      for (int64_t j = 0; j < count; ++j)
        xv_[((j / hw) * c + ch) * hw + j % hw] = offset[ch] + spread[ch] * values[j];
    }
    gamma_ = random_values(c, 25, 0.5f, 1.5f);
    // A negative scale flips which side of zero a value lands on: it must be handled too.
    gamma_[0] = -gamma_[0];
    beta_ = p.fuse_relu ? std::vector<float>(c, 0.f) : random_values(c, 26);
    rv_ = random_values(p.x.numel(), 27);
  }

  struct Outputs {
    Tensor y, mean, var, workspace;
  };

  Outputs run_training(const std::vector<float>& x, const std::vector<float>& gamma,
                       const std::vector<float>& beta) {
    const int64_t c = GetParam().x[1];
    Tensor xt = test::upload_as(*be_, x_desc_, x);
    Outputs o{be_->allocate(op_->output_desc()), be_->allocate(plain_desc(Shape{c})),
              be_->allocate(plain_desc(Shape{c})), Tensor()};
    if (GetParam().fuse_relu) o.workspace = be_->allocate(op_->workspace_desc());
    op_->forward_training(xt, upload_values(*be_, Shape{c}, gamma),
                          upload_values(*be_, Shape{c}, beta), o.y, o.mean, o.var,
                          GetParam().fuse_relu ? &o.workspace : nullptr);
    return o;
  }

  std::vector<float> training_output(const std::vector<float>& x, const std::vector<float>& gamma,
                                     const std::vector<float>& beta) {
    return plain_values(*be_, run_training(x, gamma, beta).y);
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  TensorDesc x_desc_;
  std::unique_ptr<BatchNormOp> op_;
  std::vector<float> xv_, gamma_, beta_, rv_;
};

TEST_P(BatchNormTest, WorkspaceIsPresentOnlyWithTheFusedRelu) {
  EXPECT_EQ(op_->workspace_desc().shape.rank() > 0, GetParam().fuse_relu);
  EXPECT_TRUE(op_->output_desc().same_layout(x_desc_));
}

TEST_P(BatchNormTest, TrainingNormalisesWithBatchStatistics) {
  const ReferenceBatchNorm ref(GetParam().x, xv_, gamma_, beta_, GetParam().fuse_relu);
  Outputs o = run_training(xv_, gamma_, beta_);
  EXPECT_TRUE(all_close(plain_values(*be_, o.mean), ref.mean, 1e-5, 1e-5));
  // The biased variance (divided by N H W), as PyTorch normalises with.
  EXPECT_TRUE(all_close(plain_values(*be_, o.var), ref.var, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(plain_values(*be_, o.y), ref.y, 2e-5, 2e-5));
}

TEST_P(BatchNormTest, InferenceUsesTheGivenStatistics) {
  const BatchNormCase& p = GetParam();
  const int64_t c = p.x[1], hw = p.x[2] * p.x[3];
  const std::vector<float> mean = random_values(c, 31, -1.f, 1.f);
  const std::vector<float> var = random_values(c, 32, 0.25f, 4.f);
  Tensor y = be_->allocate(op_->output_desc());
  op_->forward_inference(test::upload_as(*be_, x_desc_, xv_), upload_values(*be_, Shape{c}, gamma_),
                         upload_values(*be_, Shape{c}, beta_), upload_values(*be_, Shape{c}, mean),
                         upload_values(*be_, Shape{c}, var), y);
  std::vector<double> expected(xv_.size());
  for (size_t i = 0; i < xv_.size(); ++i) {
    const int64_t ch = (static_cast<int64_t>(i) / hw) % c;
    expected[i] =
        gamma_[ch] * (xv_[i] - static_cast<double>(mean[ch])) / std::sqrt(var[ch] + kEps) +
        beta_[ch];
    if (p.fuse_relu) expected[i] = std::max(expected[i], 0.0);
  }
  EXPECT_TRUE(all_close(plain_values(*be_, y), expected, 2e-5, 2e-5));
}

TEST_P(BatchNormTest, BackwardMatchesClosedFormAndFiniteDifferences) {
  const BatchNormCase& p = GetParam();
  const int64_t c = p.x[1];
  ReferenceBatchNorm ref(p.x, xv_, gamma_, beta_, p.fuse_relu);
  ref.relu_mask = p.fuse_relu;
  Outputs fwd = run_training(xv_, gamma_, beta_);
  Tensor x = test::upload_as(*be_, x_desc_, xv_);
  Tensor dx = be_->allocate(op_->output_desc());
  Tensor dgamma = be_->allocate(plain_desc(Shape{c})), dbeta = be_->allocate(plain_desc(Shape{c}));
  // Gradient buffers come from a pool and hold whatever their last use left: backward must
  // overwrite them, not add to them.
  be_->fill(dgamma, 5.f), be_->fill(dbeta, -7.f);
  // dy arrives plain here; the op takes it in whatever layout the next layer produced.
  op_->backward(x, upload_values(*be_, p.x, rv_), upload_values(*be_, Shape{c}, gamma_), fwd.mean,
                fwd.var, p.fuse_relu ? &fwd.workspace : nullptr, dx, dgamma, dbeta);
  const std::vector<float> got_dx = plain_values(*be_, dx);
  const std::vector<float> got_dgamma = plain_values(*be_, dgamma);
  const std::vector<float> got_dbeta = plain_values(*be_, dbeta);

  std::vector<double> dx_ref, dgamma_ref, dbeta_ref;
  ref.backward(rv_, gamma_, dx_ref, dgamma_ref, dbeta_ref);
  EXPECT_TRUE(all_close(got_dx, dx_ref, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(got_dgamma, dgamma_ref, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(got_dbeta, dbeta_ref, 1e-4, 1e-4));

  const test::GradientCheckOptions o{.step = 2e-3, .max_points = 80};
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& v) { return training_output(v, gamma_, beta_); }, xv_, rv_,
      got_dx, o));
  EXPECT_TRUE(
      gradient_matches([&](const std::vector<float>& v) { return training_output(xv_, v, beta_); },
                       gamma_, rv_, got_dgamma, o));
  EXPECT_TRUE(
      gradient_matches([&](const std::vector<float>& v) { return training_output(xv_, gamma_, v); },
                       beta_, rv_, got_dbeta, o));
}

TEST_P(BatchNormTest, OnlyTheFusedReluCutsTheNegativeSide) {
  const std::vector<float> y = training_output(xv_, gamma_, beta_);
  const int64_t half = static_cast<int64_t>(y.size() / 2);
  if (GetParam().fuse_relu) {
    // Every channel holds pairs around its mean, so exactly half of the outputs are cut, and the
    // others stay well away from zero.
    EXPECT_EQ(std::count(y.begin(), y.end(), 0.f), half);
    EXPECT_EQ(std::count_if(y.begin(), y.end(), [](float v) { return v > 0.1f; }), half);
  } else {
    EXPECT_GT(std::count_if(y.begin(), y.end(), [](float v) { return v < 0.f; }), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BatchNormTest,
    ::testing::Values(
        BatchNormCase{"plain_c24", Shape{4, 24, 3, 5}, Layout::plain, false},
        BatchNormCase{"plain_c3_relu", Shape{2, 3, 5, 4}, Layout::plain, true},
        BatchNormCase{"blocked_c16", Shape{2, 16, 5, 3}, Layout::blocked, false},
        BatchNormCase{"blocked_c24", Shape{2, 24, 3, 5}, Layout::blocked, false},
        BatchNormCase{"blocked_c24_relu", Shape{2, 24, 3, 5}, Layout::blocked, true},
        BatchNormCase{"blocked_c16_relu_28x28", Shape{4, 16, 28, 28}, Layout::blocked, true},
        // nhwc, as grouped convolutions of small groups leave it.
        BatchNormCase{"nhwc_c24", Shape{4, 24, 3, 5}, Layout::nhwc, false},
        BatchNormCase{"nhwc_c3_relu", Shape{2, 3, 5, 4}, Layout::nhwc, true},
        BatchNormCase{"nhwc_c40_relu_17x14", Shape{3, 40, 17, 14}, Layout::nhwc, true}),
    [](const ::testing::TestParamInfo<BatchNormCase>& info) { return info.param.name; });

class BatchNormErrorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = test::make_test_backend();
};

TEST_F(BatchNormErrorTest, RejectsAnInputInAnotherLayout) {
  const Shape s{2, 16, 4, 4};
  auto op = be_->make_batch_norm(BatchNormParams{}, plain_desc(s), true);
  Tensor x = be_->allocate(test::blocked_desc(*be_, s));
  Tensor y = be_->allocate(op->output_desc());
  Tensor stat = be_->allocate(plain_desc(Shape{16}));
  EXPECT_THROW(op->forward_training(x, stat, stat, y, stat, stat, nullptr), Error);
}

TEST_F(BatchNormErrorTest, FusedReluNeedsAWorkspace) {
  const Shape s{2, 16, 4, 4};
  auto op = be_->make_batch_norm(BatchNormParams{.fuse_relu = true}, plain_desc(s), true);
  Tensor x = test::upload_as(*be_, plain_desc(s), random_values(s.numel(), 1));
  Tensor y = be_->allocate(op->output_desc());
  Tensor gamma = upload_values(*be_, Shape{16}, std::vector<float>(16, 1.f));
  Tensor beta = upload_values(*be_, Shape{16}, std::vector<float>(16, 0.f));
  Tensor mean = be_->allocate(plain_desc(Shape{16})), var = be_->allocate(plain_desc(Shape{16}));
  EXPECT_THROW(op->forward_training(x, gamma, beta, y, mean, var, nullptr), Error);
}

}  // namespace
}  // namespace rn

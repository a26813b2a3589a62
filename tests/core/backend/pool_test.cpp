// Pooling: max 3x3/2 with padding, average counting the padding, and global average, forward and
// backward against direct loops and finite differences, in plain and blocked layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
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

struct PoolCase {
  std::string name;
  Shape x;
  PoolParams p;
  bool blocked = false;
};

std::ostream& operator<<(std::ostream& os, const PoolCase& c) {
  return os << c.name;
}

// Window arithmetic and direct pooling in double. Max pooling skips the padding; average pooling
// divides by the full window, as PyTorch's count_include_pad=True (these windows never reach past
// the padded input, where PyTorch would divide by less).
class ReferencePool {
 public:
  ReferencePool(const Shape& x, const PoolParams& p) : p_(p), x_(x) {
    if (p.global) p_.kernel = static_cast<int>(x[2]), p_.stride = 1, p_.pad = 0;
    oh_ = (x[2] + 2 * p_.pad - p_.kernel) / p_.stride + 1;
    ow_ = (x[3] + 2 * p_.pad - p_.kernel) / p_.stride + 1;
    kw_ = p.global ? static_cast<int>(x[3]) : p_.kernel;
    if (p.global) ow_ = 1;
  }

  Shape y_shape() const { return Shape{x_[0], x_[1], oh_, ow_}; }

  std::vector<double> forward(const std::vector<float>& x) const {
    std::vector<double> y(static_cast<size_t>(y_shape().numel()));
    for_each_window([&](int64_t yi, const std::vector<int64_t>& in) {
      if (p_.kind == PoolKind::max) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t i : in) m = std::max(m, static_cast<double>(x[i]));
        y[yi] = m;
      } else {
        double s = 0;
        for (int64_t i : in) s += x[i];
        y[yi] = s / (p_.kernel * kw_);
      }
    });
    return y;
  }

  std::vector<double> backward(const std::vector<float>& x, const std::vector<float>& dy) const {
    std::vector<double> dx(x.size(), 0.0);
    for_each_window([&](int64_t yi, const std::vector<int64_t>& in) {
      if (p_.kind == PoolKind::max) {
        const int64_t arg = *std::max_element(in.begin(), in.end(),
                                              [&](int64_t a, int64_t b) { return x[a] < x[b]; });
        dx[arg] += dy[yi];
      } else {
        for (int64_t i : in) dx[i] += dy[yi] / (p_.kernel * kw_);
      }
    });
    return dx;
  }

 private:
  // Calls f(y index, x indices inside the window) for every output.
  template <typename F>
  void for_each_window(F f) const {
    const int64_t h = x_[2], w = x_[3];
    std::vector<int64_t> in;
    for (int64_t nc = 0; nc < x_[0] * x_[1]; ++nc)
      for (int64_t oy = 0; oy < oh_; ++oy)
        for (int64_t ox = 0; ox < ow_; ++ox) {
          in.clear();
          for (int64_t ky = 0; ky < p_.kernel; ++ky)
            for (int64_t kx = 0; kx < kw_; ++kx) {
              const int64_t iy = oy * p_.stride - p_.pad + ky, ix = ox * p_.stride - p_.pad + kx;
              if (iy >= 0 && iy < h && ix >= 0 && ix < w) in.push_back((nc * h + iy) * w + ix);
            }
          f((nc * oh_ + oy) * ow_ + ox, in);
        }
  }

  PoolParams p_;
  Shape x_;
  int64_t oh_, ow_;
  int kw_;
};

class PoolTest : public ::testing::TestWithParam<PoolCase> {
 protected:
  void SetUp() override {
    const PoolCase& c = GetParam();
    x_desc_ = c.blocked ? test::blocked_desc(*be_, c.x) : plain_desc(c.x);
    op_ = be_->make_pool(c.p, x_desc_, /*training=*/true);
    ref_ = std::make_unique<ReferencePool>(c.x, c.p);
    // Distinct values in [-2, 2]: a finite-difference step below a fifth of their spacing never
    // changes a window's maximum.
    gap_ = 4.f / static_cast<float>(c.x.numel());
    xv_ = test::distinct_values(c.x.numel(), 41, gap_);
    rv_ = random_values(ref_->y_shape().numel(), 42);
  }

  std::vector<float> run_forward(const std::vector<float>& x, Tensor* workspace = nullptr) {
    Tensor y = be_->allocate(op_->output_desc());
    Tensor ws;
    if (op_->workspace_desc().shape.rank() > 0) ws = be_->allocate(op_->workspace_desc());
    op_->forward(test::upload_as(*be_, x_desc_, x), y, ws.defined() ? &ws : nullptr);
    if (workspace) *workspace = ws;
    return plain_values(*be_, y);
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  TensorDesc x_desc_;
  std::unique_ptr<PoolOp> op_;
  std::unique_ptr<ReferencePool> ref_;
  std::vector<float> xv_, rv_;
  float gap_ = 0;
};

TEST_P(PoolTest, OutputShapeFollowsTheWindowArithmetic) {
  EXPECT_EQ(op_->output_desc().shape, ref_->y_shape());
  EXPECT_EQ(op_->workspace_desc().shape.rank() > 0, GetParam().p.kind == PoolKind::max);
}

TEST_P(PoolTest, ForwardMatchesDirectPooling) {
  EXPECT_TRUE(all_close(run_forward(xv_), ref_->forward(xv_), 1e-5, 1e-5));
}

TEST_P(PoolTest, InferenceForwardMatchesTraining) {
  auto infer = be_->make_pool(GetParam().p, x_desc_, /*training=*/false);
  EXPECT_EQ(infer->workspace_desc().shape.rank(), 0u);
  Tensor y = be_->allocate(infer->output_desc());
  infer->forward(test::upload_as(*be_, x_desc_, xv_), y, nullptr);
  EXPECT_TRUE(all_close(plain_values(*be_, y), ref_->forward(xv_), 1e-5, 1e-5));
}

TEST_P(PoolTest, BackwardMatchesReferenceAndFiniteDifferences) {
  Tensor ws;
  run_forward(xv_, &ws);
  Tensor dx = be_->allocate(x_desc_);
  // dy arrives plain; the op reorders it into its own layout.
  op_->backward(upload_values(*be_, ref_->y_shape(), rv_), ws.defined() ? &ws : nullptr, dx);
  const std::vector<float> got = plain_values(*be_, dx);
  EXPECT_TRUE(all_close(got, ref_->backward(xv_, rv_), 1e-5, 1e-5));
  EXPECT_TRUE(gradient_matches([&](const std::vector<float>& x) { return run_forward(x); }, xv_,
                               rv_, got, {.step = gap_ / 5, .max_points = 150}));
}

TEST_P(PoolTest, BackwardWritesAPlainGradient) {
  Tensor ws;
  run_forward(xv_, &ws);
  Tensor dx = be_->allocate(plain_desc(GetParam().x));
  op_->backward(upload_values(*be_, ref_->y_shape(), rv_), ws.defined() ? &ws : nullptr, dx);
  EXPECT_TRUE(all_close(dx.to_vector(), ref_->backward(xv_, rv_), 1e-5, 1e-5));
}

PoolParams max3s2() {
  return PoolParams{.kind = PoolKind::max, .kernel = 3, .stride = 2, .pad = 1};
}
PoolParams avg3s2() {
  return PoolParams{.kind = PoolKind::avg, .kernel = 3, .stride = 2, .pad = 1};
}
PoolParams avg2s2() {
  return PoolParams{.kind = PoolKind::avg, .kernel = 2, .stride = 2, .pad = 0};
}
PoolParams global_avg() {
  return PoolParams{.kind = PoolKind::avg, .global = true};
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PoolTest,
    ::testing::Values(PoolCase{"max3s2p1_plain_odd", Shape{2, 3, 7, 9}, max3s2()},
                      PoolCase{"max3s2p1_plain_even", Shape{1, 5, 8, 6}, max3s2()},
                      PoolCase{"max3s2p1_blocked_c24", Shape{2, 24, 7, 5}, max3s2(), true},
                      PoolCase{"avg3s2p1_plain", Shape{2, 3, 7, 8}, avg3s2()},
                      PoolCase{"avg3s2p1_blocked_c16", Shape{1, 16, 9, 7}, avg3s2(), true},
                      PoolCase{"avg2s2p0_plain", Shape{2, 4, 6, 8}, avg2s2()},
                      PoolCase{"global_avg_plain", Shape{2, 24, 5, 3}, global_avg()},
                      PoolCase{"global_avg_blocked_c24", Shape{3, 24, 4, 7}, global_avg(), true}),
    [](const ::testing::TestParamInfo<PoolCase>& info) { return info.param.name; });

TEST(PoolErrorTest, RejectsAnInputInAnotherLayout) {
  auto be = test::make_test_backend();
  const Shape s{2, 16, 6, 6};
  auto op = be->make_pool(max3s2(), plain_desc(s), true);
  Tensor x = be->allocate(test::blocked_desc(*be, s));
  Tensor y = be->allocate(op->output_desc());
  Tensor ws = be->allocate(op->workspace_desc());
  EXPECT_THROW(op->forward(x, y, &ws), Error);
}

TEST(PoolErrorTest, MaxPoolingInTrainingNeedsAWorkspace) {
  auto be = test::make_test_backend();
  const Shape s{1, 3, 6, 6};
  auto op = be->make_pool(max3s2(), plain_desc(s), true);
  Tensor x = be->allocate(plain_desc(s));
  Tensor y = be->allocate(op->output_desc());
  EXPECT_THROW(op->forward(x, y, nullptr), Error);
}

}  // namespace
}  // namespace rn

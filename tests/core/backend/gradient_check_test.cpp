// The finite-difference checker the op tests share: it accepts a right gradient and rejects a
// wrong or vanishing one, so a passing op test means something.
#include "tests/core/gradient_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace rn {
namespace {

using test::gradient_matches;
using test::random_values;

// y_j = x_j^2 sin(x_{j+1}) (cyclic): each output depends on two inputs, nonlinearly.
std::vector<float> curve(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t j = 0; j < x.size(); ++j) y[j] = x[j] * x[j] * std::sin(x[(j + 1) % x.size()]);
  return y;
}

// d/dx_i of sum_j y_j r_j.
std::vector<float> curve_gradient(const std::vector<float>& x, const std::vector<float>& r) {
  const size_t n = x.size();
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t prev = (i + n - 1) % n;
    g[i] =
        r[i] * 2 * x[i] * std::sin(x[(i + 1) % n]) + r[prev] * x[prev] * x[prev] * std::cos(x[i]);
  }
  return g;
}

TEST(GradientCheck, AcceptsTheRightGradient) {
  const std::vector<float> x = random_values(30, 1, -2.f, 2.f), r = random_values(30, 2);
  EXPECT_TRUE(gradient_matches(curve, x, r, curve_gradient(x, r)));
  EXPECT_TRUE(gradient_matches(curve, x, r, curve_gradient(x, r), {.max_points = 7}));
}

TEST(GradientCheck, RejectsAGradientOffInOneElement) {
  const std::vector<float> x = random_values(30, 1, -2.f, 2.f), r = random_values(30, 2);
  std::vector<float> g = curve_gradient(x, r);
  g[17] += 0.1f;
  EXPECT_FALSE(gradient_matches(curve, x, r, g));
}

TEST(GradientCheck, RejectsAGradientMissingOneTerm) {
  // Only the direct term r_i dy_i/dx_i: the dependence through the neighbour is dropped.
  const std::vector<float> x = random_values(30, 1, -2.f, 2.f), r = random_values(30, 2);
  std::vector<float> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) g[i] = r[i] * 2 * x[i] * std::sin(x[(i + 1) % x.size()]);
  EXPECT_FALSE(gradient_matches(curve, x, r, g));
}

TEST(GradientCheck, RejectsAVanishingGradient) {
  const std::vector<float> x = random_values(10, 1), r = random_values(10, 2);
  auto constant = [](const std::vector<float>& v) { return std::vector<float>(v.size(), 1.f); };
  EXPECT_FALSE(gradient_matches(constant, x, r, std::vector<float>(10, 0.f)));
}

TEST(GradientCheck, RejectsMismatchedSizes) {
  const std::vector<float> x = random_values(10, 1), r = random_values(10, 2);
  EXPECT_FALSE(gradient_matches(curve, x, r, std::vector<float>(9, 0.f)));
  EXPECT_FALSE(gradient_matches(curve, x, random_values(11, 3), curve_gradient(x, r)));
}

// max(x, 0) with inputs just beside the kink: the central difference over the full step sees
// both slopes, the gradient only one.
TEST(GradientCheck, AroundKinksTakesOneSideAndStillRejectsAWrongGradient) {
  std::vector<float> x = random_values(20, 1, -2.f, 2.f);
  x[3] = 1e-3f, x[11] = -2e-3f;
  const std::vector<float> r = random_values(20, 2, 0.5f, 1.f);
  auto relu = [](const std::vector<float>& v) {
    std::vector<float> y(v.size());
    for (size_t i = 0; i < v.size(); ++i) y[i] = std::max(v[i], 0.f);
    return y;
  };
  std::vector<float> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) g[i] = x[i] > 0 ? r[i] : 0.f;
  EXPECT_FALSE(gradient_matches(relu, x, r, g));
  EXPECT_TRUE(gradient_matches(relu, x, r, g, test::kink_tolerant()));
  g[3] *= 2;
  EXPECT_FALSE(gradient_matches(relu, x, r, g, test::kink_tolerant()));
}

// The scalar form, as the module and network tests use it.
TEST(GradientCheck, ScalarLossOfAModule) {
  const std::vector<float> x = random_values(12, 4, -1.f, 1.f), r = random_values(12, 5);
  auto loss = [&](const std::vector<float>& v) { return test::dot(curve(v), r); };
  EXPECT_TRUE(test::finite_differences_match(loss, x, curve_gradient(x, r), test::kink_tolerant()));
  std::vector<float> g = curve_gradient(x, r);
  g[5] = -g[5] + 0.5f;
  EXPECT_FALSE(test::finite_differences_match(loss, x, g, test::kink_tolerant()));
}

TEST(GradientCheck, RandomValuesAreSeededAndInRange) {
  const std::vector<float> a = random_values(1000, 5, -3.f, 2.f);
  EXPECT_EQ(a, random_values(1000, 5, -3.f, 2.f));
  EXPECT_NE(a, random_values(1000, 6, -3.f, 2.f));
  for (float v : a) {
    EXPECT_GE(v, -3.f);
    EXPECT_LT(v, 2.f);
  }
}

TEST(GradientCheck, DistinctValuesKeepTheirSpacing) {
  std::vector<float> v = test::distinct_values(200, 9, 0.01f);
  std::sort(v.begin(), v.end());
  for (size_t i = 1; i < v.size(); ++i) EXPECT_GE(v[i] - v[i - 1], 0.0099f);
}

TEST(GradientCheck, AllCloseNamesTheWorstElement) {
  EXPECT_TRUE(
      test::all_close(std::vector<float>{1.f, 2.f}, std::vector<double>{1.0, 2.0005}, 1e-3));
  const auto r =
      test::all_close(std::vector<float>{1.f, 2.f, 3.f}, std::vector<double>{1.0, 2.1, 3.5}, 1e-3);
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("element 2"), std::string::npos) << r.message();
  EXPECT_FALSE(test::all_close(std::vector<float>{NAN}, std::vector<double>{0.0}, 1.0));
}

}  // namespace
}  // namespace rn

// Shared pieces of the op tests: seeded random host tensors, plain copies of op outputs, value
// comparisons that name the worst element, and the finite-difference gradient checker (of a scalar
// loss, or of the projection loss L(x) = sum_j f(x)_j * r_j of an op).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor.h"

namespace rn::test {

// The backend the op tests run on. One thread by default: the tests run thousands of tiny
// primitives, and with several OpenMP threads on a busy machine a barrier can wait out a whole
// scheduler time slice. Tests of the backend's own parallel loops ask for more on large tensors.
inline std::unique_ptr<Backend> make_test_backend(int threads = 1) {
  return make_cpu_backend(threads);
}

// Uniform values in [lo, hi). The mapping from mt19937's (specified) output is written out, so the
// values are the same with every standard library.
inline std::vector<float> random_values(int64_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = lo + (hi - lo) * static_cast<float>(gen() >> 8) * (1.f / 16777216.f);
  return v;
}

// A seeded permutation of {0, gap, 2 gap, ...} shifted to centre on zero: no two values are closer
// than `gap`, so max pooling has no ties and a step below gap / 2 never changes the arg max.
inline std::vector<float> distinct_values(int64_t n, uint32_t seed, float gap) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] = gap * (static_cast<float>(i) - 0.5f * static_cast<float>(n));
  std::shuffle(v.begin(), v.end(), std::mt19937(seed));
  return v;
}

// A plain host tensor of seeded uniform values.
inline Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  return Tensor::from_vector(shape, random_values(shape.numel(), seed, lo, hi));
}

// The logical values of `t` in row-major order, whatever its layout.
inline std::vector<float> plain_values(Backend& be, const Tensor& t) {
  return be.download(t).to_vector();
}

// The plain f32 descriptor of `shape`.
inline TensorDesc plain_desc(const Shape& shape) {
  return TensorDesc{shape, DType::f32, nullptr};
}

// `values` (row-major) on the backend in the plain layout of `shape`.
inline Tensor upload_values(Backend& be, const Shape& shape, const std::vector<float>& values) {
  return be.upload(Tensor::from_vector(shape, values));
}

// `values` (row-major) on the backend in the layout of `desc` (blocked or plain).
inline Tensor upload_as(Backend& be, const TensorDesc& desc, const std::vector<float>& values) {
  Tensor t = be.allocate(desc);
  be.reorder(upload_values(be, desc.shape, values), t);
  return t;
}

// The backend's blocked activation layout for `shape` (N x C x H x W), taken from the output of a
// 16-channel convolution, the layout the networks run in.
inline TensorDesc blocked_desc(Backend& be, const Shape& shape) {
  auto conv = be.make_conv(ConvParams{.out_channels = 16}, plain_desc(Shape{2, 16, 8, 8}), true);
  LayoutPtr layout = be.layout_like(conv->output_desc(), shape);
  EXPECT_NE(layout, nullptr) << "the backend chose a plain layout for a 16-channel convolution";
  return TensorDesc{shape, DType::f32, layout};
}

// The backend's nhwc layout for `shape`: the one a grouped convolution of 4 channels per group
// leaves its output in on the CPU.
inline TensorDesc nhwc_desc(Backend& be, const Shape& shape) {
  auto conv = be.make_conv(ConvParams{.out_channels = 16, .groups = 4},
                           plain_desc(Shape{2, 16, 8, 8}), true);
  LayoutPtr layout = be.layout_like(conv->output_desc(), shape);
  EXPECT_NE(layout, nullptr) << "the backend chose a plain layout for a grouped convolution";
  return TensorDesc{shape, DType::f32, layout};
}

// sum_j a_j b_j in double.
template <typename A, typename B>
double dot(const std::vector<A>& a, const std::vector<B>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

// Passes when |actual - expected| <= atol + rtol * |expected| everywhere; otherwise names the
// worst element.
template <typename A, typename E>
::testing::AssertionResult all_close(const std::vector<A>& actual, const std::vector<E>& expected,
                                     double atol, double rtol = 0) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << actual.size() << " values, expected " << expected.size();
  double worst = 0;
  size_t at = 0;
  bool ok = true;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
    const double excess = std::abs(a - e) - (atol + rtol * std::abs(e));
    if (!(excess <= 0) && (ok || excess > worst)) {  // NaN counts as a failure
      ok = false;
      worst = std::isnan(excess) ? INFINITY : excess;
      at = i;
    }
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << at << " is " << static_cast<double>(actual[at]) << ", expected "
         << static_cast<double>(expected[at]) << " (atol " << atol << ", rtol " << rtol << ")";
}

struct GradientCheckOptions {
  // The step for element i is step * max(1, |x_i|).
  double step = 1e-2;
  // |analytic - numeric| / max(|numeric|, scale) must stay below `tolerance` at every checked
  // element, where scale = max(floor, scale_fraction * the RMS of the analytic gradient over the
  // checked elements).
  double tolerance = 2e-2;
  double floor = 1.0;
  double scale_fraction = 0;
  // Kinks (ReLU, max pooling) within the step bend the central difference without the gradient
  // being wrong: with `around_kinks`, an element that misses is retried with the step divided by
  // `step_divisor`, down to `smallest_step` times the first, and at each step the one-sided
  // differences count too (with a kink just beside x the gradient is the slope of one side
  // only). A wrong gradient matches none of them.
  bool around_kinks = false;
  double step_divisor = 4;
  double smallest_step = 1.0 / 16;
  // Every element is checked when 0, else this many seeded picks.
  int64_t max_points = 0;
  uint32_t seed = 1234;
};

// The settings for modules and whole networks: kinks inside, and a scale from the gradient's own
// size, since their gradients range over orders of magnitude.
inline GradientCheckOptions kink_tolerant(GradientCheckOptions o = {}) {
  o.floor = 1e-3;
  o.scale_fraction = 0.1;
  o.around_kinks = true;
  return o;
}

// The elements a check visits: all of them, or `max_points` distinct seeded picks.
inline std::vector<int64_t> check_points(int64_t n, const GradientCheckOptions& o) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  if (o.max_points > 0 && o.max_points < n) {
    std::shuffle(idx.begin(), idx.end(), std::mt19937(o.seed));
    idx.resize(static_cast<size_t>(o.max_points));
    std::sort(idx.begin(), idx.end());
  }
  return idx;
}

// The one finite-difference checker: `analytic` against differences of the scalar `loss` around
// `x`. The step actually taken is measured after rounding x +- h to float, and the loss is
// computed in double by the callers, so the only fp32 error left is the op's own. Fails as well
// when the numeric gradient vanishes at every checked element, where the comparison would prove
// nothing.
inline ::testing::AssertionResult finite_differences_match(
    const std::function<double(const std::vector<float>&)>& loss, const std::vector<float>& x,
    const std::vector<float>& analytic, const GradientCheckOptions& o = {}) {
  if (analytic.size() != x.size())
    return ::testing::AssertionFailure() << "analytic gradient has " << analytic.size()
                                         << " values for " << x.size() << " inputs";
  const std::vector<int64_t> points = check_points(static_cast<int64_t>(x.size()), o);
  double sq = 0;
  for (int64_t i : points) sq += static_cast<double>(analytic[i]) * analytic[i];
  const double scale =
      std::max(o.floor, o.scale_fraction * std::sqrt(sq / static_cast<double>(points.size())));
  const double l0 = o.around_kinks ? loss(x) : 0;
  const double last_step = o.around_kinks ? o.step * o.smallest_step * (1 - 1e-9) : o.step;
  std::vector<float> xp = x;
  double worst = -1, worst_numeric = 0, largest = 0;
  int64_t worst_at = -1;
  for (int64_t i : points) {
    const float x0 = x[i];
    double err = INFINITY, numeric = 0;
    for (double step = o.step; step >= last_step && !(err < o.tolerance); step /= o.step_divisor) {
      const double h = step * std::max(1.0, std::abs(static_cast<double>(x0)));
      const float up = static_cast<float>(x0 + h), down = static_cast<float>(x0 - h);
      xp[i] = up;
      const double l_up = loss(xp);
      xp[i] = down;
      const double l_down = loss(xp);
      xp[i] = x0;
      const double central = (l_up - l_down) / (static_cast<double>(up) - down);
      if (step == o.step) numeric = central, largest = std::max(largest, std::abs(central));
      std::vector<double> candidates{central};
      if (o.around_kinks)
        candidates.push_back((l_up - l0) / (static_cast<double>(up) - x0)),
            candidates.push_back((l0 - l_down) / (x0 - static_cast<double>(down)));
      for (double d : candidates) {
        const double e = std::abs(analytic[i] - d) / std::max(std::abs(d), scale);
        if (e < err || std::isnan(e)) err = e, numeric = d;
      }
    }
    if (!(err <= worst)) {
      worst = std::isnan(err) ? INFINITY : err;
      worst_at = i;
      worst_numeric = numeric;
    }
  }
  if (largest < 1e-6)
    return ::testing::AssertionFailure() << "numeric gradient is zero at every checked point";
  if (worst < o.tolerance) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << worst_at << ": analytic " << analytic[worst_at] << ", numeric "
         << worst_numeric << " (relative error " << worst << ", tolerance " << o.tolerance
         << ", scale " << scale << ")";
}

// An op's gradient through the projection loss L(x) = sum_j f(x)_j r_j, where `f` maps input
// values to output values (any floating type).
template <typename F>
::testing::AssertionResult gradient_matches(F&& f, const std::vector<float>& x,
                                            const std::vector<float>& r,
                                            const std::vector<float>& analytic,
                                            const GradientCheckOptions& o = {}) {
  size_t wrong_size = 0;
  auto result = finite_differences_match(
      [&](const std::vector<float>& xs) {
        const auto y = f(xs);
        if (y.size() != r.size()) wrong_size = y.size();
        return y.size() == r.size() ? dot(y, r) : NAN;
      },
      x, analytic, o);
  if (wrong_size > 0)
    return ::testing::AssertionFailure()
           << "forward gave " << wrong_size << " outputs for " << r.size() << " projections";
  return result;
}

}  // namespace rn::test

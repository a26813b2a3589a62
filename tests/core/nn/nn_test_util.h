// Shared pieces of the layer, unit and network tests: parameter access by name, host references,
// and a finite-difference check of a module's input and parameter gradients that tolerates the
// kinks of ReLU and max pooling.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/nn/module.h"
#include "tests/core/gradient_check.h"

namespace rn::test {

// The named parameters and buffers of `m`, in collection order.
struct Collected {
  std::vector<nn::NamedParameter> params;
  std::vector<nn::NamedBuffer> buffers;
};

inline Collected collect_all(nn::Module& m) {
  Collected c;
  m.collect("", c.params, c.buffers);
  return c;
}

inline std::vector<std::string> param_names(nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& p : collect_all(m).params) names.push_back(p.name);
  return names;
}

inline std::vector<std::string> buffer_names(nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& b : collect_all(m).buffers) names.push_back(b.name);
  return names;
}

// The parameter called `name`; fails the test (and returns null) when there is none.
inline nn::Parameter* find_param(nn::Module& m, const std::string& name) {
  for (const auto& p : collect_all(m).params)
    if (p.name == name) return p.param;
  ADD_FAILURE() << "no parameter named " << name;
  return nullptr;
}

inline Tensor* find_buffer(nn::Module& m, const std::string& name) {
  for (const auto& b : collect_all(m).buffers)
    if (b.name == name) return b.tensor;
  ADD_FAILURE() << "no buffer named " << name;
  return nullptr;
}

// Overwrites a tensor of any layout with row-major `values` of its logical shape.
inline void write_values(Backend& be, Tensor& t, const std::vector<float>& values) {
  be.reorder(upload_values(be, t.shape(), values), t);
}

// Shortcut option A on row-major values: subsampled by the stride, the new channels split evenly
// before and after (the odd one after).
inline std::vector<float> pad_shortcut_reference(const Shape& xs, const std::vector<float>& x,
                                                 int out, int stride) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], w = xs[3];
  const int64_t oh = (h + stride - 1) / stride, ow = (w + stride - 1) / stride;
  const int64_t before = (out - c) / 2;
  std::vector<float> y(n * out * oh * ow, 0.f);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j)
          y[((b * out + ch + before) * oh + i) * ow + j] =
              x[((b * c + ch) * h + i * stride) * w + j * stride];
  return y;
}

// The plain descriptor of `shape`, or the blocked activation layout the networks run in.
inline TensorDesc input_desc(Backend& be, const Shape& shape, bool blocked) {
  return blocked ? blocked_desc(be, shape) : plain_desc(shape);
}

// The gradients one backward pass gives, as row-major host values.
struct ModuleGradients {
  Shape output_shape;
  std::vector<float> output;
  std::vector<float> dx;
  std::map<std::string, std::vector<float>> params;
};

// Forward of `x` in training mode, then backward of the projection loss L = sum_j y_j r_j
// (r uploaded in the output's own layout, as a network's loss gradient would be).
inline ModuleGradients run_forward_backward(Backend& be, nn::Module& m, const TensorDesc& x_desc,
                                            const std::vector<float>& x,
                                            const std::vector<float>& r) {
  m.set_training(true);
  ModuleGradients g;
  Tensor y = m.forward(upload_as(be, x_desc, x));
  g.output_shape = y.shape();
  g.output = plain_values(be, y);
  EXPECT_EQ(g.output.size(), r.size()) << "projection has the wrong size";
  Tensor dx = m.backward(upload_as(be, y.desc(), r));
  if (dx.defined()) g.dx = plain_values(be, dx);
  for (const auto& p : collect_all(m).params) g.params[p.name] = plain_values(be, p.param->grad);
  return g;
}

// The projection loss of one training-mode forward pass.
inline double projected_loss(Backend& be, nn::Module& m, const TensorDesc& x_desc,
                             const std::vector<float>& x, const std::vector<float>& r) {
  return dot(plain_values(be, m.forward(upload_as(be, x_desc, x))), r);
}

struct ModuleCheckOptions {
  GradientCheckOptions fd = kink_tolerant();
  // Points per tensor (0: all) for the input and for the parameters.
  int64_t input_points = 0;
  int64_t param_points = 0;
  uint32_t projection_seed = 99;
  bool blocked_input = false;  // feed the input in the blocked layout instead of the plain one
};

// Checks the input gradient and every parameter gradient of `m` (in training mode) against
// finite differences of L = sum_j m(x)_j r_j. Restores every parameter afterwards.
inline void expect_module_gradients(Backend& be, nn::Module& m, const Shape& x_shape,
                                    const std::vector<float>& x, const ModuleCheckOptions& o = {}) {
  m.set_training(true);
  const Shape y_shape = m.output_shape(x_shape);
  const std::vector<float> r = random_values(y_shape.numel(), o.projection_seed);
  const TensorDesc x_desc = input_desc(be, x_shape, o.blocked_input);
  const ModuleGradients g = run_forward_backward(be, m, x_desc, x, r);
  ASSERT_EQ(g.output_shape, y_shape);

  GradientCheckOptions fd = o.fd;
  fd.max_points = o.input_points;
  ASSERT_FALSE(g.dx.empty()) << "no input gradient";
  EXPECT_TRUE(finite_differences_match(
      [&](const std::vector<float>& xv) { return projected_loss(be, m, x_desc, xv, r); }, x, g.dx,
      fd))
      << "input gradient";

  fd.max_points = o.param_points;
  for (const auto& np : collect_all(m).params) {
    nn::Parameter& p = *np.param;
    const std::vector<float> w0 = plain_values(be, p.value);
    ASSERT_EQ(static_cast<int64_t>(w0.size()), p.shape.numel()) << np.name;
    EXPECT_TRUE(finite_differences_match(
        [&](const std::vector<float>& wv) {
          write_values(be, p.value, wv);
          return projected_loss(be, m, x_desc, x, r);
        },
        w0, g.params.at(np.name), fd))
        << "gradient of " << np.name;
    write_values(be, p.value, w0);
  }
}

}  // namespace rn::test

// A direct convolution in double (forward and both gradients, any stride, padding, dilation and
// groups) and the error measure the convolution tests hold every algorithm to.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/backend/ops.h"
#include "core/tensor.h"

namespace rn::test {

// Winograd's input, weight and output transforms add rounding that a direct sum does not have,
// so an element of a convolution is held to a share of the absolute sum sum|a||b| of the
// products behind it, not to its own value (which cancellation can make arbitrarily small):
//   |got - exact| <= kErrorShare * sum|a||b|,  kErrorShare = 1e-5 (about 170 fp32 epsilons).
// Measured: oneDNN's Winograd up to 1.9e-6, the project's own up to 3.0e-6 (winograd_test.cpp),
// direct kernels up to 1.9e-7; each test prints its own.
constexpr double kErrorShare = 1e-5;

inline int64_t out_size(int64_t in, const ConvParams& p) {
  return (in + 2 * p.pad - (p.dilation * (p.kernel - 1) + 1)) / p.stride + 1;
}

// A direct convolution in double, and its gradients by scattering each product back.
class ReferenceConv {
 public:
  ReferenceConv(const Shape& x, const ConvParams& p)
      : p_(p), n_(x[0]), c_(x[1]), h_(x[2]), w_(x[3]), oh_(out_size(h_, p)), ow_(out_size(w_, p)) {}

  Shape y_shape() const { return Shape{n_, p_.out_channels, oh_, ow_}; }
  Shape w_shape() const { return Shape{p_.out_channels, c_ / p_.groups, p_.kernel, p_.kernel}; }

  std::vector<double> forward(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b) const {
    std::vector<double> y(static_cast<size_t>(y_shape().numel()), 0.0);
    visit([&](int64_t xi, int64_t wi, int64_t yi, int64_t o) {
      y[yi] += static_cast<double>(x[xi]) * w[wi];
    });
    if (p_.bias)
      for (size_t i = 0; i < y.size(); ++i) y[i] += b[(i / (oh_ * ow_)) % p_.out_channels];
    return y;
  }

  void backward(const std::vector<float>& x, const std::vector<float>& w,
                const std::vector<float>& dy, std::vector<double>& dx, std::vector<double>& dw,
                std::vector<double>& db) const {
    dx.assign(x.size(), 0.0);
    dw.assign(w.size(), 0.0);
    db.assign(static_cast<size_t>(p_.out_channels), 0.0);
    visit([&](int64_t xi, int64_t wi, int64_t yi, int64_t o) {
      dx[xi] += static_cast<double>(dy[yi]) * w[wi];
      dw[wi] += static_cast<double>(dy[yi]) * x[xi];
    });
    for (size_t i = 0; i < dy.size(); ++i) db[(i / (oh_ * ow_)) % p_.out_channels] += dy[i];
  }

 private:
  // Calls f(x index, w index, y index, output channel) for every product of the convolution.
  template <typename F>
  void visit(F f) const {
    const int64_t og = p_.out_channels / p_.groups, cg = c_ / p_.groups, k = p_.kernel;
    for (int64_t n = 0; n < n_; ++n)
      for (int64_t o = 0; o < p_.out_channels; ++o)
        for (int64_t oy = 0; oy < oh_; ++oy)
          for (int64_t ox = 0; ox < ow_; ++ox)
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int64_t ky = 0; ky < k; ++ky)
                for (int64_t kx = 0; kx < k; ++kx) {
                  const int64_t iy = oy * p_.stride - p_.pad + ky * p_.dilation;
                  const int64_t ix = ox * p_.stride - p_.pad + kx * p_.dilation;
                  if (iy < 0 || iy >= h_ || ix < 0 || ix >= w_) continue;
                  const int64_t c = (o / og) * cg + ci;
                  f(((n * c_ + c) * h_ + iy) * w_ + ix, ((o * cg + ci) * k + ky) * k + kx,
                    ((n * p_.out_channels + o) * oh_ + oy) * ow_ + ox, o);
                }
  }

  ConvParams p_;
  int64_t n_, c_, h_, w_, oh_, ow_;
};

// |v|, element by element: with the operands' magnitudes, the reference gives sum|a||b|.
inline std::vector<float> absolute(std::vector<float> v) {
  for (float& x : v) x = std::abs(x);
  return v;
}

// The largest |got - exact| / share over the elements, where `share` is the absolute sum.
inline double worst_share(const std::vector<float>& got, const std::vector<double>& exact,
                          const std::vector<double>& share) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - exact[i]) / std::max(share[i], 1e-30));
  return worst;
}

}  // namespace rn::test

// SGD (momentum, Nesterov, weight decay) and LARS updates over several steps against the
// formulas of PyTorch's SGD and of You et al. (2017), on plain and blocked weight layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"
#include "core/optim/optimizer.h"
#include "tests/core/gradient_check.h"

namespace rn {
namespace {

using test::all_close;
using test::plain_desc;
using test::plain_values;
using test::random_values;
using test::upload_as;

constexpr int kSteps = 3;

// w, g, m of one parameter on the backend, each step's gradient fresh.
struct UpdateFixture {
  UpdateFixture(Backend& be, const TensorDesc& desc)
      : be(be), desc(desc), w(upload_as(be, desc, w0())), m(be.allocate(desc)) {
    be.fill(m, 0.f);
  }
  std::vector<float> w0() const { return random_values(desc.shape.numel(), 91); }
  std::vector<float> grad(int step) const {
    return random_values(desc.shape.numel(), 100 + step, -0.5f, 0.5f);
  }
  Tensor grad_tensor(int step) const { return upload_as(be, desc, grad(step)); }

  Backend& be;
  TensorDesc desc;
  Tensor w, m;
};

struct SgdCase {
  std::string name;
  SgdParams p;
};

std::ostream& operator<<(std::ostream& os, const SgdCase& c) {
  return os << c.name;
}

// torch.optim.SGD (dampening 0): d = g + wd w; m = mu m + d (m = d on the first step, the same
// from a zero buffer); d = nesterov ? d + mu m : m; w -= lr d.
void reference_sgd(const SgdParams& p, std::vector<double>& w, std::vector<double>& m,
                   const std::vector<float>& g) {
  for (size_t i = 0; i < w.size(); ++i) {
    double d = g[i] + static_cast<double>(p.weight_decay) * w[i];
    m[i] = p.momentum * m[i] + d;
    d = p.nesterov ? d + p.momentum * m[i] : m[i];
    w[i] -= p.lr * d;
  }
}

class SgdTest : public ::testing::TestWithParam<SgdCase> {
 protected:
  void check_steps(const TensorDesc& desc) {
    const SgdParams& p = GetParam().p;
    UpdateFixture f(*be_, desc);
    const std::vector<float> w0 = f.w0();
    std::vector<double> w(w0.begin(), w0.end()), m(w0.size(), 0.0);
    for (int step = 0; step < kSteps; ++step) {
      be_->sgd_update(p, f.w, f.grad_tensor(step), f.m);
      reference_sgd(p, w, m, f.grad(step));
      ASSERT_TRUE(all_close(plain_values(*be_, f.w), w, 1e-6, 1e-5)) << "step " << step;
      ASSERT_TRUE(all_close(plain_values(*be_, f.m), m, 1e-6, 1e-5)) << "step " << step;
    }
    // The update must have moved the weights by more than the tolerance.
    EXPECT_FALSE(all_close(plain_values(*be_, f.w), w0, 1e-3));
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
};

TEST_P(SgdTest, ThreeStepsMatchPyTorch) {
  check_steps(plain_desc(Shape{7, 5}));
}

TEST_P(SgdTest, ThreeStepsMatchPyTorchInTheConvolutionWeightLayout) {
  // 24 x 24 x 3 x 3 weights are padded to whole blocks in the convolution's layout.
  auto conv = be_->make_conv(ConvParams{.out_channels = 24}, plain_desc(Shape{2, 24, 6, 6}), true);
  check_steps(conv->weight_desc());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SgdTest,
    ::testing::Values(SgdCase{"plain", {.lr = 0.1f, .momentum = 0.f}},
                      SgdCase{"momentum", {.lr = 0.1f, .momentum = 0.9f}},
                      SgdCase{"momentum_wd", {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.1f}},
                      SgdCase{"nesterov", {.lr = 0.1f, .momentum = 0.9f, .nesterov = true}},
                      SgdCase{
                          "nesterov_wd",
                          {.lr = 0.1f, .momentum = 0.8f, .weight_decay = 0.2f, .nesterov = true}},
                      SgdCase{"wd_only", {.lr = 0.3f, .momentum = 0.f, .weight_decay = 0.05f}}),
    [](const ::testing::TestParamInfo<SgdCase>& info) { return info.param.name; });

// LARS: trust = eta |w| / (|g| + wd |w|) from the norms of the whole tensor, 1 where either norm
// is zero; m = mu m + lr trust (g + wd w); w -= m.
void reference_lars(const LarsParams& p, std::vector<double>& w, std::vector<double>& m,
                    const std::vector<float>& g) {
  double w2 = 0, g2 = 0;
  for (size_t i = 0; i < w.size(); ++i) w2 += w[i] * w[i], g2 += static_cast<double>(g[i]) * g[i];
  const double wn = std::sqrt(w2), gn = std::sqrt(g2);
  const double trust = wn > 0 && gn > 0 ? p.eta * wn / (gn + p.weight_decay * wn) : 1.0;
  for (size_t i = 0; i < w.size(); ++i) {
    m[i] = p.momentum * m[i] + p.lr * trust * (g[i] + p.weight_decay * w[i]);
    w[i] -= m[i];
  }
}

class LarsTest : public ::testing::Test {
 protected:
  ::testing::AssertionResult run_steps(const LarsParams& p, const TensorDesc& desc,
                                       bool zero_gradient = false) {
    UpdateFixture f(*be_, desc);
    const std::vector<float> w0 = f.w0();
    std::vector<double> w(w0.begin(), w0.end()), m(w0.size(), 0.0);
    for (int step = 0; step < kSteps; ++step) {
      std::vector<float> g = f.grad(step);
      if (zero_gradient) g.assign(g.size(), 0.f);
      be_->lars_update(p, f.w, upload_as(*be_, desc, g), f.m);
      reference_lars(p, w, m, g);
      auto ok = all_close(plain_values(*be_, f.w), w, 1e-6, 1e-5);
      if (!ok) return ok << " (weights, step " << step << ")";
      ok = all_close(plain_values(*be_, f.m), m, 1e-7, 1e-5);
      if (!ok) return ok << " (momentum, step " << step << ")";
    }
    if (all_close(plain_values(*be_, f.w), w0, 1e-4))
      return ::testing::AssertionFailure() << "the weights did not move";
    return ::testing::AssertionSuccess();
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
};

TEST_F(LarsTest, ThreeStepsMatchTheTrustRatioFormula) {
  EXPECT_TRUE(run_steps({.lr = 1.f, .momentum = 0.9f, .weight_decay = 5e-4f, .eta = 0.02f},
                        plain_desc(Shape{6, 11})));
}

TEST_F(LarsTest, WithoutMomentumOrDecay) {
  EXPECT_TRUE(run_steps({.lr = 2.f, .momentum = 0.f, .weight_decay = 0.f, .eta = 0.01f},
                        plain_desc(Shape{40})));
}

TEST_F(LarsTest, NormsIgnoreThePaddingOfBlockedWeights) {
  auto conv = be_->make_conv(ConvParams{.out_channels = 24}, plain_desc(Shape{2, 24, 6, 6}), true);
  EXPECT_TRUE(run_steps({.lr = 1.f, .momentum = 0.9f, .weight_decay = 1e-3f, .eta = 0.02f},
                        conv->weight_desc()));
}

TEST_F(LarsTest, ZeroGradientFallsBackToThePlainRate) {
  // Only weight decay moves the weights; the trust ratio is 1, not eta / wd.
  EXPECT_TRUE(run_steps({.lr = 0.5f, .momentum = 0.9f, .weight_decay = 0.01f, .eta = 0.001f},
                        plain_desc(Shape{6, 11}), /*zero_gradient=*/true));
}

TEST(OptimizerParallelTest, LargeTensorsMatchTheReferences) {
  // Above the parallel threshold, on two threads: LARS's norms are reductions.
  auto be = test::make_test_backend(2);
  const TensorDesc desc = plain_desc(Shape{50000});
  const SgdParams sp{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .nesterov = true};
  const LarsParams lp{.lr = 1.f, .momentum = 0.9f, .weight_decay = 1e-3f, .eta = 0.02f};
  UpdateFixture sgd(*be, desc), lars(*be, desc);
  const std::vector<float> w0 = sgd.w0();
  std::vector<double> ws(w0.begin(), w0.end()), ms(w0.size(), 0.0), wl = ws, ml = ms;
  for (int step = 0; step < 2; ++step) {
    be->sgd_update(sp, sgd.w, sgd.grad_tensor(step), sgd.m);
    be->lars_update(lp, lars.w, lars.grad_tensor(step), lars.m);
    reference_sgd(sp, ws, ms, sgd.grad(step));
    reference_lars(lp, wl, ml, lars.grad(step));
  }
  EXPECT_TRUE(all_close(sgd.w.to_vector(), ws, 1e-6, 1e-5));
  EXPECT_TRUE(all_close(lars.w.to_vector(), wl, 1e-6, 1e-5));
  EXPECT_TRUE(all_close(lars.m.to_vector(), ml, 1e-7, 1e-5));
}

// Optimizer::step batches the SGD updates (with and without decay) and keeps LARS per tensor:
// each parameter ends as its own backend update would leave it, decay where it should, and a
// parameter without a gradient this step is left alone.
TEST(OptimizerStepTest, EachParameterGetsItsOwnUpdate) {
  auto be = test::make_test_backend();
  const std::vector<Shape> shapes = {Shape{8, 3, 3, 3}, Shape{8}, Shape{8}, Shape{10, 8}, Shape{5}};
  const std::vector<bool> no_decay = {false, true, true, false, false};
  for (const auto kind : {optim::OptimizerKind::sgd, optim::OptimizerKind::lars})
    for (const bool decay_bn : {false, true}) {
      const optim::OptimizerOptions o{.kind = kind,
                                      .momentum = 0.9,
                                      .nesterov = true,
                                      .weight_decay = 1e-2,
                                      .decay_bn_and_bias = decay_bn,
                                      .lars_eta = 0.02};
      std::vector<nn::Parameter> params(shapes.size()), expect(shapes.size());
      std::vector<nn::NamedParameter> named;
      for (size_t i = 0; i < shapes.size(); ++i) {
        for (nn::Parameter* p : {&params[i], &expect[i]}) {
          p->shape = shapes[i], p->no_decay = no_decay[i];
          p->value = be->upload(test::random_tensor(shapes[i], 10 * i + 1));
          p->momentum = be->upload(test::random_tensor(shapes[i], 10 * i + 2));
        }
        named.push_back({"p" + std::to_string(i), &params[i]});
      }
      optim::Optimizer opt(*be, named, o);
      for (int step = 0; step < 2; ++step) {
        for (size_t i = 0; i + 1 < shapes.size(); ++i)  // the last one gets no gradient
          params[i].grad = be->upload(test::random_tensor(shapes[i], 100 * step + i + 3));
        opt.step(0.1);
        for (size_t i = 0; i + 1 < shapes.size(); ++i) {
          nn::Parameter& e = expect[i];
          const Tensor g = be->upload(test::random_tensor(shapes[i], 100 * step + i + 3));
          const float wd = decay_bn || !e.no_decay ? 1e-2f : 0.f;
          if (kind == optim::OptimizerKind::lars && !e.no_decay)
            be->lars_update({.lr = 0.1f, .momentum = 0.9f, .weight_decay = wd, .eta = 0.02f},
                            e.value, g, e.momentum);
          else
            be->sgd_update({.lr = 0.1f,
                            .momentum = 0.9f,
                            .weight_decay = wd,
                            .nesterov = kind == optim::OptimizerKind::sgd},
                           e.value, g, e.momentum);
        }
      }
      for (size_t i = 0; i < shapes.size(); ++i) {
        SCOPED_TRACE(testing::Message() << "parameter " << i << (decay_bn ? ", decay all" : ""));
        EXPECT_EQ(be->download(params[i].value).to_vector(),
                  be->download(expect[i].value).to_vector());
        EXPECT_EQ(be->download(params[i].momentum).to_vector(),
                  be->download(expect[i].momentum).to_vector());
        EXPECT_FALSE(params[i].grad.defined()) << "gradients are released after the step";
      }
      EXPECT_EQ(be->download(params[4].value).to_vector(),
                test::random_tensor(shapes[4], 41).to_vector());
    }
}

TEST(OptimizerErrorTest, MismatchedLayoutsThrow) {
  auto be = test::make_test_backend();
  Tensor w = be->allocate(plain_desc(Shape{4, 4}));
  Tensor g = be->allocate(plain_desc(Shape{16}));
  Tensor m = be->allocate(plain_desc(Shape{4, 4}));
  EXPECT_THROW(be->sgd_update({}, w, g, m), Error);
  EXPECT_THROW(be->lars_update({}, w, g, m), Error);
}

}  // namespace
}  // namespace rn

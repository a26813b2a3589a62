// The residual-unit variants of He et al. 2016 ("Identity Mappings"): the six shortcut kinds and
// the five activation placements, on basic and bottleneck units. Gradients against finite
// differences, parameter counts worked out by hand, and each variant's defining property.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend/dropout_mask.h"
#include "core/check.h"
#include "core/nn/residual_units.h"
#include "tests/core/gradient_check.h"
#include "tests/core/nn/nn_test_util.h"

namespace rn::nn {
namespace {

using test::plain_values;
using test::random_values;
using test::upload_values;

struct VariantCase {
  std::string name;
  bool bottleneck;
  bool preact;  // full pre-activation unit (PreActBasicUnit / PreActBottleneckUnit)
  UnitOptions o;
  Shape x;
  int64_t params;  // by hand, below
};

void PrintTo(const VariantCase& c, std::ostream* os) {
  *os << c.name;
}

void for_each_dropout(Module& m, const std::function<void(Dropout&)>& f) {
  if (auto* d = dynamic_cast<Dropout*>(&m)) f(*d);
  m.for_each_child([&](Module& child) { for_each_dropout(child, f); });
}

std::unique_ptr<ResidualUnit> make(Backend& be, const VariantCase& c, uint64_t seed) {
  InitRng rng(seed);
  if (c.preact && c.bottleneck) return std::make_unique<PreActBottleneckUnit>(be, c.o, rng);
  if (c.preact) return std::make_unique<PreActBasicUnit>(be, c.o, rng);
  if (c.bottleneck) return std::make_unique<BottleneckUnit>(be, c.o, rng);
  return std::make_unique<BasicUnit>(be, c.o, rng);
}

UnitOptions basic(ShortcutVariant v, UnitActivation a = UnitActivation::original, int in = 8,
                  int stride = 1, ShortcutKind k = ShortcutKind::A) {
  return UnitOptions{.in_channels = in,
                     .planes = 8,
                     .stride = stride,
                     .shortcut = k,
                     .variant = v,
                     .gate_bias = -1.f,
                     .activation = a};
}

UnitOptions bottleneck(ShortcutVariant v, UnitActivation a = UnitActivation::original) {
  return UnitOptions{.in_channels = 16,
                     .planes = 4,
                     .stride = 1,
                     .variant = v,
                     .gate_bias = -1.f,
                     .activation = a};
}

// Parameters by hand. Basic 8 -> 8: two 3x3 convolutions 8*8*9 = 576 each, two BNs 2*8 each:
// 1184. Bottleneck 16 -> 4 -> 16: 16*4 + 4*4*9 + 4*16 = 272 weights, BNs 2*(4+4+16) = 48: 320.
// A gate adds a 1x1 convolution with bias, in*out + out; a 1x1 conv shortcut in*out + 2*out (its
// BN); scaling, dropout and moving BN or ReLU add nothing.
constexpr int64_t kBasic = 2 * 576 + 2 * 16;
constexpr int64_t kBottleneck = 16 * 4 + 4 * 4 * 9 + 4 * 16 + 2 * (4 + 4 + 16);
static_assert(kBasic == 1184 && kBottleneck == 320);

using V = ShortcutVariant;
using A = UnitActivation;
const std::vector<VariantCase> kCases = {
    {"basic_scale_shortcut", false, false, basic(V::scale_shortcut), {2, 8, 5, 5}, kBasic},
    {"basic_scale_both", false, false, basic(V::scale_both), {2, 8, 5, 5}, kBasic},
    {"basic_exclusive_gate",
     false,
     false,
     basic(V::exclusive_gate),
     {2, 8, 5, 5},
     kBasic + 8 * 8 + 8},
    {"basic_exclusive_gate_stride2_A",
     false,
     false,
     basic(V::exclusive_gate, A::original, 4, 2),
     {2, 4, 6, 6},
     4 * 8 * 9 + 576 + 32 + 4 * 8 + 8},
    {"basic_shortcut_gate",
     false,
     false,
     basic(V::shortcut_gate),
     {2, 8, 5, 5},
     kBasic + 8 * 8 + 8},
    {"basic_conv1x1", false, false, basic(V::conv1x1), {2, 8, 5, 5}, kBasic + 8 * 8 + 16},
    {"basic_dropout", false, false, basic(V::dropout), {2, 8, 5, 5}, kBasic},
    {"basic_bn_after_add", false, false, basic(V::identity, A::bn_after_add), {2, 8, 5, 5}, kBasic},
    {"basic_relu_before_add",
     false,
     false,
     basic(V::identity, A::relu_before_add),
     {2, 8, 5, 5},
     kBasic},
    {"basic_relu_preact", false, false, basic(V::identity, A::relu_preact), {2, 8, 5, 5}, kBasic},
    {"basic_relu_preact_gate",
     false,
     false,
     basic(V::shortcut_gate, A::relu_preact),
     {2, 8, 5, 5},
     kBasic + 8 * 8 + 8},
    {"basic_bn_after_add_B_stride2",
     false,
     false,
     basic(V::identity, A::bn_after_add, 4, 2, ShortcutKind::B),
     {2, 4, 6, 6},
     4 * 8 * 9 + 576 + 32 + 4 * 8},  // the projection has no BN: the BN after the sum has it
    {"preact_bottleneck_exclusive_gate",
     true,
     true,
     bottleneck(V::exclusive_gate),
     {2, 16, 4, 4},
     kBottleneck + 16 * 16 + 16},
    {"bottleneck_scale_both", true, false, bottleneck(V::scale_both), {2, 16, 4, 4}, kBottleneck},
    {"bottleneck_exclusive_gate",
     true,
     false,
     bottleneck(V::exclusive_gate),
     {2, 16, 4, 4},
     kBottleneck + 16 * 16 + 16},
    {"bottleneck_dropout", true, false, bottleneck(V::dropout), {2, 16, 4, 4}, kBottleneck},
    {"bottleneck_bn_after_add",
     true,
     false,
     bottleneck(V::identity, A::bn_after_add),
     {2, 16, 4, 4},
     kBottleneck},
    {"bottleneck_relu_before_add",
     true,
     false,
     bottleneck(V::identity, A::relu_before_add),
     {2, 16, 4, 4},
     kBottleneck},
    {"bottleneck_relu_preact",
     true,
     false,
     bottleneck(V::identity, A::relu_preact),
     {2, 16, 4, 4},
     kBottleneck},
};

class ResidualVariantTest : public ::testing::TestWithParam<VariantCase> {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(1);
};

TEST_P(ResidualVariantTest, ParameterCountIsTheHandCount) {
  const VariantCase& c = GetParam();
  auto unit = make(*be, c, 1);
  int64_t n = 0;
  for (const auto& p : test::collect_all(*unit).params) n += p.param->shape.numel();
  EXPECT_EQ(n, c.params);
}

TEST_P(ResidualVariantTest, GradientsMatchFiniteDifferences) {
  const VariantCase& c = GetParam();
  auto unit = make(*be, c, 3);
  // A dropout mask stays fixed through the check: it is a function of the key alone.
  for_each_dropout(*unit, [](Dropout& d) { d.set_key(1234); });
  test::ModuleCheckOptions o;
  o.input_points = 24;
  o.param_points = 12;
  o.fd.step = 2e-3;
  test::expect_module_gradients(*be, *unit, c.x, random_values(c.x.numel(), 6), o);
}

INSTANTIATE_TEST_SUITE_P(Variants, ResidualVariantTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// What each variant computes, on units whose branch starts at zero (the last BN's gamma at 0),
// so that the output shows the shortcut's path alone.

class VariantSemanticsTest : public ::testing::Test {
 protected:
  std::vector<float> run(ShortcutVariant v, float gate_bias, bool training = true,
                         UnitActivation a = UnitActivation::original) {
    InitRng rng(5);
    UnitOptions o = basic(v, a);
    o.gate_bias = gate_bias;
    o.zero_init_last_bn = true;
    BasicUnit unit(*be, o, rng);
    for_each_dropout(unit, [](Dropout& d) { d.set_key(99); });
    unit.set_training(training);
    return plain_values(*be, unit.forward(upload_values(*be, xs, x)));
  }
  static std::vector<float> relu(std::vector<float> v, float scale = 1.f) {
    for (float& f : v) f = std::max(f * scale, 0.f);
    return v;
  }
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  const Shape xs{2, 8, 5, 5};
  const std::vector<float> x = random_values(xs.numel(), 8);
};

TEST_F(VariantSemanticsTest, ScalingHalvesTheShortcut) {
  EXPECT_TRUE(test::all_close(run(V::identity, 0), relu(x), 1e-6, 0));
  EXPECT_TRUE(test::all_close(run(V::scale_shortcut, 0), relu(x, 0.5f), 1e-6, 0));
  EXPECT_TRUE(test::all_close(run(V::scale_both, 0), relu(x, 0.5f), 1e-6, 0));
}

TEST_F(VariantSemanticsTest, GatesPassTheShortcutByOneMinusG) {
  // b_g = -30: g = sigmoid(about -30) ~ 1e-13, the shortcut passes whole. b_g = +30: g ~ 1,
  // nothing of it passes, and the exclusive gate passes the (zero) branch.
  EXPECT_TRUE(test::all_close(run(V::exclusive_gate, -30), relu(x), 1e-5, 0));
  EXPECT_TRUE(test::all_close(run(V::shortcut_gate, -30), relu(x), 1e-5, 0));
  EXPECT_TRUE(test::all_close(run(V::exclusive_gate, 30), relu(x, 0.f), 1e-5, 0));
  EXPECT_TRUE(test::all_close(run(V::shortcut_gate, 30), relu(x, 0.f), 1e-5, 0));
  // b_g = 0 with a gate in between: strictly less than the whole shortcut where x > 0.
  const std::vector<float> half = run(V::shortcut_gate, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] > 0.05f) {
      ASSERT_LT(half[i], x[i]) << i;
    }
  }
}

TEST_F(VariantSemanticsTest, DropoutDropsTheShortcutInTrainingOnly) {
  const std::vector<float> y = run(V::dropout, 0);
  const uint32_t t = dropout_threshold(0.5f);
  // The unit's dropout layer holds key 99 (set above): the shortcut is x * mask * 2.
  std::vector<float> want(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    want[i] = std::max(dropout_keep(99, static_cast<int64_t>(i), t) ? 2 * x[i] : 0.f, 0.f);
  EXPECT_TRUE(test::all_close(y, want, 1e-6, 0));
  EXPECT_TRUE(test::all_close(run(V::dropout, 0, false), relu(x), 1e-6, 0));
}

TEST_F(VariantSemanticsTest, ActivationPlacements) {
  // ReLU before addition: the branch adds a non-negative term, nothing clamps the sum.
  const std::vector<float> before = run(V::identity, 0, true, A::relu_before_add);
  EXPECT_TRUE(test::all_close(before, x, 1e-6, 0));  // zero branch: y = x, negatives kept
  // ReLU-only pre-activation: y = x + F(relu(x)): with F zero, y = x.
  EXPECT_TRUE(test::all_close(run(V::identity, 0, true, A::relu_preact), x, 1e-6, 0));
  // BN after addition: the sum is normalised, then ReLU: every output non-negative, and each
  // channel's pre-ReLU batch mean 0 (half-wave: mean of the output below that of relu(x)).
  const std::vector<float> after = run(V::identity, 0, true, A::bn_after_add);
  EXPECT_TRUE(std::all_of(after.begin(), after.end(), [](float f) { return f >= 0; }));
  EXPECT_FALSE(test::all_close(after, relu(x), 1e-3, 0));
}

TEST(ResidualVariantNamesTest, NewLayersTakeTheirOwnNames) {
  auto be = make_cpu_backend(1);
  InitRng rng(1);
  BasicUnit gated(*be, basic(V::exclusive_gate), rng);
  EXPECT_EQ(
      test::param_names(gated),
      (std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                                "bn2.weight", "bn2.bias", "gate.conv.weight", "gate.conv.bias"}));
  // The gate's bias starts at b_g; it is exempt from weight decay like every bias.
  const auto* bias = test::find_param(gated, "gate.conv.bias");
  EXPECT_EQ(plain_values(*be, bias->value), std::vector<float>(8, -1.f));
  EXPECT_TRUE(bias->no_decay);
  BasicUnit after(*be, basic(V::identity, A::bn_after_add), rng);
  EXPECT_EQ(test::param_names(after),
            (std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                                      "bn2.weight", "bn2.bias"}));
}

TEST(NewLayersTest, SigmoidScaleAndDropoutGradients) {
  auto be = make_cpu_backend(1);
  const Shape xs{2, 16, 3, 3};
  const std::vector<float> x = random_values(xs.numel(), 9);
  for (bool blocked : {false, true}) {
    test::ModuleCheckOptions o;
    o.blocked_input = blocked;
    Sigmoid sigmoid(*be);
    test::expect_module_gradients(*be, sigmoid, xs, x, o);
    Scale scale(*be, 0.5f);
    test::expect_module_gradients(*be, scale, xs, x, o);
    Dropout dropout(*be, 0.5f);
    dropout.set_key(7);
    test::expect_module_gradients(*be, dropout, xs, x, o);
  }
  // Inference: dropout is the identity, whatever the key.
  Dropout dropout(*be, 0.5f);
  dropout.set_training(false);
  EXPECT_EQ(plain_values(*be, dropout.forward(upload_values(*be, xs, x))), x);
  EXPECT_THROW(Dropout(*be, 1.f), rn::Error);
}

}  // namespace
}  // namespace rn::nn

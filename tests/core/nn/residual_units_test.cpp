// Tests of the residual units: each kind against a composition of separately run layers that
// share its weights, its input and parameter gradients against finite differences, its output
// shape, its torchvision parameter names, and the zero-initialised last batch norm.
#include "core/nn/residual_units.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/check.h"
#include "tests/core/gradient_check.h"
#include "tests/core/nn/nn_test_util.h"

namespace rn::nn {
namespace {

using test::all_close;
using test::find_param;
using test::plain_values;
using test::random_values;
using test::upload_values;
using test::write_values;

enum class Kind {
  basic,
  bottleneck,
  preact_basic,
  preact_bottleneck,
  plain_basic,
  plain_bottleneck
};

struct UnitCase {
  std::string name;
  Kind kind;
  UnitOptions o;
  Shape x;
  bool blocked;
  Shape y;                          // the expected output shape
  std::vector<std::string> params;  // in collection order
};

void PrintTo(const UnitCase& c, std::ostream* os) {
  *os << c.name;
}

std::unique_ptr<ResidualUnit> make_unit(Backend& be, Kind kind, const UnitOptions& o,
                                        uint64_t seed) {
  InitRng rng(seed);
  switch (kind) {
    case Kind::basic:
      return std::make_unique<BasicUnit>(be, o, rng);
    case Kind::bottleneck:
      return std::make_unique<BottleneckUnit>(be, o, rng);
    case Kind::preact_basic:
      return std::make_unique<PreActBasicUnit>(be, o, rng);
    case Kind::preact_bottleneck:
      return std::make_unique<PreActBottleneckUnit>(be, o, rng);
    case Kind::plain_basic:
      return std::make_unique<BasicUnit>(be, o, rng, true);
    case Kind::plain_bottleneck:
      return std::make_unique<BottleneckUnit>(be, o, rng, true);
  }
  return nullptr;
}

bool is_bn_param(const std::string& name) {
  return name.find("bn") != std::string::npos || name == "downsample.1.weight" ||
         name == "downsample.1.bias";
}

// Every batch norm gets gamma in [0.5, 1.5] and beta in [-0.3, 0.3], so that each one matters.
void randomise_batch_norms(Backend& be, Module& m) {
  uint32_t seed = 100;
  for (const auto& p : test::collect_all(m).params) {
    if (!is_bn_param(p.name)) continue;
    const bool gamma = p.name.ends_with("weight");
    write_values(be, p.param->value,
                 gamma ? random_values(p.param->shape.numel(), ++seed, 0.5f, 1.5f)
                       : random_values(p.param->shape.numel(), ++seed, -0.3f, 0.3f));
  }
}

// ---------------------------------------------------------------------------------------------
// The reference: each layer of the unit run on its own (training mode) with the unit's weights.

struct Host {
  Shape shape;
  std::vector<float> v;
};

class Reference {
 public:
  Reference(Backend& be, Module& unit) : be_(be), unit_(unit) {}

  Host conv(const std::string& name, const ConvParams& p, const Host& x) {
    InitRng rng(0);
    Conv2d c(be_, static_cast<int>(x.shape[1]), p, rng);
    write_values(be_, find_param(c, "weight")->value,
                 plain_values(be_, find_param(unit_, name + ".weight")->value));
    return run(c, x);
  }
  Host bn(const std::string& name, bool relu, const Host& x) {
    BatchNorm2d b(be_, static_cast<int>(x.shape[1]), relu);
    for (const char* p : {"weight", "bias"})
      write_values(be_, find_param(b, p)->value,
                   plain_values(be_, find_param(unit_, name + "." + p)->value));
    return run(b, x);
  }
  static Host relu(Host x) {
    for (float& v : x.v) v = std::max(v, 0.f);
    return x;
  }
  static Host add(Host a, const Host& b) {
    EXPECT_EQ(a.shape, b.shape);
    for (size_t i = 0; i < a.v.size(); ++i) a.v[i] += b.v[i];
    return a;
  }
  static Host pad(const Host& x, int out, int stride) {
    const Shape s{x.shape[0], out, (x.shape[2] + stride - 1) / stride,
                  (x.shape[3] + stride - 1) / stride};
    return Host{s, test::pad_shortcut_reference(x.shape, x.v, out, stride)};
  }

 private:
  Host run(Module& m, const Host& x) {
    Tensor y = m.forward(upload_values(be_, x.shape, x.v));
    return Host{y.shape(), plain_values(be_, y)};
  }
  Backend& be_;
  Module& unit_;
};

ConvParams k3(int out, int stride, int groups = 1) {
  return ConvParams{.out_channels = out, .kernel = 3, .stride = stride, .pad = 1, .groups = groups};
}
ConvParams k1(int out, int stride) {
  return ConvParams{.out_channels = out, .kernel = 1, .stride = stride, .pad = 0};
}

// The unit's output written out from the papers (torchvision's BasicBlock / Bottleneck; He et al.
// 2016's full pre-activation unit).
Host reference_output(Backend& be, Module& unit, Kind kind, const UnitOptions& o, const Host& x) {
  Reference r(be, unit);
  const bool bottleneck =
      kind == Kind::bottleneck || kind == Kind::preact_bottleneck || kind == Kind::plain_bottleneck;
  const bool preact = kind == Kind::preact_basic || kind == Kind::preact_bottleneck;
  const bool plain = kind == Kind::plain_basic || kind == Kind::plain_bottleneck;
  const int width = static_cast<int>(o.planes * (o.width_per_group / 64.0)) * o.groups;
  const int out = bottleneck ? o.planes * 4 : o.planes;
  const bool reshapes = o.stride != 1 || o.in_channels != out;
  const bool projection =
      o.shortcut == ShortcutKind::C || (o.shortcut == ShortcutKind::B && reshapes);

  if (preact) {
    const Host a = r.bn("bn1", true, x);
    Host h;
    if (bottleneck) {
      h = r.bn("bn2", true, r.conv("conv1", k1(width, 1), a));
      h = r.bn("bn3", true, r.conv("conv2", k3(width, o.stride, o.groups), h));
      h = r.conv("conv3", k1(out, 1), h);
    } else {
      h = r.bn("bn2", true, r.conv("conv1", k3(out, o.stride), a));
      h = r.conv("conv2", k3(out, 1), h);
    }
    // A projection sees the pre-activated input; the identity and option A see x itself.
    const Host s = projection ? r.conv("downsample.0", k1(out, o.stride), a)
                   : reshapes ? Reference::pad(x, out, o.stride)
                              : x;
    return Reference::add(h, s);
  }

  Host h;
  if (bottleneck) {
    const int s1 = o.stride_on_3x3 ? 1 : o.stride, s3 = o.stride_on_3x3 ? o.stride : 1;
    h = r.bn("bn1", true, r.conv("conv1", k1(width, s1), x));
    h = r.bn("bn2", true, r.conv("conv2", k3(width, s3, o.groups), h));
    h = r.bn("bn3", false, r.conv("conv3", k1(out, 1), h));
  } else {
    h = r.bn("bn1", true, r.conv("conv1", k3(out, o.stride), x));
    h = r.bn("bn2", false, r.conv("conv2", k3(out, 1), h));
  }
  if (plain) return Reference::relu(h);
  const Host s = projection
                     ? r.bn("downsample.1", false, r.conv("downsample.0", k1(out, o.stride), x))
                 : reshapes ? Reference::pad(x, out, o.stride)
                            : x;
  return Reference::relu(Reference::add(h, s));
}

// ---------------------------------------------------------------------------------------------

const std::vector<std::string> kBasic = {"conv1.weight", "bn1.weight", "bn1.bias",
                                         "conv2.weight", "bn2.weight", "bn2.bias"};
const std::vector<std::string> kBottleneck = {"conv1.weight", "bn1.weight", "bn1.bias",
                                              "conv2.weight", "bn2.weight", "bn2.bias",
                                              "conv3.weight", "bn3.weight", "bn3.bias"};
const std::vector<std::string> kPreActBasic = {"bn1.weight", "bn1.bias", "conv1.weight",
                                               "bn2.weight", "bn2.bias", "conv2.weight"};
const std::vector<std::string> kPreActBottleneck = {"bn1.weight", "bn1.bias", "conv1.weight",
                                                    "bn2.weight", "bn2.bias", "conv2.weight",
                                                    "bn3.weight", "bn3.bias", "conv3.weight"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
const std::vector<std::string> kProjection = {"downsample.0.weight", "downsample.1.weight",
                                              "downsample.1.bias"};
const std::vector<std::string> kPreActProjection = {"downsample.0.weight"};

const std::vector<UnitCase> kCases = {
    {"basic_A_stride2_double", Kind::basic,
     UnitOptions{.in_channels = 8, .planes = 16, .stride = 2, .shortcut = ShortcutKind::A},
     Shape{2, 8, 8, 8}, false, Shape{2, 16, 4, 4}, kBasic},
    {"basic_A_identity_blocked", Kind::basic,
     UnitOptions{.in_channels = 16, .planes = 16, .stride = 1, .shortcut = ShortcutKind::A},
     Shape{2, 16, 6, 6}, true, Shape{2, 16, 6, 6}, kBasic},
    {"basic_B_projection", Kind::basic,
     UnitOptions{.in_channels = 6, .planes = 12, .stride = 2, .shortcut = ShortcutKind::B},
     Shape{3, 6, 7, 7}, false, Shape{3, 12, 4, 4}, with(kBasic, kProjection)},
    {"basic_B_identity", Kind::basic,
     UnitOptions{.in_channels = 8, .planes = 8, .stride = 1, .shortcut = ShortcutKind::B},
     Shape{2, 8, 5, 5}, false, Shape{2, 8, 5, 5}, kBasic},
    {"basic_C_blocked", Kind::basic,
     UnitOptions{.in_channels = 16, .planes = 16, .stride = 1, .shortcut = ShortcutKind::C},
     Shape{2, 16, 5, 5}, true, Shape{2, 16, 5, 5}, with(kBasic, kProjection)},
    {"bottleneck_identity", Kind::bottleneck,
     UnitOptions{.in_channels = 16, .planes = 4, .stride = 1}, Shape{2, 16, 6, 6}, true,
     Shape{2, 16, 6, 6}, kBottleneck},
    {"bottleneck_stride_on_3x3", Kind::bottleneck,
     UnitOptions{.in_channels = 8, .planes = 4, .stride = 2, .stride_on_3x3 = true},
     Shape{2, 8, 7, 7}, false, Shape{2, 16, 4, 4}, with(kBottleneck, kProjection)},
    {"bottleneck_stride_on_1x1", Kind::bottleneck,
     UnitOptions{.in_channels = 8, .planes = 4, .stride = 2, .stride_on_3x3 = false},
     Shape{2, 8, 7, 7}, false, Shape{2, 16, 4, 4}, with(kBottleneck, kProjection)},
    {"bottleneck_groups4", Kind::bottleneck,
     UnitOptions{.in_channels = 16, .planes = 8, .stride = 2, .groups = 4, .width_per_group = 24},
     Shape{2, 16, 6, 6}, true, Shape{2, 32, 3, 3}, with(kBottleneck, kProjection)},
    {"preact_basic_projection", Kind::preact_basic,
     UnitOptions{.in_channels = 8, .planes = 16, .stride = 2}, Shape{2, 8, 6, 6}, false,
     Shape{2, 16, 3, 3}, with(kPreActBasic, kPreActProjection)},
    {"preact_basic_identity", Kind::preact_basic,
     UnitOptions{.in_channels = 8, .planes = 8, .stride = 1}, Shape{3, 8, 5, 5}, false,
     Shape{3, 8, 5, 5}, kPreActBasic},
    {"preact_basic_A", Kind::preact_basic,
     UnitOptions{.in_channels = 4, .planes = 8, .stride = 2, .shortcut = ShortcutKind::A},
     Shape{2, 4, 6, 6}, false, Shape{2, 8, 3, 3}, kPreActBasic},
    {"preact_bottleneck_projection", Kind::preact_bottleneck,
     UnitOptions{.in_channels = 8, .planes = 4, .stride = 2}, Shape{2, 8, 6, 6}, false,
     Shape{2, 16, 3, 3}, with(kPreActBottleneck, kPreActProjection)},
    {"preact_bottleneck_identity_blocked", Kind::preact_bottleneck,
     UnitOptions{.in_channels = 16, .planes = 4, .stride = 1}, Shape{2, 16, 5, 5}, true,
     Shape{2, 16, 5, 5}, kPreActBottleneck},
    {"plain_basic", Kind::plain_basic, UnitOptions{.in_channels = 8, .planes = 16, .stride = 2},
     Shape{2, 8, 6, 6}, false, Shape{2, 16, 3, 3}, kBasic},
    {"plain_bottleneck", Kind::plain_bottleneck,
     UnitOptions{.in_channels = 16, .planes = 4, .stride = 1}, Shape{2, 16, 5, 5}, false,
     Shape{2, 16, 5, 5}, kBottleneck},
};

// One thread: see layers_test.cpp.
class ResidualUnitTest : public ::testing::TestWithParam<UnitCase> {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  // Direct convolutions: finite differences of fp32 losses with a step of 2e-3 see the rounding
  // of the forward they difference, and Winograd's (up to 1e-5 of sum|a||b|, about ten times
  // direct's) is more than they can see through. The Winograd passes are held to a direct
  // convolution in double (ConvAlgorithmTest), and the units with the default algorithm to these
  // (GradientsWithTheDefaultAlgorithmMatchDirect).
  std::unique_ptr<Backend> direct = [] {
    auto be = make_cpu_backend(1);
    be->set_conv_algorithm(ConvAlgorithm::direct);
    return be;
  }();
};

TEST_P(ResidualUnitTest, ShapesAndTorchvisionNames) {
  const UnitCase& c = GetParam();
  auto unit = make_unit(*be, c.kind, c.o, 1);
  EXPECT_EQ(unit->output_shape(c.x), c.y);
  EXPECT_EQ(test::param_names(*unit), c.params);
  // Every batch norm, and only those, has running statistics.
  std::vector<std::string> bn_buffers;
  for (const auto& n : c.params)
    if (is_bn_param(n) && n.ends_with(".weight")) {
      const std::string layer = n.substr(0, n.size() - std::string(".weight").size());
      bn_buffers.push_back(layer + ".running_mean");
      bn_buffers.push_back(layer + ".running_var");
    }
  EXPECT_EQ(test::buffer_names(*unit), bn_buffers);
  // Batch-norm parameters are exempt from decay, convolution weights are not.
  for (const auto& p : test::collect_all(*unit).params)
    EXPECT_EQ(p.param->no_decay, is_bn_param(p.name)) << p.name;
  Tensor y = unit->forward(upload_values(*be, c.x, random_values(c.x.numel(), 3)));
  EXPECT_EQ(y.shape(), c.y);
}

TEST_P(ResidualUnitTest, ForwardMatchesLayerByLayerComposition) {
  const UnitCase& c = GetParam();
  auto unit = make_unit(*be, c.kind, c.o, 2);
  randomise_batch_norms(*be, *unit);
  const std::vector<float> x = random_values(c.x.numel(), 4);
  Tensor y = unit->forward(test::upload_as(*be, test::input_desc(*be, c.x, c.blocked), x));
  const Host expected = reference_output(*be, *unit, c.kind, c.o, Host{c.x, x});
  ASSERT_EQ(expected.shape, c.y);
  EXPECT_TRUE(all_close(plain_values(*be, y), expected.v, 1e-4, 1e-4));
}

TEST_P(ResidualUnitTest, GradientsMatchFiniteDifferences) {
  const UnitCase& c = GetParam();
  auto unit = make_unit(*be, c.kind, c.o, 3);
  randomise_batch_norms(*be, *unit);
  test::ModuleCheckOptions o;
  o.blocked_input = c.blocked;
  o.input_points = 30;
  o.param_points = 16;
  // A small step: the ReLUs inside put kinks within a larger one at many points.
  o.fd.step = 2e-3;
  auto unit_direct = make_unit(*direct, c.kind, c.o, 3);
  randomise_batch_norms(*direct, *unit_direct);
  test::expect_module_gradients(*direct, *unit_direct, c.x, random_values(c.x.numel(), 6), o);
}

// The unit with the backend's default algorithm (auto: Winograd where it wins) gives the output
// and every gradient the direct unit gives, within 1e-3 of each tensor's largest magnitude.
TEST_P(ResidualUnitTest, GradientsWithTheDefaultAlgorithmMatchDirect) {
  const UnitCase& c = GetParam();
  auto unit = make_unit(*be, c.kind, c.o, 3), unit_direct = make_unit(*direct, c.kind, c.o, 3);
  randomise_batch_norms(*be, *unit);
  randomise_batch_norms(*direct, *unit_direct);
  const std::vector<float> x = random_values(c.x.numel(), 6);
  const std::vector<float> r = random_values(c.y.numel(), 99);
  const auto got =
      test::run_forward_backward(*be, *unit, test::input_desc(*be, c.x, c.blocked), x, r);
  const auto want = test::run_forward_backward(*direct, *unit_direct,
                                               test::input_desc(*direct, c.x, c.blocked), x, r);
  const auto close = [](const std::vector<float>& a, const std::vector<float>& b) {
    float scale = 0;
    for (float v : b) scale = std::max(scale, std::abs(v));
    return all_close(a, b, 1e-3 * scale);
  };
  EXPECT_TRUE(close(got.output, want.output)) << "output";
  EXPECT_TRUE(close(got.dx, want.dx)) << "input gradient";
  ASSERT_EQ(got.params.size(), want.params.size());
  for (const auto& [name, g] : want.params) EXPECT_TRUE(close(got.params.at(name), g)) << name;
}

TEST_P(ResidualUnitTest, ReluTapSeesEveryReluOutputInOrder) {
  const UnitCase& c = GetParam();
  auto unit = make_unit(*be, c.kind, c.o, 4);
  std::vector<std::vector<float>> seen;
  unit->set_relu_tap([&](const Tensor& y) { seen.push_back(plain_values(*be, y)); });
  const Tensor x =
      test::upload_as(*be, test::input_desc(*be, c.x, c.blocked), random_values(c.x.numel(), 5));
  const Tensor y = unit->forward(x);
  // One ReLU after each BN but the last, then one after the sum (the original units) or after
  // the last BN (plain units); pre-activation units end on a convolution.
  const bool bottleneck = c.kind == Kind::bottleneck || c.kind == Kind::preact_bottleneck ||
                          c.kind == Kind::plain_bottleneck;
  ASSERT_EQ(seen.size(), bottleneck ? 3u : 2u);
  for (const auto& v : seen)
    EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float f) { return f >= 0; }));
  const bool preact = c.kind == Kind::preact_basic || c.kind == Kind::preact_bottleneck;
  if (!preact) {
    EXPECT_EQ(seen.back(), plain_values(*be, y));  // the unit's output is the last
  }
  // Inference runs no tap, and null turns it off.
  unit->set_training(false);
  unit->forward(x);
  unit->set_training(true);
  unit->set_relu_tap(nullptr);
  unit->forward(x);
  EXPECT_EQ(seen.size(), bottleneck ? 3u : 2u);
}

INSTANTIATE_TEST_SUITE_P(Units, ResidualUnitTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------

TEST(ResidualUnitDetailTest, ParameterShapesAreTorchvisionShapes) {
  auto be = make_cpu_backend(1);
  InitRng rng(1);
  // torchvision's resnext50_32x4d layer2.0, scaled down: planes 16, 4 groups of width 8.
  BottleneckUnit unit(
      *be,
      UnitOptions{.in_channels = 32, .planes = 16, .stride = 2, .groups = 4, .width_per_group = 8},
      rng);
  auto shape = [&](const std::string& n) { return find_param(unit, n)->shape; };
  EXPECT_EQ(shape("conv1.weight"), (Shape{8, 32, 1, 1}));
  EXPECT_EQ(shape("bn1.weight"), (Shape{8}));
  EXPECT_EQ(shape("conv2.weight"), (Shape{8, 2, 3, 3}));
  EXPECT_EQ(shape("conv3.weight"), (Shape{64, 8, 1, 1}));
  EXPECT_EQ(shape("bn3.bias"), (Shape{64}));
  EXPECT_EQ(shape("downsample.0.weight"), (Shape{64, 32, 1, 1}));
  EXPECT_EQ(shape("downsample.1.weight"), (Shape{64}));
  // Multiply-adds of one 32 x 8 x 8 sample: conv1 at 8 x 8, conv2 and conv3 and the projection
  // at 4 x 4.
  EXPECT_EQ(unit.macs(Shape{1, 32, 8, 8}),
            8 * 64 * 32 + 8 * 16 * 2 * 9 + 64 * 16 * 8 + 64 * 16 * 32);
  EXPECT_EQ(unit.weighted_layers(), 4);
}

TEST(ResidualUnitDetailTest, ZeroInitLastBatchNorm) {
  auto be = make_cpu_backend(1);
  const Shape xs{2, 8, 5, 5};
  const std::vector<float> x = random_values(xs.numel(), 7);
  struct Last {
    Kind kind;
    UnitOptions o;
    std::string last;
  };
  for (const Last& l :
       {Last{Kind::basic, UnitOptions{.in_channels = 8, .planes = 8}, "bn2.weight"},
        Last{Kind::bottleneck, UnitOptions{.in_channels = 8, .planes = 2}, "bn3.weight"}}) {
    UnitOptions o = l.o;
    o.zero_init_last_bn = true;
    auto unit = make_unit(*be, l.kind, o, 1);
    for (const auto& p : test::collect_all(*unit).params) {
      if (!is_bn_param(p.name) || !p.name.ends_with(".weight")) continue;
      const float expected = p.name == l.last ? 0.f : 1.f;
      EXPECT_EQ(plain_values(*be, p.param->value),
                std::vector<float>(p.param->shape.numel(), expected))
          << p.name;
    }
    // The branch adds nothing, so an identity unit starts as ReLU(x).
    std::vector<float> expected = x;
    for (float& v : expected) v = std::max(v, 0.f);
    EXPECT_TRUE(
        all_close(plain_values(*be, unit->forward(upload_values(*be, xs, x))), expected, 1e-6, 0));
    o.zero_init_last_bn = false;
    auto normal = make_unit(*be, l.kind, o, 1);
    EXPECT_EQ(plain_values(*be, find_param(*normal, l.last)->value),
              std::vector<float>(find_param(*normal, l.last)->shape.numel(), 1.f));
  }
}

TEST(ResidualUnitDetailTest, ModesReachEveryLayer) {
  auto be = make_cpu_backend(1);
  InitRng rng(1);
  PreActBasicUnit unit(*be, UnitOptions{.in_channels = 4, .planes = 8, .stride = 2}, rng);
  const Shape xs{2, 4, 6, 6};
  const std::vector<float> x = random_values(xs.numel(), 8);
  unit.forward(upload_values(*be, xs, x));  // one training step moves every running mean
  unit.set_training(false);
  const auto c = test::collect_all(unit);
  std::vector<std::vector<float>> before;
  for (const auto& b : c.buffers) before.push_back(plain_values(*be, *b.tensor));
  Tensor y = unit.forward(upload_values(*be, xs, x));
  for (size_t i = 0; i < c.buffers.size(); ++i)
    EXPECT_EQ(plain_values(*be, *c.buffers[i].tensor), before[i])
        << c.buffers[i].name << " moved in inference mode";
  EXPECT_THROW(unit.backward(y), Error);
}

TEST(ResidualUnitDetailTest, OptionACannotReduceChannels) {
  auto be = make_cpu_backend(1);
  InitRng rng(1);
  EXPECT_THROW(
      BasicUnit(*be, UnitOptions{.in_channels = 16, .planes = 8, .shortcut = ShortcutKind::A}, rng),
      Error);
}

}  // namespace
}  // namespace rn::nn

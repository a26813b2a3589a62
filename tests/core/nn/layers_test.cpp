// Tests of the basic layers: forward against direct reference computations, backward (input and
// every parameter) against finite differences, shapes, multiply-adds, parameter names and the
// batch-norm running statistics.
#include "core/nn/layers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "tests/core/backend/reference_conv.h"
#include "tests/core/gradient_check.h"
#include "tests/core/nn/nn_test_util.h"

namespace rn::nn {
namespace {

using test::all_close;
using test::expect_module_gradients;
using test::find_buffer;
using test::find_param;
using test::ModuleCheckOptions;
using test::plain_values;
using test::random_values;
using test::upload_as;
using test::upload_values;
using test::write_values;

// One thread: the tensors are tiny, and thousands of finite-difference passes through OpenMP
// barriers slow down many times on a loaded machine. The op tests cover the threaded paths.
class NnLayersTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(1);
};

// ---------------------------------------------------------------------------------------------
// References, in double, on row-major N x C x H x W values.

struct BatchStats {
  std::vector<double> mean, var;  // var biased
};

BatchStats batch_stats(const Shape& s, const std::vector<float>& x) {
  const int64_t n = s[0], c = s[1], hw = s[2] * s[3];
  BatchStats st{std::vector<double>(c, 0.0), std::vector<double>(c, 0.0)};
  const double m = static_cast<double>(n * hw);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < hw; ++i) st.mean[ch] += x[(b * c + ch) * hw + i] / m;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < hw; ++i)
        st.var[ch] += std::pow(x[(b * c + ch) * hw + i] - st.mean[ch], 2) / m;
  return st;
}

std::vector<double> batch_norm_reference(const Shape& s, const std::vector<float>& x,
                                         const std::vector<double>& mean,
                                         const std::vector<double>& var,
                                         const std::vector<float>& gamma,
                                         const std::vector<float>& beta, bool relu) {
  const int64_t c = s[1], hw = s[2] * s[3];
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t ch = (static_cast<int64_t>(i) / hw) % c;
    y[i] = gamma[ch] * (x[i] - mean[ch]) / std::sqrt(var[ch] + 1e-5) + beta[ch];
    if (relu) y[i] = std::max(y[i], 0.0);
  }
  return y;
}

std::vector<double> pool_reference(const Shape& s, const std::vector<float>& x,
                                   const PoolParams& p) {
  const int64_t n = s[0], c = s[1], h = s[2], w = s[3];
  if (p.global) {
    std::vector<double> y(n * c, 0.0);
    for (int64_t i = 0; i < n * c; ++i)
      for (int64_t j = 0; j < h * w; ++j) y[i] += x[i * h * w + j] / static_cast<double>(h * w);
    return y;
  }
  const int64_t oh = (h + 2 * p.pad - p.kernel) / p.stride + 1,
                ow = (w + 2 * p.pad - p.kernel) / p.stride + 1;
  std::vector<double> y(n * c * oh * ow);
  for (int64_t nc = 0; nc < n * c; ++nc)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t ki = 0; ki < p.kernel; ++ki)
          for (int64_t kj = 0; kj < p.kernel; ++kj) {
            const int64_t yi = i * p.stride - p.pad + ki, xj = j * p.stride - p.pad + kj;
            if (yi < 0 || yi >= h || xj < 0 || xj >= w)
              continue;  // padding: -inf for max, 0 for avg
            const double v = x[(nc * h + yi) * w + xj];
            best = std::max(best, v);
            sum += v;
          }
        // Average pooling counts the padding (PyTorch's count_include_pad=True).
        y[(nc * oh + i) * ow + j] = p.kind == PoolKind::max ? best : sum / (p.kernel * p.kernel);
      }
  return y;
}

// Values whose channels have zero mean (in pairs m, -m, and one triple a, b, -(a + b) when the
// count is odd) and no element within 0.3 of it: a ReLU after batch norm (beta = 0) has no kink
// within a finite-difference step of any element.
std::vector<float> values_away_from_channel_mean(const Shape& s, uint32_t seed) {
  const int64_t n = s[0], c = s[1], hw = s[2] * s[3], m = n * hw;
  std::vector<float> v(s.numel());
  std::mt19937 gen(seed);
  for (int64_t ch = 0; ch < c; ++ch) {
    const std::vector<float> mag =
        random_values(m, seed + 1 + static_cast<uint32_t>(ch), 0.3f, 1.3f);
    std::vector<float> col(m);
    int64_t i = 0;
    if (m % 2) {
      col[0] = mag[0], col[1] = mag[1], col[2] = -(mag[0] + mag[1]);
      i = 3;
    }
    for (; i + 1 < m; i += 2) col[i] = mag[i], col[i + 1] = -mag[i];
    std::shuffle(col.begin(), col.end(), gen);
    for (int64_t k = 0; k < m; ++k) v[((k / hw) * c + ch) * hw + k % hw] = col[k];
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Conv2d

struct ConvCase {
  std::string name;
  Shape x;
  ConvParams p;
};

void PrintTo(const ConvCase& c, std::ostream* os) {
  *os << c.name;
}

class Conv2dLayerTest : public NnLayersTest, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(Conv2dLayerTest, ForwardMatchesDirectConvolution) {
  const ConvCase& c = GetParam();
  InitRng rng(7);
  Conv2d conv(*be, static_cast<int>(c.x[1]), c.p, rng);
  if (c.p.bias) {
    Parameter* b = find_param(conv, "bias");
    ASSERT_NE(b, nullptr);
    write_values(*be, b->value, random_values(c.p.out_channels, 3));
  }
  const std::vector<float> x = random_values(c.x.numel(), 11);
  for (bool training : {true, false}) {
    conv.set_training(training);
    Tensor y = conv.forward(upload_values(*be, c.x, x));
    ASSERT_EQ(y.shape(), conv.output_shape(c.x));
    const std::vector<float> w = plain_values(*be, find_param(conv, "weight")->value);
    std::vector<float> bias;
    if (c.p.bias) bias = plain_values(*be, find_param(conv, "bias")->value);
    EXPECT_TRUE(all_close(plain_values(*be, y), test::ReferenceConv(c.x, c.p).forward(x, w, bias),
                          1e-4, 1e-4))
        << (training ? "training" : "inference");
  }
}

TEST_P(Conv2dLayerTest, GradientsMatchFiniteDifferences) {
  const ConvCase& c = GetParam();
  InitRng rng(8);
  Conv2d conv(*be, static_cast<int>(c.x[1]), c.p, rng);
  if (c.p.bias)
    write_values(*be, find_param(conv, "bias")->value, random_values(c.p.out_channels, 4));
  ModuleCheckOptions o;
  o.input_points = 60;
  o.param_points = 60;
  expect_module_gradients(*be, conv, c.x, random_values(c.x.numel(), 12), o);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, Conv2dLayerTest,
    ::testing::Values(
        ConvCase{"k3s1_3to8", Shape{2, 3, 6, 6}, ConvParams{.out_channels = 8}},
        ConvCase{"k3s2_5to12_odd", Shape{3, 5, 7, 7}, ConvParams{.out_channels = 12, .stride = 2}},
        ConvCase{"k1s2_16to16_bias", Shape{2, 16, 6, 6},
                 ConvParams{.out_channels = 16, .kernel = 1, .stride = 2, .pad = 0, .bias = true}},
        ConvCase{"k3_groups4_8to12", Shape{2, 8, 5, 5},
                 ConvParams{.out_channels = 12, .kernel = 3, .stride = 1, .pad = 1, .groups = 4}},
        ConvCase{"k7s2p3_3to8", Shape{2, 3, 8, 8},
                 ConvParams{.out_channels = 8, .kernel = 7, .stride = 2, .pad = 3}},
        ConvCase{"k3_dilation2", Shape{2, 4, 7, 7},
                 ConvParams{.out_channels = 6, .kernel = 3, .stride = 1, .pad = 2, .dilation = 2}}),
    [](const auto& info) { return info.param.name; });

TEST_F(NnLayersTest, ConvShapesMultiplyAddsAndNames) {
  InitRng rng(1);
  Conv2d conv(*be, 8, ConvParams{.out_channels = 12, .stride = 2, .groups = 4, .bias = true}, rng);
  EXPECT_EQ(conv.output_shape(Shape{2, 8, 7, 7}), (Shape{2, 12, 4, 4}));
  // Per sample: every output element takes (8 / 4) * 3 * 3 multiply-adds.
  EXPECT_EQ(conv.macs(Shape{1, 8, 7, 7}), int64_t{12} * 4 * 4 * 2 * 9);
  EXPECT_EQ(conv.weighted_layers(), 1);
  std::vector<NamedParameter> params;
  std::vector<NamedBuffer> buffers;
  conv.collect("layer1.0.conv2", params, buffers);
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "layer1.0.conv2.weight");
  EXPECT_EQ(params[0].param->shape, (Shape{12, 2, 3, 3}));  // O x I/groups x KH x KW
  EXPECT_FALSE(params[0].param->no_decay);
  EXPECT_EQ(params[1].name, "layer1.0.conv2.bias");
  EXPECT_EQ(params[1].param->shape, (Shape{12}));
  EXPECT_TRUE(params[1].param->no_decay);
  EXPECT_TRUE(buffers.empty());
}

TEST_F(NnLayersTest, ConvInitialisationIsHeNormalOverFanOutAndSeeded) {
  InitRng rng(5);
  Conv2d conv(*be, 64, ConvParams{.out_channels = 64}, rng);
  const std::vector<float> w = plain_values(*be, find_param(conv, "weight")->value);
  ASSERT_EQ(w.size(), 64u * 64 * 9);
  double mean = 0, sq = 0;
  for (float v : w) mean += v / static_cast<double>(w.size());
  for (float v : w) sq += (v - mean) * (v - mean) / static_cast<double>(w.size());
  const double expected_std = std::sqrt(2.0 / (64 * 9));
  EXPECT_NEAR(std::sqrt(sq), expected_std, 0.02 * expected_std);
  EXPECT_NEAR(mean, 0.0, 0.02 * expected_std);

  InitRng same(5), other(6);
  Conv2d again(*be, 64, ConvParams{.out_channels = 64}, same);
  Conv2d different(*be, 64, ConvParams{.out_channels = 64}, other);
  EXPECT_EQ(plain_values(*be, find_param(again, "weight")->value), w);
  EXPECT_NE(plain_values(*be, find_param(different, "weight")->value), w);
}

TEST_F(NnLayersTest, ConvRejectsBadChannels) {
  InitRng rng(1);
  EXPECT_THROW(Conv2d(*be, 6, ConvParams{.out_channels = 8, .groups = 4}, rng), Error);
  Conv2d conv(*be, 3, ConvParams{.out_channels = 8}, rng);
  EXPECT_THROW(conv.forward(upload_values(*be, Shape{1, 4, 5, 5}, random_values(100, 1))), Error);
}

TEST_F(NnLayersTest, BackwardOverwritesParameterGradients) {
  // The optimizer reads the gradients after each backward without zeroing them first.
  InitRng rng(2);
  Conv2d conv(*be, 3, ConvParams{.out_channels = 8}, rng);
  const Shape xs{2, 3, 5, 5};
  const std::vector<float> x = random_values(xs.numel(), 1), r = random_values(2 * 8 * 25, 2);
  const auto first = test::run_forward_backward(*be, conv, test::plain_desc(xs), x, r);
  const auto second = test::run_forward_backward(*be, conv, test::plain_desc(xs), x, r);
  EXPECT_TRUE(all_close(second.params.at("weight"), first.params.at("weight"), 1e-6, 1e-5));
}

TEST_F(NnLayersTest, PreparedLowPrecisionWeightsAreCastsOfTheCurrentMaster) {
  const std::string why = precision_unsupported(Device{}, DType::bf16);
  if (!why.empty()) GTEST_SKIP() << why;
  InitRng rng(4);
  const ConvParams p{.out_channels = 16};
  Conv2d conv(*be, 16, p, rng), ref(*be, 16, p, rng);
  auto bf16_input = [&](const Shape& s, uint64_t seed) {
    Tensor x = be->allocate(TensorDesc{s, DType::bf16, nullptr});
    be->cast(upload_values(*be, s, random_values(s.numel(), seed)), x);
    return x;
  };
  auto values = [&](const Tensor& t) {
    Tensor f = be->allocate(test::plain_desc(t.shape()));
    be->cast(t, f);
    return be->download(f).to_vector();
  };
  const Shape xs{2, 16, 6, 6};
  const Tensor x = bf16_input(xs, 1);
  std::vector<Backend::CastPair> casts;
  conv.set_training(true);
  EXPECT_FALSE(conv.prepare_low_weight(casts)) << "no plan before the first forward";
  conv.backward(conv.forward(x));
  // A new master after the step (a checkpoint's load): the prepared copy is its cast.
  const std::vector<float> w = random_values(16 * 16 * 9, 5, -.2f, .2f);
  write_values(*be, find_param(conv, "weight")->value, w);
  write_values(*be, find_param(ref, "weight")->value, w);
  ASSERT_TRUE(conv.prepare_low_weight(casts));
  ASSERT_EQ(casts.size(), 1u);
  EXPECT_EQ(casts[0].src, &find_param(conv, "weight")->value);
  be->cast_many(casts);
  ref.set_training(true);
  EXPECT_EQ(values(conv.forward(x)), values(ref.forward(x)));
  conv.backward(conv.forward(x)), ref.backward(ref.forward(x));
  // Prepared for one input shape, run on another: the forward's own cast, the same values.
  casts.clear();
  ASSERT_TRUE(conv.prepare_low_weight(casts));
  be->cast_many(casts);
  const Tensor x2 = bf16_input(Shape{3, 16, 5, 5}, 2);
  EXPECT_EQ(values(conv.forward(x2)), values(ref.forward(x2)));
  conv.set_training(false);
  EXPECT_FALSE(conv.prepare_low_weight(casts)) << "inference casts its own";
}

// Weight gradients a low-precision backward left pending are cast into their f32 buffers
// together; parameters with nothing pending keep their gradients.
TEST_F(NnLayersTest, PendingLowPrecisionGradientsAreCastIntoTheirBuffers) {
  const std::string why = precision_unsupported(Device{}, DType::bf16);
  if (!why.empty()) GTEST_SKIP() << why;
  const Shape s{2, 3};
  const std::vector<float> va = {1.5f, -2.25f, 3.f, 0.f, 0.125f, -96.f}, vb = {7, 7, 7, 7, 7, 7};
  auto pending = [&](const std::vector<float>& v) {
    Parameter p;
    p.shape = s;
    p.low_grad = be->allocate(TensorDesc{s, DType::bf16, nullptr});
    be->cast(upload_values(*be, s, v), p.low_grad);
    p.grad = upload_values(*be, s, std::vector<float>(6, -1.f));
    return p;
  };
  Parameter a = pending(va), c = pending(vb), b;
  b.grad = upload_values(*be, s, vb);
  EXPECT_EQ(cast_pending_grads(*be, {&a, &b, &c}), 2u);
  EXPECT_EQ(be->download(a.grad).to_vector(), va);
  EXPECT_EQ(be->download(b.grad).to_vector(), vb);
  EXPECT_EQ(be->download(c.grad).to_vector(), vb);
  EXPECT_FALSE(a.low_grad.defined() || c.low_grad.defined());
  EXPECT_EQ(cast_pending_grads(*be, {&a, &b, &c}), 0u) << "nothing is pending any more";
  Parameter lost = pending(va);
  lost.grad = Tensor();
  try {
    cast_pending_grads(*be, {&lost});
    ADD_FAILURE() << "a pending gradient without its f32 buffer must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pending bf16 gradient without its f32 buffer"),
              std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// BatchNorm2d

struct BatchNormCase {
  std::string name;
  Shape x;
  bool relu;
  bool blocked;
};

void PrintTo(const BatchNormCase& c, std::ostream* os) {
  *os << c.name;
}

class BatchNorm2dLayerTest : public NnLayersTest,
                             public ::testing::WithParamInterface<BatchNormCase> {
 protected:
  // gamma in [0.5, 1.5]; beta in [-0.5, 0.5] without ReLU, 0 with it (the kink stays at the mean).
  void set_affine(BatchNorm2d& bn, int channels, bool relu) {
    gamma = random_values(channels, 21, 0.5f, 1.5f);
    beta = relu ? std::vector<float>(channels, 0.f) : random_values(channels, 22, -0.5f, 0.5f);
    write_values(*be, find_param(bn, "weight")->value, gamma);
    write_values(*be, find_param(bn, "bias")->value, beta);
  }
  std::vector<float> input(const BatchNormCase& c) {
    return c.relu ? values_away_from_channel_mean(c.x, 31)
                  : random_values(c.x.numel(), 31, -1.f, 2.f);
  }
  std::vector<float> gamma, beta;
};

TEST_P(BatchNorm2dLayerTest, TrainingForwardNormalisesByBatchStatistics) {
  const BatchNormCase& c = GetParam();
  const int ch = static_cast<int>(c.x[1]);
  BatchNorm2d bn(*be, ch, c.relu);
  set_affine(bn, ch, c.relu);
  const std::vector<float> x = input(c);
  Tensor y = bn.forward(upload_as(*be, test::input_desc(*be, c.x, c.blocked), x));
  ASSERT_EQ(y.shape(), c.x);
  const BatchStats st = batch_stats(c.x, x);
  EXPECT_TRUE(all_close(plain_values(*be, y),
                        batch_norm_reference(c.x, x, st.mean, st.var, gamma, beta, c.relu), 1e-4,
                        1e-4));
}

TEST_P(BatchNorm2dLayerTest, RunningStatisticsFollowPyTorch) {
  const BatchNormCase& c = GetParam();
  const int ch = static_cast<int>(c.x[1]);
  BatchNorm2d bn(*be, ch, c.relu);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  const std::vector<float> x1 = input(c), x2 = random_values(c.x.numel(), 77, -2.f, 1.f);
  bn.forward(upload_as(*be, test::input_desc(*be, c.x, c.blocked), x1));
  const double m = static_cast<double>(c.x[0] * c.x[2] * c.x[3]);
  const BatchStats s1 = batch_stats(c.x, x1), s2 = batch_stats(c.x, x2);
  std::vector<double> mean(ch), var(ch);
  for (int i = 0; i < ch; ++i) {
    mean[i] = 0.1 * s1.mean[i];
    var[i] = 0.9 * 1.0 + 0.1 * s1.var[i] * m / (m - 1);
  }
  EXPECT_TRUE(all_close(plain_values(*be, *find_buffer(bn, "running_mean")), mean, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(plain_values(*be, *find_buffer(bn, "running_var")), var, 1e-5, 1e-4));
  EXPECT_EQ(bn.num_batches_tracked(), 1);

  bn.forward(upload_as(*be, test::input_desc(*be, c.x, c.blocked), x2));
  for (int i = 0; i < ch; ++i) {
    mean[i] = 0.9 * mean[i] + 0.1 * s2.mean[i];
    var[i] = 0.9 * var[i] + 0.1 * s2.var[i] * m / (m - 1);
  }
  EXPECT_TRUE(all_close(plain_values(*be, *find_buffer(bn, "running_mean")), mean, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(plain_values(*be, *find_buffer(bn, "running_var")), var, 1e-5, 1e-4));
  EXPECT_EQ(bn.num_batches_tracked(), 2);
}

TEST_P(BatchNorm2dLayerTest, InferenceUsesRunningStatistics) {
  const BatchNormCase& c = GetParam();
  const int ch = static_cast<int>(c.x[1]);
  BatchNorm2d bn(*be, ch, c.relu);
  set_affine(bn, ch, c.relu);
  const std::vector<float> rm = random_values(ch, 41, -0.5f, 0.5f),
                           rv = random_values(ch, 42, 0.5f, 2.f);
  write_values(*be, *find_buffer(bn, "running_mean"), rm);
  write_values(*be, *find_buffer(bn, "running_var"), rv);
  bn.set_training(false);
  const std::vector<float> x = input(c);
  Tensor y = bn.forward(upload_as(*be, test::input_desc(*be, c.x, c.blocked), x));
  const std::vector<double> rmd(rm.begin(), rm.end()), rvd(rv.begin(), rv.end());
  EXPECT_TRUE(all_close(plain_values(*be, y),
                        batch_norm_reference(c.x, x, rmd, rvd, gamma, beta, c.relu), 1e-4, 1e-4));
  // Inference leaves the statistics alone and keeps nothing for backward.
  EXPECT_EQ(plain_values(*be, *find_buffer(bn, "running_mean")), rm);
  EXPECT_EQ(plain_values(*be, *find_buffer(bn, "running_var")), rv);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  EXPECT_THROW(bn.backward(y), Error);
}

TEST_P(BatchNorm2dLayerTest, GradientsMatchFiniteDifferences) {
  const BatchNormCase& c = GetParam();
  const int ch = static_cast<int>(c.x[1]);
  BatchNorm2d bn(*be, ch, c.relu);
  set_affine(bn, ch, c.relu);
  ModuleCheckOptions o;
  o.input_points = 80;
  o.blocked_input = c.blocked;
  expect_module_gradients(*be, bn, c.x, input(c), o);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, BatchNorm2dLayerTest,
    ::testing::Values(BatchNormCase{"c5", Shape{4, 5, 6, 6}, false, false},
                      BatchNormCase{"c5_relu", Shape{4, 5, 6, 6}, true, false},
                      BatchNormCase{"c16_blocked", Shape{2, 16, 5, 5}, false, true},
                      BatchNormCase{"c16_relu_blocked", Shape{2, 16, 5, 5}, true, true},
                      BatchNormCase{"c20_relu_blocked", Shape{3, 20, 5, 5}, true, true}),
    [](const auto& info) { return info.param.name; });

TEST_F(NnLayersTest, BatchNormParametersAndBuffers) {
  BatchNorm2d bn(*be, 6, true);
  std::vector<NamedParameter> params;
  std::vector<NamedBuffer> buffers;
  bn.collect("bn1", params, buffers);
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "bn1.weight");
  EXPECT_EQ(params[1].name, "bn1.bias");
  for (const auto& p : params) {
    EXPECT_EQ(p.param->shape, (Shape{6}));
    EXPECT_TRUE(p.param->no_decay) << p.name;
  }
  EXPECT_EQ(plain_values(*be, params[0].param->value), std::vector<float>(6, 1.f));
  EXPECT_EQ(plain_values(*be, params[1].param->value), std::vector<float>(6, 0.f));
  ASSERT_EQ(buffers.size(), 2u);
  EXPECT_EQ(buffers[0].name, "bn1.running_mean");
  EXPECT_EQ(buffers[1].name, "bn1.running_var");
  EXPECT_EQ(plain_values(*be, *buffers[0].tensor), std::vector<float>(6, 0.f));
  EXPECT_EQ(plain_values(*be, *buffers[1].tensor), std::vector<float>(6, 1.f));

  BatchNorm2d zero(*be, 6, false, /*zero_gamma=*/true);
  EXPECT_EQ(plain_values(*be, find_param(zero, "weight")->value), std::vector<float>(6, 0.f));
  EXPECT_EQ(zero.output_shape(Shape{2, 6, 3, 3}), (Shape{2, 6, 3, 3}));
  EXPECT_EQ(zero.macs(Shape{1, 6, 3, 3}), 0);
  EXPECT_EQ(zero.weighted_layers(), 0);
  EXPECT_THROW(zero.forward(upload_values(*be, Shape{1, 5, 2, 2}, random_values(20, 1))), Error);
}

// ---------------------------------------------------------------------------------------------
// ReLU and Identity

TEST_F(NnLayersTest, ReluForwardAndGradients) {
  const Shape xs{2, 5, 4, 4};
  // |x| >= 0.05: no element within a finite-difference step of the kink.
  std::vector<float> x = test::distinct_values(xs.numel(), 3, 0.01f);
  for (float& v : x) v += v >= 0 ? 0.05f : -0.05f;
  ReLU relu(*be);
  Tensor y = relu.forward(upload_values(*be, xs, x));
  std::vector<float> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i) expected[i] = std::max(x[i], 0.f);
  EXPECT_EQ(plain_values(*be, y), expected);

  // The gradient passes where the output is positive, exactly.
  const std::vector<float> r = random_values(xs.numel(), 4);
  const auto g = test::run_forward_backward(*be, relu, test::plain_desc(xs), x, r);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(g.dx[i], x[i] > 0 ? r[i] : 0.f) << i;
  expect_module_gradients(*be, relu, xs, x);
  ModuleCheckOptions blocked;
  blocked.blocked_input = true;
  expect_module_gradients(*be, relu, Shape{2, 16, 3, 3}, random_values(2 * 16 * 9, 5, 0.05f, 1.f),
                          blocked);
}

TEST_F(NnLayersTest, IdentityPassesValuesAndGradients) {
  Identity id(*be);
  const Shape xs{2, 3, 4, 4};
  const std::vector<float> x = random_values(xs.numel(), 1), r = random_values(xs.numel(), 2);
  const auto g = test::run_forward_backward(*be, id, test::plain_desc(xs), x, r);
  EXPECT_EQ(g.output, x);
  EXPECT_EQ(g.dx, r);
  EXPECT_EQ(id.output_shape(xs), xs);
}

// ---------------------------------------------------------------------------------------------
// Pool2d

struct PoolCase {
  std::string name;
  Shape x;
  PoolParams p;
  bool blocked;
};

void PrintTo(const PoolCase& c, std::ostream* os) {
  *os << c.name;
}

class Pool2dLayerTest : public NnLayersTest, public ::testing::WithParamInterface<PoolCase> {
 protected:
  // Distinct values 0.05 apart: no ties and no arg-max change within a step.
  std::vector<float> input(const PoolCase& c) {
    return test::distinct_values(c.x.numel(), 9, 0.05f);
  }
};

TEST_P(Pool2dLayerTest, ForwardMatchesReference) {
  const PoolCase& c = GetParam();
  Pool2d pool(*be, c.p);
  const std::vector<float> x = input(c);
  for (bool training : {true, false}) {
    pool.set_training(training);
    Tensor y = pool.forward(upload_as(*be, test::input_desc(*be, c.x, c.blocked), x));
    ASSERT_EQ(y.shape(), pool.output_shape(c.x));
    EXPECT_TRUE(all_close(plain_values(*be, y), pool_reference(c.x, x, c.p), 1e-5, 1e-5))
        << (training ? "training" : "inference");
  }
}

TEST_P(Pool2dLayerTest, GradientsMatchFiniteDifferences) {
  const PoolCase& c = GetParam();
  Pool2d pool(*be, c.p);
  ModuleCheckOptions o;
  o.blocked_input = c.blocked;
  o.fd.step = 1e-3;  // below half the gap between values
  expect_module_gradients(*be, pool, c.x, input(c), o);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, Pool2dLayerTest,
    ::testing::Values(
        PoolCase{"max3s2p1", Shape{2, 3, 7, 7}, PoolParams{.kind = PoolKind::max}, false},
        PoolCase{"max3s2p1_blocked", Shape{2, 16, 8, 8}, PoolParams{.kind = PoolKind::max}, true},
        PoolCase{"max2s2p0", Shape{3, 5, 6, 6},
                 PoolParams{.kind = PoolKind::max, .kernel = 2, .stride = 2, .pad = 0}, false},
        PoolCase{"avg3s2p1", Shape{2, 4, 7, 7}, PoolParams{.kind = PoolKind::avg}, false},
        PoolCase{"avg2s2p0_blocked", Shape{2, 16, 6, 6},
                 PoolParams{.kind = PoolKind::avg, .kernel = 2, .stride = 2, .pad = 0}, true},
        PoolCase{"global", Shape{3, 7, 5, 5}, PoolParams{.kind = PoolKind::avg, .global = true},
                 false},
        PoolCase{"global_blocked", Shape{2, 20, 5, 5},
                 PoolParams{.kind = PoolKind::avg, .global = true}, true}),
    [](const auto& info) { return info.param.name; });

TEST_F(NnLayersTest, PoolOutputShapes) {
  EXPECT_EQ(Pool2d(*be, PoolParams{}).output_shape(Shape{2, 64, 112, 112}), (Shape{2, 64, 56, 56}));
  EXPECT_EQ(Pool2d(*be, PoolParams{}).output_shape(Shape{1, 3, 7, 7}), (Shape{1, 3, 4, 4}));
  EXPECT_EQ(Pool2d(*be, PoolParams{.global = true}).output_shape(Shape{4, 512, 7, 7}),
            (Shape{4, 512, 1, 1}));
  EXPECT_EQ(Pool2d(*be, PoolParams{}).macs(Shape{1, 64, 112, 112}), 0);
}

// ---------------------------------------------------------------------------------------------
// Linear

TEST_F(NnLayersTest, LinearForwardMatchesReference) {
  InitRng rng(3);
  const int in = 20, out = 7, n = 3;
  Linear fc(*be, in, out, rng);
  const std::vector<float> w = plain_values(*be, find_param(fc, "weight")->value);
  const std::vector<float> b = plain_values(*be, find_param(fc, "bias")->value);
  const std::vector<float> x = random_values(n * in, 5);
  std::vector<double> expected(n * out);
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double s = b[o];
      for (int k = 0; k < in; ++k) s += static_cast<double>(x[i * in + k]) * w[o * in + k];
      expected[i * out + o] = s;
    }
  EXPECT_TRUE(all_close(plain_values(*be, fc.forward(upload_values(*be, Shape{n, in}, x))),
                        expected, 1e-5, 1e-5));
  // The output of global pooling, N x C x 1 x 1, is taken as N x C.
  Tensor y4 = fc.forward(upload_values(*be, Shape{n, in, 1, 1}, x));
  EXPECT_EQ(y4.shape(), (Shape{n, out}));
  EXPECT_TRUE(all_close(plain_values(*be, y4), expected, 1e-5, 1e-5));
}

TEST_F(NnLayersTest, LinearInitialisationShapesAndNames) {
  InitRng rng(3);
  Linear fc(*be, 64, 10, rng);
  const double bound = 1.0 / 8.0;
  for (const char* name : {"weight", "bias"}) {
    const std::vector<float> v = plain_values(*be, find_param(fc, name)->value);
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    EXPECT_GE(*lo, -bound) << name;
    EXPECT_LE(*hi, bound) << name;
    EXPECT_LT(*lo, -0.5 * bound) << name;  // spread over the range, not all zero
    EXPECT_GT(*hi, 0.5 * bound) << name;
  }
  std::vector<NamedParameter> params;
  std::vector<NamedBuffer> buffers;
  fc.collect("fc", params, buffers);
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "fc.weight");
  EXPECT_EQ(params[0].param->shape, (Shape{10, 64}));
  EXPECT_FALSE(params[0].param->no_decay);
  EXPECT_EQ(params[1].name, "fc.bias");
  EXPECT_TRUE(params[1].param->no_decay);
  EXPECT_EQ(fc.output_shape(Shape{4, 64, 1, 1}), (Shape{4, 10}));
  EXPECT_EQ(fc.macs(Shape{1, 64, 1, 1}), 640);
  EXPECT_EQ(fc.weighted_layers(), 1);
  EXPECT_THROW(fc.forward(upload_values(*be, Shape{2, 63}, random_values(126, 1))), Error);

  InitRng rng2(3);
  Linear no_bias(*be, 64, 10, rng2, /*bias=*/false);
  EXPECT_EQ(test::param_names(no_bias), std::vector<std::string>{"weight"});
}

TEST_F(NnLayersTest, LinearGradientsMatchFiniteDifferences) {
  InitRng rng(4);
  Linear fc(*be, 20, 7, rng);
  write_values(*be, find_param(fc, "bias")->value, random_values(7, 6));
  expect_module_gradients(*be, fc, Shape{3, 20}, random_values(60, 7));
  InitRng rng2(5);
  Linear pooled(*be, 16, 5, rng2, /*bias=*/false);
  expect_module_gradients(*be, pooled, Shape{4, 16, 1, 1}, random_values(64, 8));
}

// ---------------------------------------------------------------------------------------------
// PadShortcut (option A)

struct PadCase {
  std::string name;
  Shape x;
  int out_channels, stride;
  bool blocked;
};

void PrintTo(const PadCase& c, std::ostream* os) {
  *os << c.name;
}

class PadShortcutLayerTest : public NnLayersTest, public ::testing::WithParamInterface<PadCase> {};

TEST_P(PadShortcutLayerTest, ForwardAndBackward) {
  const PadCase& c = GetParam();
  PadShortcut pad(*be, c.out_channels, c.stride);
  const std::vector<float> x = random_values(c.x.numel(), 1);
  const Shape ys = pad.output_shape(c.x);
  EXPECT_EQ(ys, (Shape{c.x[0], c.out_channels, (c.x[2] + c.stride - 1) / c.stride,
                       (c.x[3] + c.stride - 1) / c.stride}));
  const std::vector<float> r = random_values(ys.numel(), 2);
  const auto g = test::run_forward_backward(*be, pad, test::input_desc(*be, c.x, c.blocked), x, r);
  ASSERT_EQ(g.output_shape, ys);
  EXPECT_EQ(g.output, test::pad_shortcut_reference(c.x, x, c.out_channels, c.stride));
  // The backward is the transpose: <pad(x), r> = <x, pad^T(r)> for every x.
  const std::vector<float> y = test::pad_shortcut_reference(c.x, x, c.out_channels, c.stride);
  EXPECT_NEAR(test::dot(y, r), test::dot(x, g.dx), 1e-4);
  // Skipped positions and dropped channels get no gradient; kept ones get r exactly.
  std::vector<float> expected_dx(c.x.numel(), 0.f);
  const int64_t h = c.x[2], w = c.x[3], oh = ys[2], ow = ys[3],
                before = (c.out_channels - c.x[1]) / 2;
  for (int64_t b = 0; b < c.x[0]; ++b)
    for (int64_t ch = 0; ch < c.x[1]; ++ch)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j)
          expected_dx[((b * c.x[1] + ch) * h + i * c.stride) * w + j * c.stride] =
              r[((b * c.out_channels + ch + before) * oh + i) * ow + j];
  EXPECT_EQ(g.dx, expected_dx);
  EXPECT_EQ(pad.macs(Shape{1, c.x[1], c.x[2], c.x[3]}), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, PadShortcutLayerTest,
    ::testing::Values(PadCase{"c3to8_s2_odd", Shape{2, 3, 5, 5}, 8, 2, false},
                      PadCase{"c16to32_s2_blocked", Shape{2, 16, 8, 8}, 32, 2, true},
                      PadCase{"c16to32_s2_plain", Shape{2, 16, 7, 7}, 32, 2, false},
                      PadCase{"c4to8_s1", Shape{3, 4, 5, 5}, 8, 1, false}),
    [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// Sequential

// conv -> BN + ReLU -> max pool -> grouped conv -> BN -> global pool -> linear, seeded.
void build_stack(Sequential& s, int in_channels, uint64_t seed) {
  InitRng rng(seed);
  s.emplace<Conv2d>("conv1", in_channels, ConvParams{.out_channels = 12}, rng);
  s.emplace<BatchNorm2d>("bn1", 12, true);
  s.emplace<Pool2d>("pool", PoolParams{.kind = PoolKind::max, .kernel = 2, .stride = 2, .pad = 0});
  auto& inner = s.emplace<Sequential>("block");
  inner.emplace<Conv2d>("0", 12, ConvParams{.out_channels = 16, .stride = 2, .groups = 4}, rng);
  inner.emplace<BatchNorm2d>("1", 16, false);
  s.emplace<Pool2d>("avgpool", PoolParams{.kind = PoolKind::avg, .global = true});
  s.emplace<Linear>("fc", 16, 5, rng);
}

TEST_F(NnLayersTest, SequentialComposesItsChildren) {
  Sequential seq(*be);
  build_stack(seq, 3, 17);
  EXPECT_EQ(seq.size(), 6u);
  const Shape xs{2, 3, 8, 8};
  EXPECT_EQ(seq.output_shape(xs), (Shape{2, 5}));
  // conv1: 12 x 8 x 8 outputs x 3 x 9; block.0: 16 x 2 x 2 x 3 x 9; fc: 16 x 5.
  EXPECT_EQ(seq.macs(Shape{1, 3, 8, 8}), 12 * 64 * 27 + 16 * 4 * 27 + 80);
  EXPECT_EQ(seq.weighted_layers(), 3);
  EXPECT_EQ(test::param_names(seq),
            (std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "block.0.weight",
                                      "block.1.weight", "block.1.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(test::buffer_names(seq),
            (std::vector<std::string>{"bn1.running_mean", "bn1.running_var", "block.1.running_mean",
                                      "block.1.running_var"}));

  // The same layers, built from the same seed and run one by one, give the same output.
  Sequential ref(*be);
  build_stack(ref, 3, 17);
  const std::vector<float> x = random_values(xs.numel(), 3);
  Tensor h = upload_values(*be, xs, x);
  for (size_t i = 0; i < ref.size(); ++i) h = ref.at(i).forward(h);
  EXPECT_TRUE(all_close(plain_values(*be, seq.forward(upload_values(*be, xs, x))),
                        plain_values(*be, h), 1e-6, 1e-6));
}

TEST_F(NnLayersTest, SequentialPropagatesModes) {
  Sequential seq(*be);
  build_stack(seq, 3, 1);
  seq.set_training(false);
  for (size_t i = 0; i < seq.size(); ++i) EXPECT_FALSE(seq.at(i).training()) << i;
  EXPECT_FALSE(static_cast<Sequential&>(seq.at(3)).at(1).training());
  EXPECT_THROW(seq.backward(upload_values(*be, Shape{2, 5}, random_values(10, 1))), Error);
  seq.set_training(true);
  for (size_t i = 0; i < seq.size(); ++i) EXPECT_TRUE(seq.at(i).training()) << i;
}

TEST_F(NnLayersTest, SequentialGradientsMatchFiniteDifferences) {
  Sequential seq(*be);
  build_stack(seq, 3, 23);
  ModuleCheckOptions o;
  o.input_points = 40;
  o.param_points = 40;
  // A small step: with ReLU and max pooling inside, a larger one crosses kinks at most points.
  o.fd.step = 2e-3;
  expect_module_gradients(*be, seq, Shape{2, 3, 8, 8}, random_values(2 * 3 * 64, 4), o);
}

TEST_F(NnLayersTest, SequentialWithoutInputGradientKeepsParameterGradients) {
  Sequential with(*be), without(*be);
  build_stack(with, 3, 29);
  build_stack(without, 3, 29);
  without.set_needs_input_grad(false);
  const Shape xs{2, 3, 8, 8};
  const std::vector<float> x = random_values(xs.numel(), 5), r = random_values(10, 6);
  const auto a = test::run_forward_backward(*be, with, test::plain_desc(xs), x, r);
  const auto b = test::run_forward_backward(*be, without, test::plain_desc(xs), x, r);
  EXPECT_FALSE(a.dx.empty());
  EXPECT_TRUE(b.dx.empty()) << "the first layer computed an input gradient";
  ASSERT_EQ(a.params.size(), b.params.size());
  for (const auto& [name, g] : a.params)
    EXPECT_TRUE(all_close(b.params.at(name), g, 1e-6, 1e-5)) << name;
}

}  // namespace
}  // namespace rn::nn

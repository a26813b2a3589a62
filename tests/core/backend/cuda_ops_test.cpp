// The planned CUDA ops (convolution, batch norm, pooling, linear) against the CPU backend, in
// fp32, bf16 and fp16, forward and backward. Skipped where no GPU is usable.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/core/backend/cuda_test_util.h"

namespace rn {
namespace {

using test::plain_desc;
using test::random_values;

struct ConvCase {
  std::string name;
  Shape x;
  ConvParams p;
  DType t;
};
std::ostream& operator<<(std::ostream& os, const ConvCase& c) {
  return os << c.name << "_" << dtype_name(c.t);
}

class CudaConvTest : public test::CudaTest, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(CudaConvTest, ForwardAndBackwardMatchCpu) {
  const ConvCase& c = GetParam();
  const ConvParams& p = c.p;
  const Shape ws{p.out_channels, c.x[1] / p.groups, p.kernel, p.kernel};
  const auto xv = random_values(c.x.numel(), 1), wv = random_values(ws.numel(), 2, -.5f, .5f),
             bv = random_values(p.out_channels, 3);
  auto cop = cpu_->make_conv(p, plain_desc(c.x), true);
  const Shape ys = cop->output_desc().shape;
  const auto dyv = random_values(ys.numel(), 4);
  // CPU reference, fp32.
  Tensor cx = to_cpu(c.x, xv), cw = to_cpu(ws, wv), cb = to_cpu(Shape{p.out_channels}, bv);
  Tensor cy = cpu_->allocate(cop->output_desc());
  cop->forward(cx, cw, p.bias ? &cb : nullptr, cy);
  Tensor cdy = cpu_->allocate(cop->output_desc());
  cpu_->reorder(to_cpu(ys, dyv), cdy);
  Tensor cdx = cpu_->allocate(plain_desc(c.x)), cdw = cpu_->allocate(plain_desc(ws)),
         cdb = cpu_->allocate(plain_desc(Shape{p.out_channels}));
  cop->backward_data(cdy, cw, cdx);
  cop->backward_weights(cx, cdy, cdw, p.bias ? &cdb : nullptr);
  // CUDA, in the case's dtype; the input arrives plain (NCHW), as a network's first layer sees it.
  auto gop = gpu_->make_conv(p, TensorDesc{c.x, c.t, nullptr}, true);
  ASSERT_EQ(gop->output_desc().shape, ys);
  ASSERT_EQ(gop->output_desc().dtype, c.t);
  Tensor gx = to_gpu(c.x, xv, c.t), gw = to_gpu_as(gop->weight_desc(), wv),
         gb = to_gpu(Shape{p.out_channels}, bv);
  Tensor gy = gpu_->allocate(gop->output_desc());
  gop->forward(gx, gw, p.bias ? &gb : nullptr, gy);
  EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), c.t)) << "forward";
  Tensor gdy = to_gpu_as(gop->output_desc(), dyv);
  Tensor gdx = gpu_->allocate(TensorDesc{c.x, c.t, nullptr});
  gop->backward_data(gdy, gw, gdx);
  EXPECT_TRUE(close(from_gpu(gdx), from_cpu(cdx), c.t)) << "backward data";
  Tensor gdw = gpu_->allocate(gop->weight_desc());
  Tensor gdb = gpu_->allocate(plain_desc(Shape{p.out_channels}));
  gop->backward_weights(gx, gdy, gdw, p.bias ? &gdb : nullptr);
  EXPECT_TRUE(close(from_gpu(gdw), from_cpu(cdw), c.t)) << "backward weights";
  if (p.bias) {
    EXPECT_TRUE(close(from_gpu(gdb), from_cpu(cdb), c.t)) << "bias gradient";
  }
}

std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> cases;
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    cases.push_back({"k3", Shape{2, 8, 9, 9}, ConvParams{.out_channels = 16}, t});
    cases.push_back({"k1_stride2", Shape{2, 16, 8, 8},
                     ConvParams{.out_channels = 8, .kernel = 1, .stride = 2, .pad = 0}, t});
    cases.push_back(
        {"grouped", Shape{2, 16, 8, 8}, ConvParams{.out_channels = 16, .groups = 4}, t});
    cases.push_back(
        {"stem_bias", Shape{2, 3, 16, 16},
         ConvParams{.out_channels = 8, .kernel = 7, .stride = 2, .pad = 3, .bias = true}, t});
    // 6,400 rows of 40 columns: the bias gradient's column sums span 25 row parts, 2 tiles.
    cases.push_back(
        {"bias_many_rows", Shape{4, 8, 40, 40}, ConvParams{.out_channels = 40, .bias = true}, t});
    cases.push_back({"dilated", Shape{1, 8, 10, 10},
                     ConvParams{.out_channels = 8, .pad = 2, .dilation = 2}, t});
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(Cuda, CudaConvTest, ::testing::ValuesIn(conv_cases()),
                         [](const auto& info) {
                           return info.param.name + "_" + dtype_name(info.param.t);
                         });

// A path named (RESNET_CUDA_BATCH_NORM_PATH) or the default list; shapes with one part of rows,
// several parts (3200 rows, 40 channels), and channels no vector width divides (scalar passes).
struct BatchNormPathCase {
  std::string path;  // empty: the default list
  Shape x;
};

class CudaBatchNormTest
    : public test::CudaTest,
      public ::testing::WithParamInterface<std::tuple<bool, DType, BatchNormPathCase>> {
 protected:
  void TearDown() override { unsetenv("RESNET_CUDA_BATCH_NORM_PATH"); }
};

TEST_P(CudaBatchNormTest, TrainingInferenceAndBackwardMatchCpu) {
  const auto [fuse, t, pc] = GetParam();
  if (!pc.path.empty()) setenv("RESNET_CUDA_BATCH_NORM_PATH", pc.path.c_str(), 1);
  const Shape xs = pc.x;
  const int64_t c = xs[1];
  const BatchNormParams p{.eps = 1e-5, .fuse_relu = fuse};
  const auto xv = random_values(xs.numel(), 1, -2.f, 2.f), dyv = random_values(xs.numel(), 2),
             gv = random_values(c, 3, .5f, 1.5f), bv = random_values(c, 4, -.5f, .5f),
             rv = random_values(c, 5, .5f, 2.f);
  auto cop = cpu_->make_batch_norm(p, plain_desc(xs), true);
  Tensor cx = to_cpu(xs, xv), cg = to_cpu(Shape{c}, gv), cb = to_cpu(Shape{c}, bv);
  Tensor cy = cpu_->allocate(cop->output_desc()), cm = cpu_->allocate(plain_desc(Shape{c})),
         cv = cpu_->allocate(plain_desc(Shape{c}));
  Tensor cws = fuse ? cpu_->allocate(cop->workspace_desc()) : Tensor();
  cop->forward_training(cx, cg, cb, cy, cm, cv, fuse ? &cws : nullptr);
  Tensor cdy = to_cpu(xs, dyv), cdx = cpu_->allocate(cop->output_desc()),
         cdg = cpu_->allocate(plain_desc(Shape{c})), cdb = cpu_->allocate(plain_desc(Shape{c}));
  cop->backward(cx, cdy, cg, cm, cv, fuse ? &cws : nullptr, cdx, cdg, cdb);
  Tensor crm = to_cpu(Shape{c}, bv), crv = to_cpu(Shape{c}, rv);
  Tensor ci = cpu_->allocate(cop->output_desc());
  cpu_->make_batch_norm(p, plain_desc(xs), false)->forward_inference(cx, cg, cb, crm, crv, ci);

  auto gop = gpu_->make_batch_norm(p, TensorDesc{xs, t, nullptr}, true);
  Tensor gx = to_gpu(xs, xv, t), gg = to_gpu(Shape{c}, gv), gb = to_gpu(Shape{c}, bv);
  Tensor gy = gpu_->allocate(gop->output_desc()), gm = gpu_->allocate(plain_desc(Shape{c})),
         gv2 = gpu_->allocate(plain_desc(Shape{c}));
  Tensor gws = fuse ? gpu_->allocate(gop->workspace_desc()) : Tensor();
  gop->forward_training(gx, gg, gb, gy, gm, gv2, fuse ? &gws : nullptr);
  EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), t)) << "output";
  EXPECT_TRUE(close(from_gpu(gm), from_cpu(cm), t)) << "batch mean";
  EXPECT_TRUE(close(from_gpu(gv2), from_cpu(cv), t)) << "batch variance (biased)";
  Tensor gdy = to_gpu_as(gop->output_desc(), dyv), gdx = gpu_->allocate(gop->output_desc()),
         gdg = gpu_->allocate(plain_desc(Shape{c})), gdb = gpu_->allocate(plain_desc(Shape{c}));
  gop->backward(gx, gdy, gg, gm, gv2, fuse ? &gws : nullptr, gdx, gdg, gdb);
  EXPECT_TRUE(close(from_gpu(gdx), from_cpu(cdx), t)) << "input gradient";
  EXPECT_TRUE(close(from_gpu(gdg), from_cpu(cdg), t)) << "gamma gradient";
  EXPECT_TRUE(close(from_gpu(gdb), from_cpu(cdb), t)) << "beta gradient";
  Tensor grm = to_gpu(Shape{c}, bv), grv = to_gpu(Shape{c}, rv);
  auto ginf = gpu_->make_batch_norm(p, TensorDesc{xs, t, nullptr}, false);
  Tensor gi = gpu_->allocate(ginf->output_desc());
  ginf->forward_inference(gx, gg, gb, grm, grv, gi);
  EXPECT_TRUE(close(from_gpu(gi), from_cpu(ci), t)) << "inference";
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, CudaBatchNormTest,
    ::testing::Combine(::testing::Bool(), ::testing::Values(DType::f32, DType::bf16, DType::f16),
                       ::testing::Values(BatchNormPathCase{"", Shape{4, 16, 5, 5}},
                                         BatchNormPathCase{"native", Shape{4, 16, 5, 5}},
                                         BatchNormPathCase{"native", Shape{8, 40, 20, 20}},
                                         BatchNormPathCase{"native", Shape{2, 3, 7, 7}},
                                         BatchNormPathCase{"f32_copy", Shape{8, 40, 20, 20}})),
    [](const auto& info) {
      const BatchNormPathCase& pc = std::get<2>(info.param);
      std::ostringstream name;
      name << (std::get<0>(info.param) ? "fused_relu_" : "plain_")
           << dtype_name(std::get<1>(info.param)) << "_"
           << (pc.path.empty() ? "default" : pc.path.c_str());
      for (int64_t d : pc.x.dims()) name << "_" << d;
      return name.str();
    });

struct PoolCase {
  std::string name;
  PoolParams p;
  DType t;
};

std::ostream& operator<<(std::ostream& os, const PoolCase& c) {
  return os << c.name << "_" << dtype_name(c.t);
}

class CudaPoolTest : public test::CudaTest, public ::testing::WithParamInterface<PoolCase> {};

TEST_P(CudaPoolTest, ForwardAndBackwardMatchCpu) {
  const PoolCase& c = GetParam();
  const Shape xs{2, 8, 9, 9};
  // Distinct integers: no ties for max pooling, and exact in fp16.
  const auto xv = test::distinct_values(xs.numel(), 1, 1.f);
  auto cop = cpu_->make_pool(c.p, plain_desc(xs), true);
  const Shape ys = cop->output_desc().shape;
  const auto dyv = random_values(ys.numel(), 2);
  Tensor cx = to_cpu(xs, xv), cy = cpu_->allocate(cop->output_desc());
  Tensor cws =
      cop->workspace_desc().shape.rank() ? cpu_->allocate(cop->workspace_desc()) : Tensor();
  cop->forward(cx, cy, cws.defined() ? &cws : nullptr);
  Tensor cdy = cpu_->allocate(cop->output_desc());
  cpu_->reorder(to_cpu(ys, dyv), cdy);
  Tensor cdx = cpu_->allocate(plain_desc(xs));
  cop->backward(cdy, cws.defined() ? &cws : nullptr, cdx);

  auto gop = gpu_->make_pool(c.p, TensorDesc{xs, c.t, nullptr}, true);
  ASSERT_EQ(gop->output_desc().shape, ys);
  Tensor gx = to_gpu(xs, xv, c.t), gy = gpu_->allocate(gop->output_desc());
  Tensor gws =
      gop->workspace_desc().shape.rank() ? gpu_->allocate(gop->workspace_desc()) : Tensor();
  gop->forward(gx, gy, gws.defined() ? &gws : nullptr);
  EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), c.t)) << "forward";
  Tensor gdy = to_gpu_as(gop->output_desc(), dyv),
         gdx = gpu_->allocate(TensorDesc{xs, c.t, nullptr});
  gop->backward(gdy, gws.defined() ? &gws : nullptr, gdx);
  EXPECT_TRUE(close(from_gpu(gdx), from_cpu(cdx), c.t)) << "backward";
}

std::vector<PoolCase> pool_cases() {
  std::vector<PoolCase> cases;
  // bf16 cannot hold the distinct integers max pooling needs: its max cases are fp32 and fp16.
  for (DType t : {DType::f32, DType::f16})
    cases.push_back({"max3_s2_p1", PoolParams{.kind = PoolKind::max}, t});
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    cases.push_back(
        {"avg2_s2", PoolParams{.kind = PoolKind::avg, .kernel = 2, .stride = 2, .pad = 0}, t});
    cases.push_back({"avg3_s2_p1", PoolParams{.kind = PoolKind::avg}, t});
    cases.push_back({"global_avg", PoolParams{.kind = PoolKind::avg, .global = true}, t});
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(Cuda, CudaPoolTest, ::testing::ValuesIn(pool_cases()),
                         [](const auto& info) {
                           return info.param.name + "_" + dtype_name(info.param.t);
                         });

using CudaLinearTest = test::CudaTest;

TEST_F(CudaLinearTest, ForwardAndBackwardMatchCpu) {
  for (const Shape& xs : {Shape{8, 32}, Shape{8, 32, 1, 1}}) {
    const LinearParams p{.out_features = 10, .bias = true};
    const Shape ws{10, 32};
    const auto xv = random_values(xs.numel(), 1), wv = random_values(ws.numel(), 2),
               bv = random_values(10, 3), dyv = random_values(80, 4);
    auto cop = cpu_->make_linear(p, plain_desc(xs));
    Tensor cx = to_cpu(xs, xv), cw = to_cpu(ws, wv), cb = to_cpu(Shape{10}, bv);
    Tensor cy = cpu_->allocate(cop->output_desc());
    cop->forward(cx, cw, &cb, cy);
    Tensor cdy = to_cpu(Shape{8, 10}, dyv), cdx = cpu_->allocate(plain_desc(xs)),
           cdw = cpu_->allocate(plain_desc(ws)), cdb = cpu_->allocate(plain_desc(Shape{10}));
    cop->backward_data(cdy, cw, cdx);
    cop->backward_weights(cx, cdy, cdw, &cdb);

    auto gop = gpu_->make_linear(p, plain_desc(xs));
    Tensor gx = to_gpu(xs, xv), gw = to_gpu(ws, wv), gb = to_gpu(Shape{10}, bv);
    Tensor gy = gpu_->allocate(gop->output_desc());
    gop->forward(gx, gw, &gb, gy);
    EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), DType::f32)) << xs.str();
    Tensor gdy = to_gpu(Shape{8, 10}, dyv), gdx = gpu_->allocate(plain_desc(xs)),
           gdw = gpu_->allocate(plain_desc(ws)), gdb = gpu_->allocate(plain_desc(Shape{10}));
    gop->backward_data(gdy, gw, gdx);
    gop->backward_weights(gx, gdy, gdw, &gdb);
    EXPECT_TRUE(close(from_gpu(gdx), from_cpu(cdx), DType::f32)) << xs.str();
    EXPECT_TRUE(close(from_gpu(gdw), from_cpu(cdw), DType::f32)) << xs.str();
    EXPECT_TRUE(close(from_gpu(gdb), from_cpu(cdb), DType::f32)) << xs.str();
  }
}

}  // namespace
}  // namespace rn

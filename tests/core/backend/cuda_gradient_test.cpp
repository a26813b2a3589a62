// Gradient checks on the GPU: each CUDA op's backward against central differences of its own
// forward, in full fp32 (the backend built with MathMode::exact: no TF32). Skipped where no GPU is
// usable.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/core/backend/cuda_test_util.h"

namespace rn {
namespace {

using test::gradient_matches;
using test::GradientCheckOptions;
using test::plain_desc;
using test::random_values;

class CudaGradientTest : public test::CudaTest {
 protected:
  void SetUp() override { test::CudaTest::SetUp(MathMode::exact); }
  GradientCheckOptions options() const {
    GradientCheckOptions o;
    o.max_points = 60;
    return o;
  }
};

TEST_F(CudaGradientTest, ConvolutionWithGroups) {
  const Shape xs{2, 8, 6, 6};
  const ConvParams p{.out_channels = 8, .stride = 2, .groups = 2, .bias = true};
  auto op = gpu_->make_conv(p, plain_desc(xs), true);
  const Shape ws = op->weight_desc().shape, ys = op->output_desc().shape;
  const auto xv = random_values(xs.numel(), 1), wv = random_values(ws.numel(), 2),
             bv = random_values(8, 3), r = random_values(ys.numel(), 4);
  auto forward = [&](const std::vector<float>& x, const std::vector<float>& w) {
    Tensor gx = to_gpu(xs, x), gw = to_gpu_as(op->weight_desc(), w), gb = to_gpu(Shape{8}, bv);
    Tensor y = gpu_->allocate(op->output_desc());
    op->forward(gx, gw, &gb, y);
    return from_gpu(y);
  };
  Tensor gx = to_gpu(xs, xv), gw = to_gpu_as(op->weight_desc(), wv);
  Tensor dy = to_gpu_as(op->output_desc(), r), dx = gpu_->allocate(plain_desc(xs)),
         dw = gpu_->allocate(op->weight_desc()), db = gpu_->allocate(plain_desc(Shape{8}));
  op->backward_data(dy, gw, dx);
  op->backward_weights(gx, dy, dw, &db);
  EXPECT_TRUE(gradient_matches([&](const auto& x) { return forward(x, wv); }, xv, r, from_gpu(dx),
                               options()));
  EXPECT_TRUE(gradient_matches([&](const auto& w) { return forward(xv, w); }, wv, r, from_gpu(dw),
                               options()));
}

TEST_F(CudaGradientTest, BatchNormFusedWithRelu) {
  const Shape xs{4, 8, 3, 3};
  const BatchNormParams p{.fuse_relu = true};
  auto op = gpu_->make_batch_norm(p, plain_desc(xs), true);
  const auto xv = random_values(xs.numel(), 1, -2.f, 2.f), gv = random_values(8, 2, .5f, 1.5f),
             bv = random_values(8, 3, -.3f, .3f);
  auto r = random_values(xs.numel(), 4);
  Tensor gamma = to_gpu(Shape{8}, gv), beta = to_gpu(Shape{8}, bv);
  Tensor mean = gpu_->allocate(plain_desc(Shape{8})), var = gpu_->allocate(plain_desc(Shape{8}));
  {
    // Outputs whose pre-activation lies near ReLU's kink get no weight in the projected loss, so
    // that no finite-difference step crosses the kink where it counts.
    auto unfused = gpu_->make_batch_norm(BatchNormParams{}, plain_desc(xs), true);
    Tensor z = gpu_->allocate(unfused->output_desc());
    unfused->forward_training(to_gpu(xs, xv), gamma, beta, z, mean, var, nullptr);
    const auto zv = from_gpu(z);
    for (size_t i = 0; i < r.size(); ++i)
      if (std::abs(zv[i]) < 0.05f) r[i] = 0.f;
  }
  auto forward = [&](const std::vector<float>& x) {
    Tensor y = gpu_->allocate(op->output_desc()), ws = gpu_->allocate(op->workspace_desc());
    op->forward_training(to_gpu(xs, x), gamma, beta, y, mean, var, &ws);
    return from_gpu(y);
  };
  Tensor x = to_gpu(xs, xv), y = gpu_->allocate(op->output_desc()),
         ws = gpu_->allocate(op->workspace_desc());
  op->forward_training(x, gamma, beta, y, mean, var, &ws);
  Tensor dy = to_gpu_as(op->output_desc(), r), dx = gpu_->allocate(op->output_desc()),
         dg = gpu_->allocate(plain_desc(Shape{8})), db = gpu_->allocate(plain_desc(Shape{8}));
  op->backward(x, dy, gamma, mean, var, &ws, dx, dg, db);
  const auto analytic = from_gpu(dx);
  GradientCheckOptions o = options();
  o.step = 1e-3;  // moves a pre-activation by under 0.01
  o.tolerance = 5e-2;
  EXPECT_TRUE(gradient_matches(forward, xv, r, analytic, o));
}

TEST_F(CudaGradientTest, PoolingAndLinear) {
  const Shape xs{2, 4, 6, 6};
  for (PoolParams p : {PoolParams{.kind = PoolKind::max}, PoolParams{.kind = PoolKind::avg},
                       PoolParams{.kind = PoolKind::avg, .global = true}}) {
    auto op = gpu_->make_pool(p, plain_desc(xs), true);
    const auto xv = test::distinct_values(xs.numel(), 1, 0.05f);  // |x| < 7.2
    const auto r = random_values(op->output_desc().shape.numel(), 2);
    auto forward = [&](const std::vector<float>& x) {
      Tensor y = gpu_->allocate(op->output_desc());
      Tensor ws =
          op->workspace_desc().shape.rank() ? gpu_->allocate(op->workspace_desc()) : Tensor();
      op->forward(to_gpu(xs, x), y, ws.defined() ? &ws : nullptr);
      return from_gpu(y);
    };
    Tensor y = gpu_->allocate(op->output_desc());
    Tensor ws = op->workspace_desc().shape.rank() ? gpu_->allocate(op->workspace_desc()) : Tensor();
    op->forward(to_gpu(xs, xv), y, ws.defined() ? &ws : nullptr);
    Tensor dx = gpu_->allocate(plain_desc(xs));
    op->backward(to_gpu_as(op->output_desc(), r), ws.defined() ? &ws : nullptr, dx);
    GradientCheckOptions o = options();
    o.step = 2e-3;  // steps below 0.015, under half the gap: the arg max never moves
    EXPECT_TRUE(gradient_matches(forward, xv, r, from_gpu(dx), o))
        << (p.kind == PoolKind::max ? "max"
            : p.global              ? "global avg"
                                    : "avg");
  }
  const Shape ls{4, 12};
  auto lin = gpu_->make_linear(LinearParams{.out_features = 5}, plain_desc(ls));
  const auto xv = random_values(ls.numel(), 3), wv = random_values(60, 4), bv = random_values(5, 5),
             r = random_values(20, 6);
  Tensor w = to_gpu(Shape{5, 12}, wv), b = to_gpu(Shape{5}, bv);
  auto forward = [&](const std::vector<float>& x) {
    Tensor y = gpu_->allocate(lin->output_desc());
    lin->forward(to_gpu(ls, x), w, &b, y);
    return from_gpu(y);
  };
  Tensor dx = gpu_->allocate(plain_desc(ls));
  lin->backward_data(to_gpu(Shape{4, 5}, r), w, dx);
  EXPECT_TRUE(gradient_matches(forward, xv, r, from_gpu(dx), options())) << "linear";
}

TEST_F(CudaGradientTest, SoftmaxCrossEntropy) {
  const int64_t n = 6, k = 7;
  const auto zv = random_values(n * k, 1, -2.f, 2.f);
  Tensor labels = Tensor::zeros(Shape{n}, DType::i32);
  for (int64_t i = 0; i < n; ++i) labels.data_as<int32_t>()[i] = static_cast<int32_t>(i % k);
  Tensor gl = gpu_->upload(labels);
  const CrossEntropyParams p{.label_smoothing = 0.1f};
  auto loss = [&](const std::vector<float>& z) {
    return std::vector<double>{
        gpu_->softmax_cross_entropy(to_gpu(Shape{n, k}, z), gl, p, nullptr).loss};
  };
  Tensor dz = gpu_->allocate(plain_desc(Shape{n, k}));
  gpu_->softmax_cross_entropy(to_gpu(Shape{n, k}, zv), gl, p, &dz);
  GradientCheckOptions o = options();
  o.floor = 1e-2;
  EXPECT_TRUE(gradient_matches(loss, zv, std::vector<float>{1.f}, from_gpu(dz), o));
}

}  // namespace
}  // namespace rn

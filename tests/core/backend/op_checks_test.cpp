// The op objects' checks against their plan: the same on every backend, because they live in the
// base classes' non-virtual methods. Shown with stand-in ops whose implementations only count
// their calls (what a CUDA op would receive, without a GPU), and with the CPU backend's ops.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "core/backend/backend.h"
#include "tests/error_of.h"

namespace rn {
namespace {

// The error line of `fn` without the check's own "(condition at file:line)" suffix.
std::string error_line(const std::function<void()>& fn) {
  const std::string e = test::error_of(fn);
  const size_t at = e.rfind(" (");
  return at != std::string::npos && e.back() == ')' && e.find(" at ", at) != std::string::npos
             ? e.substr(0, at)
             : e;
}

Tensor host(const Shape& s) {
  return Tensor::zeros(s, DType::f32);
}

TensorDesc plain(const Shape& s) {
  return TensorDesc{s, DType::f32, nullptr};
}

// Stand-ins: the plan's descriptions and a count of the calls that reached the backend.
class CountingConv final : public ConvOp {
 public:
  CountingConv(const ConvParams& p, const Shape& x)
      : ConvOp(p, x),
        y_(plain(conv_output_shape(p, x))),
        w_(plain(Shape{p.out_channels, x[1] / p.groups, p.kernel, p.kernel})) {}
  const TensorDesc& output_desc() const override { return y_; }
  const TensorDesc& weight_desc() const override { return w_; }
  int calls = 0;

 private:
  void forward_impl(const Tensor&, const Tensor&, const Tensor*, Tensor&) override { ++calls; }
  void backward_data_impl(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void backward_weights_impl(const Tensor&, const Tensor&, Tensor&, Tensor*) override { ++calls; }
  TensorDesc y_, w_;
};

class CountingBatchNorm final : public BatchNormOp {
 public:
  CountingBatchNorm(const Shape& x, bool fused)
      : BatchNormOp(x), y_(plain(x)), ws_(plain(fused ? Shape{x.numel()} : Shape{})) {}
  const TensorDesc& output_desc() const override { return y_; }
  const TensorDesc& workspace_desc() const override { return ws_; }
  int calls = 0;

 private:
  void forward_training_impl(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&,
                             Tensor*) override {
    ++calls;
  }
  void forward_inference_impl(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, Tensor&) override {
    ++calls;
  }
  void backward_impl(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor*, Tensor&, Tensor&, Tensor&) override {
    ++calls;
  }
  TensorDesc y_, ws_;
};

class CountingPool final : public PoolOp {
 public:
  CountingPool(const Shape& x, const Shape& y, bool workspace)
      : PoolOp(x), y_(plain(y)), ws_(plain(workspace ? Shape{y.numel()} : Shape{})) {}
  const TensorDesc& output_desc() const override { return y_; }
  const TensorDesc& workspace_desc() const override { return ws_; }
  int calls = 0;

 private:
  void forward_impl(const Tensor&, Tensor&, Tensor*) override { ++calls; }
  void backward_impl(const Tensor&, const Tensor*, Tensor&) override { ++calls; }
  TensorDesc y_, ws_;
};

class CountingLinear final : public LinearOp {
 public:
  CountingLinear(const LinearParams& p, const Shape& x)
      : LinearOp(p, x), y_(plain(Shape{x[0], p.out_features})) {}
  const TensorDesc& output_desc() const override { return y_; }
  int calls = 0;

 private:
  void forward_impl(const Tensor&, const Tensor&, const Tensor*, Tensor&) override { ++calls; }
  void backward_data_impl(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void backward_weights_impl(const Tensor&, const Tensor&, Tensor&, Tensor*) override { ++calls; }
  TensorDesc y_;
};

TEST(OpChecksTest, ConvChecksEveryTensorAgainstThePlanBeforeTheBackendRuns) {
  const ConvParams p{.out_channels = 8, .kernel = 3, .stride = 2, .pad = 1, .bias = true};
  CountingConv op(p, Shape{2, 4, 8, 8});
  Tensor x = host({2, 4, 8, 8}), w = host({8, 4, 3, 3}), b = host({8}), y = host({2, 8, 4, 4});
  op.forward(x, w, &b, y);
  EXPECT_EQ(op.calls, 1);
  Tensor x_wrong = host({3, 4, 8, 8});
  EXPECT_EQ(error_line([&] { op.forward(x_wrong, w, &b, y); }),
            "[conv] input: planned for 2x4x8x8, got 3x4x8x8");
  EXPECT_EQ(error_line([&] { op.forward(x, w, nullptr, y); }),
            "[conv] bias: planned for 8, got none");
  Tensor y_wrong = host({2, 8, 8, 8});
  EXPECT_EQ(error_line([&] { op.forward(x, w, &b, y_wrong); }),
            "[conv] output: planned for 2x8x4x4, got 2x8x8x8");
  Tensor w_wrong = host({8, 2, 3, 3});
  EXPECT_EQ(error_line([&] { op.backward_data(y, w_wrong, x); }),
            "[conv] weight: planned for 8x4x3x3, got 8x2x3x3");
  EXPECT_EQ(error_line([&] { op.backward_weights(x, y_wrong, w, &b); }),
            "[conv] output gradient: planned for 2x8x4x4, got 2x8x8x8");
  EXPECT_EQ(error_line([&] { op.backward_weights(x, y, w, nullptr); }),
            "[conv] bias gradient: planned for 8, got none");
  EXPECT_EQ(op.calls, 1);  // nothing wrong reached the backend
  op.backward_data(y, w, x);
  op.backward_weights(x, y, w, &b);
  EXPECT_EQ(op.calls, 3);
}

TEST(OpChecksTest, ConvWithoutBiasTakesNone) {
  CountingConv op(ConvParams{.out_channels = 4}, Shape{1, 4, 6, 6});
  Tensor x = host({1, 4, 6, 6}), w = host({4, 4, 3, 3}), y = host({1, 4, 6, 6});
  op.forward(x, w, nullptr, y);
  op.backward_weights(x, y, w, nullptr);
  EXPECT_EQ(op.calls, 2);
}

TEST(OpChecksTest, BatchNormChecksChannelsAndTheFusedWorkspace) {
  const Shape xs{2, 3, 4, 4};
  CountingBatchNorm op(xs, /*fused=*/true);
  Tensor x = host(xs), y = host(xs), dx = host(xs), ws = host({xs.numel()});
  Tensor g = host({3}), b = host({3}), m = host({3}), v = host({3}), dg = host({3}), db = host({3});
  op.forward_training(x, g, b, y, m, v, &ws);
  EXPECT_EQ(error_line([&] { op.forward_training(x, g, b, y, m, v, nullptr); }),
            "[batch_norm] workspace (fused ReLU): planned for 96, got none");
  Tensor four = host({4});
  EXPECT_EQ(error_line([&] { op.forward_inference(x, four, b, m, v, y); }),
            "[batch_norm] gamma: planned for 3, got 4");
  EXPECT_EQ(error_line([&] { op.backward(x, y, g, m, v, &ws, dx, dg, four); }),
            "[batch_norm] beta gradient: planned for 3, got 4");
  Tensor x_wrong = host({2, 3, 4, 5});
  EXPECT_EQ(error_line([&] { op.backward(x, x_wrong, g, m, v, &ws, dx, dg, db); }),
            "[batch_norm] output gradient: planned for 2x3x4x4, got 2x3x4x5");
  op.forward_inference(x, g, b, m, v, y);
  op.backward(x, y, g, m, v, &ws, dx, dg, db);
  EXPECT_EQ(op.calls, 3);
  CountingBatchNorm unfused(xs, /*fused=*/false);
  unfused.forward_training(x, g, b, y, m, v, nullptr);
  EXPECT_EQ(unfused.calls, 1);
}

TEST(OpChecksTest, PoolChecksShapesAndTheWorkspaceItsPlanHas) {
  CountingPool op(Shape{2, 3, 8, 8}, Shape{2, 3, 4, 4}, /*workspace=*/true);
  Tensor x = host({2, 3, 8, 8}), y = host({2, 3, 4, 4}), ws = host({96});
  op.forward(x, y, &ws);
  EXPECT_EQ(error_line([&] { op.forward(x, y, nullptr); }),
            "[pool] workspace (max pooling in training): planned for 96, got none");
  EXPECT_EQ(error_line([&] { op.backward(x, &ws, x); }),
            "[pool] output gradient: planned for 2x3x4x4, got 2x3x8x8");
  EXPECT_EQ(error_line([&] { op.backward(y, &ws, y); }),
            "[pool] input gradient: planned for 2x3x8x8, got 2x3x4x4");
  op.backward(y, &ws, x);
  EXPECT_EQ(op.calls, 2);
}

TEST(OpChecksTest, LinearChecksWeightAndBias) {
  CountingLinear op(LinearParams{.out_features = 10, .bias = true}, Shape{5, 24, 1, 1});
  Tensor x = host({5, 24, 1, 1}), w = host({10, 24}), b = host({10}), y = host({5, 10});
  op.forward(x, w, &b, y);
  Tensor flat = host({5, 24});
  EXPECT_EQ(error_line([&] { op.forward(flat, w, &b, y); }),
            "[linear] input: planned for 5x24x1x1, got 5x24");
  EXPECT_EQ(error_line([&] { op.forward(x, w, nullptr, y); }),
            "[linear] bias: planned for 10, got none");
  Tensor wt = host({24, 10});
  EXPECT_EQ(error_line([&] { op.backward_data(y, wt, x); }),
            "[linear] weight: planned for 10x24, got 24x10");
  op.backward_weights(x, y, w, &b);
  EXPECT_EQ(op.calls, 2);
}

// The CPU backend's ops go through the same checks (the CUDA backend's, tested on a GPU, too).
TEST(OpChecksTest, CpuBackendOpsRefuseWhatTheirPlanDoesNot) {
  auto be = make_cpu_backend(1);
  const TensorDesc xd = plain(Shape{2, 4, 8, 8});
  auto conv = be->make_conv(ConvParams{.out_channels = 8}, xd, true);
  Tensor x = be->upload(host({2, 4, 8, 8})), bigger = be->upload(host({4, 4, 8, 8}));
  Tensor w = be->allocate(conv->weight_desc()), y = be->allocate(conv->output_desc());
  EXPECT_EQ(error_line([&] { conv->forward(bigger, w, nullptr, y); }),
            "[conv] input: planned for 2x4x8x8, got 4x4x8x8");
  auto linear = be->make_linear(LinearParams{.out_features = 3, .bias = true}, plain(Shape{2, 5}));
  Tensor lx = be->upload(host({2, 5})), lw = be->upload(host({3, 5}));
  Tensor ly = be->allocate(linear->output_desc());
  EXPECT_EQ(error_line([&] { linear->forward(lx, lw, nullptr, ly); }),
            "[linear] bias: planned for 3, got none");
  auto pool = be->make_pool(PoolParams{.kind = PoolKind::max}, xd, true);
  Tensor py = be->allocate(pool->output_desc());
  EXPECT_EQ(error_line([&] { pool->forward(x, py, nullptr); }),
            "[pool] workspace (max pooling in training): planned for " +
                pool->workspace_desc().shape.str() + ", got none");
}

}  // namespace
}  // namespace rn

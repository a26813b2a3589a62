// The reduction kernel bodies run by the grid emulator (barriers as fiber phases) on the launch
// shapes the backend computes: the column sums of a bias gradient (kernels/column_sum_kernels.h)
// against the CPU linear layer's bias gradient and bias addition, and the native NHWC batch norm
// (kernels/batch_norm_kernels.h) forward, inference and backward, with and without the fused
// ReLU, against the CPU batch norm, on 1, 3 and 64 channels, rows that do not fill a part, and the
// largest batch norm ResNet-50 runs at batch 256.
#include "core/backend/cuda/kernels/batch_norm_kernels.h"

#include <gtest/gtest.h>

#include "core/backend/cuda/kernels/eltwise_kernels.h"
#include "tests/core/backend/cuda/kernels/kernel_test_util.h"
#include "tests/core/gradient_check.h"

namespace rn::cuda::emu {
namespace {

using test::random_values;

// launch_column_sum's two passes over dy (rows x cols).
template <typename T>
std::vector<float> emulate_column_sum(Grid& grid, const Buffer<T>& dy, int64_t rows, int64_t cols) {
  const ColumnSumPlan plan = column_sum_plan(rows, cols);
  Buffer<float> partial("partial", plan.parts * cols, 7.f), db("db", cols, 7.f);
  grid.run_with_shared<ColumnTile>("column_partial", column_partial_launch(plan),
                                   [&](const EmulatedThread& th, ColumnTile& sh) {
                                     column_partial_body<Checked>(th, sh, dy.cptr(), partial.ptr(),
                                                                  rows, cols, plan.rows_per_part);
                                   });
  grid.run("column_final", linear_launch(cols), [&](const EmulatedThread& th) {
    column_final_body<Checked>(th, partial.cptr(), db.ptr(), plan.parts, cols);
  });
  return read(db);
}

template <typename T>
class ColumnSumBodyTest : public ::testing::Test {};
TYPED_TEST_SUITE(ColumnSumBodyTest, StorageTypes);

// The CUDA linear layer adds its bias (bias_add_body) after the GEMM and sums its gradient by
// columns: both against the CPU linear layer.
TYPED_TEST(ColumnSumBodyTest, BiasAndItsGradientMatchTheCpuLinearLayer) {
  using T = TypeParam;
  auto be = make_cpu_backend(1);
  Grid grid;
  for (int64_t rows : {1, 3, 256, 257, 1000, 3000})
    for (int64_t cols : {1, 3, 10, 33, 64}) {
      const int64_t k = 5;
      const TensorDesc xd{Shape{rows, k}, DType::f32, nullptr};
      auto linear = be->make_linear(LinearParams{.out_features = static_cast<int>(cols)}, xd);
      auto gemm =
          be->make_linear(LinearParams{.out_features = static_cast<int>(cols), .bias = false}, xd);
      const auto x = as_stored<T>(random_values(rows * k, 71));
      const auto w = random_values(cols * k, 72), b = random_values(cols, 73);
      Tensor xt = be->upload(host_tensor(Shape{rows, k}, x));
      Tensor wt = be->upload(host_tensor(Shape{cols, k}, w)),
             bt = be->upload(host_tensor(Shape{cols}, b));
      Tensor y0 = be->allocate(linear->output_desc()), y1 = be->allocate(linear->output_desc());
      gemm->forward(xt, wt, nullptr, y0);
      linear->forward(xt, wt, &bt, y1);
      Buffer<T> y("y", stored<T>(be->download(y0).to_vector()));
      Buffer<float> bias("bias", b);
      grid.run("bias_add", linear_launch(rows * cols), [&](const EmulatedThread& th) {
        bias_add_body<Checked>(th, y.ptr(), bias.cptr(), rows, cols);
      });
      // In bf16 / f16 the product is rounded before the bias is added (as on the GPU), so the
      // error bound scales with the products (|y| < 5 here), not only with the sum.
      ASSERT_TRUE(close(read(y), as_stored<T>(be->download(y1).to_vector()), storage_eps<T>(),
                        std::is_same_v<T, float> ? 1e-5f : 5 * storage_eps<T>()))
          << "bias_add " << type_name<T>() << " " << rows << " x " << cols;

      const auto dy = as_stored<T>(random_values(rows * cols, 74));
      Tensor dyt = be->upload(host_tensor(Shape{rows, cols}, dy));
      Tensor dw = be->allocate(wt.desc()), db = be->allocate(bt.desc());
      linear->backward_weights(xt, dyt, dw, &db);
      Buffer<T> dyb("dy", stored<T>(dy));
      ASSERT_TRUE(close(emulate_column_sum(grid, dyb, rows, cols), be->download(db).to_vector(),
                        1e-5f, 1e-4f))
          << "column sums " << type_name<T>() << " " << rows << " x " << cols;
    }
}

// The native batch norm's three launches of each direction, as batch_norm_native.cu runs them,
// on an N x C x H x W tensor stored NHWC (rows = N*H*W, cols = C).
template <typename T>
struct NativeBatchNorm {
  int64_t rows, cols;
  bool relu;
  float eps = 1e-5f;
  Grid grid;
  Buffer<float> affine{"affine", 2 * cols, 7.f};

  NativeBatchNorm(int64_t r, int64_t c, bool fuse) : rows(r), cols(c), relu(fuse) {}

  void normalize(const Buffer<T>& x, Buffer<T>& y) {
    const int w = vector_width<T>(cols, x.data(), y.data());
    const int64_t total = rows * cols;
    grid.run("normalize", batch_norm_elementwise_launch(total, w), [&](const EmulatedThread& th) {
      constexpr int kWide = Vec<T>::kN;
      if (w == kWide)
        relu ? normalize_body<kWide, true, Checked>(th, x.cptr(), y.ptr(), affine.cptr(), total,
                                                    cols)
             : normalize_body<kWide, false, Checked>(th, x.cptr(), y.ptr(), affine.cptr(), total,
                                                     cols);
      else
        relu ? normalize_body<1, true, Checked>(th, x.cptr(), y.ptr(), affine.cptr(), total, cols)
             : normalize_body<1, false, Checked>(th, x.cptr(), y.ptr(), affine.cptr(), total, cols);
    });
  }

  void forward_training(const Buffer<T>& x, const Buffer<float>& gamma, const Buffer<float>& beta,
                        Buffer<T>& y, Buffer<float>& mean, Buffer<float>& var) {
    const ColumnSumPlan plan = column_sum_plan(rows, cols);
    Buffer<float> partial("partial", plan.parts * cols * 3, 7.f);
    grid.run_with_shared<MomentsTile>("moments_partial", column_partial_launch(plan),
                                      [&](const EmulatedThread& th, MomentsTile& sh) {
                                        moments_partial_body<Checked>(th, sh, x.cptr(),
                                                                      partial.ptr(), rows, cols,
                                                                      plan.rows_per_part);
                                      });
    grid.run_with_shared<MomentsFinalShared>(
        "moments_final", per_channel_launch(cols),
        [&](const EmulatedThread& th, MomentsFinalShared& sh) {
          moments_final_body<Checked>(th, sh, partial.cptr(), plan.parts, cols, gamma.cptr(),
                                      beta.cptr(), mean.ptr(), var.ptr(), affine.ptr(), eps);
        });
    normalize(x, y);
  }

  void forward_inference(const Buffer<T>& x, const Buffer<float>& gamma, const Buffer<float>& beta,
                         const Buffer<float>& mean, const Buffer<float>& var, Buffer<T>& y) {
    grid.run("affine_from_stats", linear_launch(cols), [&](const EmulatedThread& th) {
      affine_from_stats_body<Checked>(th, gamma.cptr(), beta.cptr(), mean.cptr(), var.cptr(),
                                      affine.ptr(), cols, eps);
    });
    normalize(x, y);
  }

  void backward(const Buffer<T>& x, const Buffer<T>& dy, const Buffer<float>& gamma,
                const Buffer<float>& mean, const Buffer<float>& var, Buffer<T>& dx,
                Buffer<float>& dgamma, Buffer<float>& dbeta) {
    const ColumnSumPlan plan = column_sum_plan(rows, cols);
    Buffer<float> partial("partial", plan.parts * cols * 2, 7.f), coef("coef", 3 * cols, 7.f);
    grid.run_with_shared<GradTile>("grad_partial", column_partial_launch(plan),
                                   [&](const EmulatedThread& th, GradTile& sh) {
                                     auto run = [&](auto relu_tag) {
                                       grad_partial_body<decltype(relu_tag)::value, Checked>(
                                           th, sh, x.cptr(), dy.cptr(), mean.cptr(), affine.cptr(),
                                           partial.ptr(), rows, cols, plan.rows_per_part);
                                     };
                                     relu ? run(std::true_type{}) : run(std::false_type{});
                                   });
    grid.run_with_shared<GradFinalShared>(
        "grad_final", per_channel_launch(cols), [&](const EmulatedThread& th, GradFinalShared& sh) {
          grad_final_body<Checked>(th, sh, partial.cptr(), plan.parts, rows, cols, gamma.cptr(),
                                   var.cptr(), dgamma.ptr(), dbeta.ptr(), coef.ptr(), eps);
        });
    const int64_t total = rows * cols;
    const int w = vector_width<T>(cols, x.data(), dy.data(), dx.data());
    grid.run("input_grad", batch_norm_elementwise_launch(total, w), [&](const EmulatedThread& th) {
      auto run = [&](auto width, auto relu_tag) {
        input_grad_body<decltype(width)::value, decltype(relu_tag)::value, Checked>(
            th, x.cptr(), dy.cptr(), dx.ptr(), mean.cptr(), affine.cptr(), coef.cptr(), total,
            cols);
      };
      using Wide = std::integral_constant<int, Vec<T>::kN>;
      using One = std::integral_constant<int, 1>;
      if (w == Vec<T>::kN)
        relu ? run(Wide{}, std::true_type{}) : run(Wide{}, std::false_type{});
      else
        relu ? run(One{}, std::true_type{}) : run(One{}, std::false_type{});
    });
  }
};

template <typename T>
class BatchNormBodyTest : public ::testing::Test {
 protected:
  // The native forward (training, then inference with the batch statistics) and backward on
  // dims `d`, against the CPU batch norm on the same (stored) values; tolerances relative to
  // the storage type, statistics in fp32 terms.
  void check(const Dims4& d, bool relu) {
    const Shape s{d.n, d.c, d.h, d.w};
    const int64_t rows = d.n * d.h * d.w, cols = d.c, total = d.numel();
    // An offset mean, as activations have: Welford keeps the variance exact beside it.
    const auto x = as_stored<T>(random_values(total, 81, 2.f, 5.f));
    const auto dy = as_stored<T>(random_values(total, 82));
    const auto gamma = random_values(cols, 83, 0.5f, 1.5f), beta = random_values(cols, 84);

    auto be = make_cpu_backend(1);
    auto bn = be->make_batch_norm(BatchNormParams{.eps = 1e-5, .fuse_relu = relu},
                                  TensorDesc{s, DType::f32, nullptr}, true);
    Tensor xt = be->upload(host_tensor(s, x)), gt = be->upload(host_tensor(Shape{cols}, gamma));
    Tensor bt = be->upload(host_tensor(Shape{cols}, beta));
    Tensor yt = be->allocate(bn->output_desc());
    Tensor mt = be->allocate(TensorDesc{Shape{cols}, DType::f32, nullptr}),
           vt = be->allocate(mt.desc());
    Tensor ws;
    if (bn->workspace_desc().shape.rank() > 0) ws = be->allocate(bn->workspace_desc());
    bn->forward_training(xt, gt, bt, yt, mt, vt, ws.defined() ? &ws : nullptr);
    Tensor dyt = be->upload(host_tensor(s, dy));
    Tensor dxt = be->allocate(xt.desc()), dgt = be->allocate(gt.desc()),
           dbt = be->allocate(gt.desc());
    bn->backward(xt, dyt, gt, mt, vt, ws.defined() ? &ws : nullptr, dxt, dgt, dbt);
    Tensor yi = be->allocate(bn->output_desc());
    bn->forward_inference(xt, gt, bt, mt, vt, yi);

    NativeBatchNorm<T> nb(rows, cols, relu);
    Buffer<T> xb("x", stored<T>(to_nhwc(x, d))), yb("y", total, from_f<T>(7.f));
    Buffer<float> gb("gamma", gamma), bb("beta", beta), mean("mean", cols, 7.f),
        var("var", cols, 7.f);
    nb.forward_training(xb, gb, bb, yb, mean, var);
    const std::string what = std::string(type_name<T>()) + " " + s.str() + (relu ? " relu" : "");
    EXPECT_TRUE(close(read(mean), be->download(mt).to_vector(), 1e-5f, 1e-6f)) << "mean " << what;
    EXPECT_TRUE(close(read(var), be->download(vt).to_vector(), 1e-4f, 1e-6f)) << "var " << what;
    EXPECT_TRUE(close(from_nhwc(read(yb), d), as_stored<T>(be->download(yt).to_vector()),
                      storage_eps<T>(), 1e-4f))
        << "y " << what;

    Buffer<T> dyb("dy", stored<T>(to_nhwc(dy, d))), dxb("dx", total, from_f<T>(7.f));
    Buffer<float> dgamma("dgamma", cols, 7.f), dbeta("dbeta", cols, 7.f);
    nb.backward(xb, dyb, gb, mean, var, dxb, dgamma, dbeta);
    EXPECT_TRUE(close(read(dbeta), be->download(dbt).to_vector(), 1e-5f, 1e-4f))
        << "dbeta " << what;
    EXPECT_TRUE(close(read(dgamma), be->download(dgt).to_vector(), 1e-4f, 1e-4f))
        << "dgamma " << what;
    EXPECT_TRUE(close(from_nhwc(read(dxb), d), as_stored<T>(be->download(dxt).to_vector()),
                      storage_eps<T>(), 2e-4f))
        << "dx " << what;

    Buffer<T> yib("y_inference", total, from_f<T>(7.f));
    nb.forward_inference(xb, gb, bb, mean, var, yib);
    EXPECT_TRUE(close(from_nhwc(read(yib), d), as_stored<T>(be->download(yi).to_vector()),
                      storage_eps<T>(), 1e-4f))
        << "inference " << what;
  }
};
TYPED_TEST_SUITE(BatchNormBodyTest, StorageTypes);

TYPED_TEST(BatchNormBodyTest, ForwardInferenceAndBackwardMatchTheCpu) {
  for (bool relu : {false, true})
    for (const Dims4& d : {Dims4{2, 1, 3, 3}, Dims4{3, 3, 5, 7}, Dims4{2, 64, 4, 4},
                           Dims4{5, 10, 9, 9}, Dims4{1, 33, 17, 17}})
      this->check(d, relu);
}

}  // namespace
}  // namespace rn::cuda::emu

// Whole networks on the GPU: a ResNet's first step agrees with the CPU backend's, and short
// training runs on one fixed batch drive the loss down in fp32, bf16 and fp16 (with dynamic loss
// scaling), the parameters staying f32 masters. Skipped where no GPU is usable.
#include <gtest/gtest.h>

#include <vector>

#include "core/models/model_spec.h"
#include "core/optim/loss_scaler.h"
#include "core/optim/optimizer.h"
#include "tests/core/backend/cuda_test_util.h"

namespace rn {
namespace {

using test::random_values;

class CudaTrainingTest : public test::CudaTest {
 protected:
  static constexpr int64_t kBatch = 32, kClasses = 10;

  void make_batch() {
    images_ = Tensor::from_vector(Shape{kBatch, 3, 16, 16}, random_values(kBatch * 3 * 256, 1));
    labels_ = Tensor::zeros(Shape{kBatch}, DType::i32);
    for (int64_t i = 0; i < kBatch; ++i)
      labels_.data_as<int32_t>()[i] = static_cast<int32_t>(i % kClasses);
  }

  // One SGD step of `net` on the fixed batch, activations in `t`; returns the loss before it.
  double step(Backend& be, models::Network& net, optim::Optimizer& opt, DType t,
              optim::LossScaler* scaler) {
    net.set_training(true);
    Tensor x = be.upload(images_);
    if (t != DType::f32) {
      Tensor low = be.allocate(TensorDesc{x.shape(), t, nullptr});
      be.cast(x, low);
      x = low;
    }
    Tensor logits = net.forward(x);
    Tensor dlogits = be.allocate(logits.desc());
    const LossStats s =
        be.softmax_cross_entropy(logits, be.upload(labels_), CrossEntropyParams{}, &dlogits);
    if (scaler) be.scale(dlogits, scaler->scale());
    net.backward(dlogits);
    if (!scaler || scaler->unscale(be, opt.parameters())) opt.step(0.05);
    return s.loss;
  }

  Tensor images_, labels_;
};

// ResNet-20, and its Identity Mappings variants: gates, scaling, dropout (the same mask on both
// backends for the same key), BN after the addition and ReLU-only pre-activation.
TEST_F(CudaTrainingTest, FirstStepsAgreeWithCpu) {
  make_batch();
  for (const char* model : {"resnet20", "resnet20{shortcut=exclusive_gate gate_bias=-1}",
                            "resnet20{unit=relu_preact shortcut=dropout}",
                            "resnet20{unit=bn_after_add shortcut=scale_both}"}) {
    SCOPED_TRACE(model);
    const auto spec = models::model_spec(model, 3, kClasses);
    auto cnet = models::build_model(*cpu_, spec, 7), gnet = models::build_model(*gpu_, spec, 7);
    optim::Optimizer copt(*cpu_, cnet->parameters(), {}), gopt(*gpu_, gnet->parameters(), {});
    double closs = 0, gloss = 0;
    for (int i = 0; i < 3; ++i) {
      cnet->set_noise_key(100 + i), gnet->set_noise_key(100 + i);
      closs = step(*cpu_, *cnet, copt, DType::f32, nullptr);
      gloss = step(*gpu_, *gnet, gopt, DType::f32, nullptr);
      // Same seeded weights, same batch: the same loss up to TF32 rounding.
      EXPECT_NEAR(gloss, closs, 1e-2 * closs) << "step " << i;
    }
    // The parameters stayed f32 and moved alike.
    const auto cp = cnet->parameters(), gp = gnet->parameters();
    ASSERT_EQ(cp.size(), gp.size());
    for (size_t i = 0; i < cp.size(); ++i) {
      EXPECT_EQ(gp[i].param->value.dtype(), DType::f32) << gp[i].name;
      EXPECT_TRUE(close(from_gpu(gp[i].param->value), from_cpu(cp[i].param->value), DType::f32))
          << gp[i].name;
    }
  }
}

class CudaTrainingPrecisionTest : public CudaTrainingTest,
                                  public ::testing::WithParamInterface<DType> {};

TEST_P(CudaTrainingPrecisionTest, LossFallsOnAFixedBatch) {
  const DType t = GetParam();
  make_batch();
  for (const char* model : {"resnet20", "resnext29_4x4d"}) {
    auto net = models::build_model(*gpu_, models::model_spec(model, 3, kClasses), 3);
    optim::Optimizer opt(*gpu_, net->parameters(), {.momentum = 0.9});
    optim::LossScaler scaler;
    optim::LossScaler* s = t == DType::f16 ? &scaler : nullptr;
    const double first = step(*gpu_, *net, opt, t, s);
    double last = first;
    for (int i = 0; i < 40; ++i) last = step(*gpu_, *net, opt, t, s);
    EXPECT_LT(last, 0.5 * first) << model << " " << dtype_name(t) << ": " << first << " -> "
                                 << last;
    for (const auto& p : net->parameters()) EXPECT_EQ(p.param->value.dtype(), DType::f32);
    // cuDNN writes low-precision weight gradients in the compute type: the network casts every
    // convolution's into f32 in one batch at the end of backward, and the forward its weights.
    const size_t convs = t == DType::f32 ? 0 : static_cast<size_t>(net->weighted_layers() - 1);
    EXPECT_EQ(net->batched_grad_casts(), convs) << model << " " << dtype_name(t);
    EXPECT_EQ(net->batched_casts(), convs) << model << " " << dtype_name(t);
    if (s) {
      EXPECT_LT(scaler.skipped_steps(), 10) << "fp16 overflowed too often";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaTrainingPrecisionTest,
                         ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace rn

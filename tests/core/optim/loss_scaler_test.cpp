// LossScaler (fp16 dynamic loss scaling): unscaling, the overflow check that skips a step, the
// back-off and the growth after clean steps; and the two backend ops it and gradient bucketing
// rely on (all_finite, copy_bytes), on the CPU backend.
#include "core/optim/loss_scaler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"

namespace rn::optim {
namespace {

class LossScalerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    be_ = make_cpu_backend(1);
    for (int i = 0; i < 2; ++i) {
      params_[i].shape = Shape{5};
      params_[i].grad = be_->upload(Tensor::from_vector(Shape{5}, {8, -16, 32, 0, 4}));
      named_.push_back({str_cat("p", i), &params_[i]});
    }
  }

  std::unique_ptr<Backend> be_;
  nn::Parameter params_[2];
  std::vector<nn::NamedParameter> named_;
};

TEST_F(LossScalerTest, FiniteGradientsAreUnscaled) {
  LossScaler s(LossScalerOptions{.initial_scale = 4.f});
  EXPECT_TRUE(s.unscale(*be_, named_));
  for (auto& p : params_)
    EXPECT_EQ(be_->download(p.grad).to_vector(), (std::vector<float>{2, -4, 8, 0, 1}));
  EXPECT_EQ(s.scale(), 4.f);
  EXPECT_EQ(s.skipped_steps(), 0);
}

TEST_F(LossScalerTest, AnOverflowSkipsTheStepAndHalvesTheScale) {
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    LossScaler s(LossScalerOptions{.initial_scale = 1024.f});
    Tensor g = be_->upload(Tensor::from_vector(Shape{5}, {1, 2, bad, 4, 5}));
    params_[1].grad = g;
    EXPECT_FALSE(s.unscale(*be_, named_)) << bad;
    EXPECT_EQ(s.scale(), 512.f);
    EXPECT_EQ(s.skipped_steps(), 1);
    // Gradients of a skipped step are left as they were (the step does not use them).
    EXPECT_EQ(be_->download(params_[0].grad).to_vector()[0], 8.f);
  }
}

TEST(LossScaler, GrowsAfterTheIntervalAndNeverDropsBelowTheMinimum) {
  LossScaler s(LossScalerOptions{.initial_scale = 8.f, .growth_interval = 3, .min_scale = 2.f});
  s.update(true), s.update(true);
  EXPECT_EQ(s.scale(), 8.f);
  s.update(true);
  EXPECT_EQ(s.scale(), 16.f);
  s.update(true), s.update(false);  // an overflow restarts the count
  EXPECT_EQ(s.scale(), 8.f);
  s.update(true), s.update(true);
  EXPECT_EQ(s.scale(), 8.f);
  for (int i = 0; i < 5; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 2.f);
  EXPECT_EQ(s.skipped_steps(), 6);
}

TEST(BackendOps, AllFiniteAndCopyBytesOnCpu) {
  auto be = make_cpu_backend(1);
  Tensor t = be->upload(Tensor::from_vector(Shape{4}, {1, 2, 3, 4}));
  EXPECT_TRUE(be->all_finite(t));
  t.data_as<float>()[2] = NAN;
  EXPECT_FALSE(be->all_finite(t));
  Tensor dst = be->upload(Tensor::from_vector(Shape{6}, {0, 0, 0, 0, 0, 0}));
  be->copy_bytes(t, sizeof(float), dst, 3 * sizeof(float), 2 * sizeof(float));
  const auto v = be->download(dst).to_vector();
  EXPECT_EQ(v[3], 2.f);
  EXPECT_TRUE(std::isnan(v[4]));
  EXPECT_EQ(v[5], 0.f);
  EXPECT_THROW(be->copy_bytes(t, 0, dst, 5 * sizeof(float), 2 * sizeof(float)), Error);
}

}  // namespace
}  // namespace rn::optim

// Tests of the learning-rate schedules against values worked out by hand.
#include "core/optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <utility>

#include "core/check.h"

namespace rn::optim {
namespace {

LrScheduleOptions options(ScheduleKind kind) {
  LrScheduleOptions o;
  o.kind = kind;
  o.base_lr = 1.0;  // powers of two below keep the expected values exact
  o.gamma = 0.5;
  o.total_epochs = 4;
  o.steps_per_epoch = 10;
  return o;
}

TEST(LrSchedule, ConstantIsTheBaseRateEverywhere) {
  LrSchedule s(options(ScheduleKind::constant));
  EXPECT_EQ(s.lr_at(0), 1.0);
  EXPECT_EQ(s.lr_at(39), 1.0);
  EXPECT_EQ(s.lr_at(1000), 1.0);
}

TEST(LrSchedule, MultistepDecaysAtEachMilestoneEpoch) {
  auto o = options(ScheduleKind::multistep);
  o.milestones = {2, 3};
  LrSchedule s(o);
  EXPECT_EQ(s.lr_at(0), 1.0);
  EXPECT_EQ(s.lr_at(19), 1.0);
  EXPECT_EQ(s.lr_at(20), 0.5);
  EXPECT_EQ(s.lr_at(29), 0.5);
  EXPECT_EQ(s.lr_at(30), 0.25);
  EXPECT_EQ(s.lr_at(500), 0.25);
}

TEST(LrSchedule, MultistepFractionalMilestonesFallOnExactSteps) {
  auto o = options(ScheduleKind::multistep);
  o.milestones = {0.3, 2.5};
  LrSchedule s(o);
  EXPECT_EQ(s.lr_at(2), 1.0);
  EXPECT_EQ(s.lr_at(3), 0.5);  // 3 / 10 steps = epoch 0.3 exactly
  EXPECT_EQ(s.lr_at(24), 0.5);
  EXPECT_EQ(s.lr_at(25), 0.25);

  // With 3 steps per epoch, epoch 2.5 lies between steps 7 and 8: the decay starts at 8.
  o.steps_per_epoch = 3;
  LrSchedule t(o);
  EXPECT_EQ(t.lr_at(7), 0.5);
  EXPECT_EQ(t.lr_at(8), 0.25);
}

TEST(LrSchedule, MultistepWithPaperSettings) {
  // He et al. 2015: 0.1, divided by 10 at 32k and 48k of 64k iterations.
  LrScheduleOptions o{.kind = ScheduleKind::multistep,
                      .base_lr = 0.1,
                      .milestones = {32, 48},
                      .gamma = 0.1,
                      .warmup_epochs = 0,
                      .total_epochs = 64,
                      .steps_per_epoch = 1000};
  LrSchedule s(o);
  EXPECT_DOUBLE_EQ(s.lr_at(31999), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(32000), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(48000), 0.001);
  EXPECT_DOUBLE_EQ(s.lr_at(63999), 0.001);
}

TEST(LrSchedule, CosineFollowsHalfACosineToZero) {
  LrSchedule s(options(ScheduleKind::cosine));  // 40 steps in all
  EXPECT_EQ(s.total_steps(), 40);
  EXPECT_EQ(s.lr_at(0), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.5 * (1 + std::sqrt(0.5)));
  EXPECT_EQ(s.lr_at(20), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(30), 0.5 * (1 - std::sqrt(0.5)));
  EXPECT_EQ(s.lr_at(40), 0.0);
  EXPECT_EQ(s.lr_at(100), 0.0);
  EXPECT_GT(s.lr_at(39), 0.0);
}

TEST(LrSchedule, WarmupRampsLinearlyThenHandsOver) {
  auto o = options(ScheduleKind::constant);
  o.warmup_epochs = 0.4;  // 4 steps
  LrSchedule s(o);
  EXPECT_EQ(s.warmup_steps(), 4);
  EXPECT_EQ(s.lr_at(0), 0.25);
  EXPECT_EQ(s.lr_at(1), 0.5);
  EXPECT_EQ(s.lr_at(2), 0.75);
  EXPECT_EQ(s.lr_at(3), 1.0);
  EXPECT_EQ(s.lr_at(4), 1.0);
}

TEST(LrSchedule, WarmupMultipliesTheUnderlyingSchedule) {
  auto o = options(ScheduleKind::multistep);
  o.milestones = {0.2};  // decays at step 2, inside the warm-up
  o.warmup_epochs = 0.4;
  LrSchedule s(o);
  EXPECT_EQ(s.lr_at(0), 0.25);
  EXPECT_EQ(s.lr_at(1), 0.5);
  EXPECT_EQ(s.lr_at(2), 0.5 * 0.75);
  EXPECT_EQ(s.lr_at(3), 0.5);
  EXPECT_EQ(s.lr_at(4), 0.5);

  auto c = options(ScheduleKind::cosine);
  c.warmup_epochs = 2;  // 20 steps; step 19 is the last ramp step
  LrSchedule cs(c);
  EXPECT_DOUBLE_EQ(cs.lr_at(9), 0.5 * (1 + std::cos(std::numbers::pi * 9 / 40)) * 10 / 20);
  EXPECT_DOUBLE_EQ(cs.lr_at(19), 0.5 * (1 + std::cos(std::numbers::pi * 19 / 40)));
}

TEST(LrSchedule, FractionalWarmupRoundsUpToWholeSteps) {
  auto o = options(ScheduleKind::constant);
  o.steps_per_epoch = 3;
  o.warmup_epochs = 0.5;  // 1.5 steps: steps 0 and 1 are ramp steps
  LrSchedule s(o);
  EXPECT_EQ(s.warmup_steps(), 2);
  EXPECT_EQ(s.lr_at(0), 0.5);
  EXPECT_EQ(s.lr_at(1), 1.0);
}

TEST(LrSchedule, RejectsBadOptions) {
  auto o = options(ScheduleKind::multistep);
  o.milestones = {3, 2};
  EXPECT_THROW(LrSchedule{o}, Error);
  o = options(ScheduleKind::constant);
  o.steps_per_epoch = 0;
  EXPECT_THROW(LrSchedule{o}, Error);
  o = options(ScheduleKind::constant);
  o.base_lr = 0;
  EXPECT_THROW(LrSchedule{o}, Error);
  EXPECT_THROW(LrSchedule(options(ScheduleKind::constant)).lr_at(-1), Error);
}

}  // namespace
}  // namespace rn::optim

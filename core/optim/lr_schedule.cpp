// Learning-rate schedules: the step -> learning-rate formulas and their validation.
#include "core/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>

#include "core/check.h"

namespace rn::optim {
namespace {

// The first step whose fractional epoch (step / steps_per_epoch) reaches `epoch`. Comparing
// by division rather than multiplying `epoch` out keeps exact boundaries exact: a milestone
// written as 0.3 with 10 steps per epoch falls on step 3, not on step 4 through rounding.
int64_t first_step_at_epoch(double epoch, int64_t steps_per_epoch) {
  const double spe = static_cast<double>(steps_per_epoch);
  auto reached = [&](int64_t s) { return static_cast<double>(s) / spe >= epoch; };
  int64_t step = static_cast<int64_t>(std::ceil(epoch * spe));
  if (step < 0) step = 0;
  while (step > 0 && reached(step - 1)) --step;
  while (!reached(step)) ++step;
  return step;
}

}  // namespace

LrSchedule::LrSchedule(LrScheduleOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  RN_CHECK(std::isfinite(o.base_lr) && o.base_lr > 0,
           "[lr_schedule] base_lr must be positive, got " << o.base_lr);
  RN_CHECK(o.steps_per_epoch >= 1,
           "[lr_schedule] steps_per_epoch must be >= 1, got " << o.steps_per_epoch);
  RN_CHECK(o.total_epochs >= 1, "[lr_schedule] total_epochs must be >= 1, got " << o.total_epochs);
  RN_CHECK(std::isfinite(o.warmup_epochs) && o.warmup_epochs >= 0,
           "[lr_schedule] warmup_epochs must be >= 0, got " << o.warmup_epochs);
  total_steps_ = o.total_epochs * o.steps_per_epoch;
  warmup_steps_ = first_step_at_epoch(o.warmup_epochs, o.steps_per_epoch);
  if (o.kind == ScheduleKind::multistep) {
    RN_CHECK(std::isfinite(o.gamma) && o.gamma > 0,
             "[lr_schedule] gamma must be positive, got " << o.gamma);
    double previous = -1;
    for (double m : o.milestones) {
      RN_CHECK(std::isfinite(m) && m >= 0 && m > previous,
               "[lr_schedule] milestones must be non-negative and increasing, got " << m);
      previous = m;
      milestone_steps_.push_back(first_step_at_epoch(m, o.steps_per_epoch));
    }
  }
}

double LrSchedule::base_schedule_at(int64_t step) const {
  const auto& o = options_;
  if (o.kind == ScheduleKind::multistep) {
    double lr = o.base_lr;
    for (int64_t boundary : milestone_steps_) {
      if (step < boundary) break;
      lr *= o.gamma;
    }
    return lr;
  }
  if (o.kind == ScheduleKind::cosine) {
    // Past the planned end (e.g. a run extended by hand) the rate stays at the curve's end, 0.
    const double t = static_cast<double>(std::min(step, total_steps_));
    return o.base_lr * 0.5 * (1.0 + std::cos(std::numbers::pi * t / total_steps_));
  }
  return o.base_lr;
}

double LrSchedule::lr_at(int64_t step) const {
  RN_CHECK(step >= 0, "[lr_schedule] step must be >= 0, got " << step);
  const double lr = base_schedule_at(step);
  // Goyal et al. 2017: a linear ramp over the first steps avoids the early instability of a
  // large rate; step 0 gets 1/W of the rate and step W-1 the full rate, then the ramp ends.
  if (step < warmup_steps_) {
    return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps_);
  }
  return lr;
}

}  // namespace rn::optim

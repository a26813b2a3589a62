// Learning-rate schedules (multistep, cosine, constant) with optional linear warm-up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rn::optim {

enum class ScheduleKind {
  multistep,  // base_lr times gamma at each milestone
  cosine,     // half a cosine from base_lr to 0 over the run
  constant,
};

struct LrScheduleOptions {
  ScheduleKind kind = ScheduleKind::constant;
  double base_lr = 0.1;
  std::vector<double> milestones;  // multistep: epochs (may be fractional), increasing
  double gamma = 0.1;              // multistep: factor applied at each milestone
  double warmup_epochs = 0;        // linear ramp from base_lr / warmup_steps to base_lr
  int64_t total_epochs = 1;        // cosine: the curve reaches 0 after this many epochs
  int64_t steps_per_epoch = 1;
};

// The learning rate as a pure function of the global step, so that a resumed run (on any
// number of ranks) only needs the step to continue the schedule exactly.
class LrSchedule {
 public:
  explicit LrSchedule(LrScheduleOptions options);

  double lr_at(int64_t step) const;

  // Steps over which the warm-up ramp runs (0 when there is none).
  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }
  const LrScheduleOptions& options() const { return options_; }

 private:
  double base_schedule_at(int64_t step) const;

  LrScheduleOptions options_;
  std::vector<int64_t> milestone_steps_;  // first step at or past each milestone epoch
  int64_t warmup_steps_ = 0;
  int64_t total_steps_ = 0;
};

}  // namespace rn::optim

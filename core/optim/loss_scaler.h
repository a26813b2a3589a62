// Dynamic loss scaling for fp16 training (as PyTorch's GradScaler): the loss gradient is
// multiplied by a large factor so that small gradients survive fp16's narrow range; a step whose
// gradients overflow is skipped and the factor halved, and after a run of clean steps it grows.
#pragma once

#include <vector>

#include "core/nn/module.h"

namespace rn::optim {

struct LossScalerOptions {
  float initial_scale = 65536.f;  // 2^16
  float growth = 2.f;
  float backoff = 0.5f;
  int growth_interval = 2000;  // clean steps before the scale grows
  float min_scale = 1.f;
};

class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions o = {}) : o_(o), scale_(o.initial_scale) {}
  float scale() const { return scale_; }
  // Divides every gradient by the scale and checks it; returns whether all are finite (the step
  // may go ahead) and updates the scale for the next step.
  bool unscale(Backend& backend, const std::vector<nn::NamedParameter>& params);
  // The scale's bookkeeping alone, given whether this step's gradients were finite.
  void update(bool finite);
  int64_t skipped_steps() const { return skipped_; }
  void set_scale(float s) { scale_ = s; }

 private:
  LossScalerOptions o_;
  float scale_;
  int clean_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace rn::optim

// LossScaler: unscaling, the overflow check, and the scale's growth and back-off.
#include "core/optim/loss_scaler.h"

#include <algorithm>

namespace rn::optim {

bool LossScaler::unscale(Backend& backend, const std::vector<nn::NamedParameter>& params) {
  bool finite = true;
  // Checked before unscaling: an inf stays inf, and a NaN anywhere condemns the whole step.
  for (const auto& np : params) {
    const Tensor& g = np.param->grad;
    if (g.defined() && !backend.all_finite(g)) {
      finite = false;
      break;
    }
  }
  if (finite) {
    const float inv = 1.f / scale_;
    for (const auto& np : params)
      if (np.param->grad.defined()) backend.scale(np.param->grad, inv);
  }
  update(finite);
  return finite;
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ = std::max(o_.min_scale, scale_ * o_.backoff);
    clean_steps_ = 0;
    ++skipped_;
    return;
  }
  if (++clean_steps_ >= o_.growth_interval) {
    scale_ *= o_.growth;
    clean_steps_ = 0;
  }
}

}  // namespace rn::optim

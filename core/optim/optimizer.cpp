// Optimizer::step: one backend update per parameter tensor.
#include "core/optim/optimizer.h"

namespace rn::optim {

Optimizer::Optimizer(Backend& backend, std::vector<nn::NamedParameter> params,
                     OptimizerOptions options)
    : backend_(backend), params_(std::move(params)), options_(options) {}

void Optimizer::step(double lr) {
  for (auto& np : params_) {
    nn::Parameter& p = *np.param;
    if (!p.grad.defined()) continue;  // not reached by this step's backward
    const bool decay = options_.decay_bn_and_bias || !p.no_decay;
    const float wd = decay ? static_cast<float>(options_.weight_decay) : 0.f;
    if (options_.kind == OptimizerKind::lars) {
      // LARS leaves BN parameters and biases to plain SGD, as You et al.
      if (p.no_decay) {
        backend_.sgd_update(
            SgdParams{static_cast<float>(lr), static_cast<float>(options_.momentum), wd, false},
            p.value, p.grad, p.momentum);
      } else {
        backend_.lars_update(
            LarsParams{static_cast<float>(lr), static_cast<float>(options_.momentum), wd,
                       static_cast<float>(options_.lars_eta)},
            p.value, p.grad, p.momentum);
      }
      continue;
    }
    backend_.sgd_update(SgdParams{static_cast<float>(lr), static_cast<float>(options_.momentum), wd,
                                  options_.nesterov},
                        p.value, p.grad, p.momentum);
  }
  for (auto& np : params_) np.param->grad = Tensor();
}

}  // namespace rn::optim

// Optimizer::step: the SGD updates in two batches (with and without weight decay), LARS per
// tensor (its trust ratio is per tensor).
#include "core/optim/optimizer.h"

namespace rn::optim {

Optimizer::Optimizer(Backend& backend, std::vector<nn::NamedParameter> params,
                     OptimizerOptions options)
    : backend_(backend), params_(std::move(params)), options_(options) {}

void Optimizer::step(double lr) {
  decayed_.clear(), undecayed_.clear();
  const auto f = [](double v) { return static_cast<float>(v); };
  const bool lars = options_.kind == OptimizerKind::lars;
  for (auto& np : params_) {
    nn::Parameter& p = *np.param;
    if (!p.grad.defined()) continue;  // not reached by this step's backward
    const bool decay = options_.decay_bn_and_bias || !p.no_decay;
    if (lars && !p.no_decay) {
      backend_.lars_update(
          LarsParams{f(lr), f(options_.momentum), f(options_.weight_decay), f(options_.lars_eta)},
          p.value, p.grad, p.momentum);
      continue;
    }
    // LARS leaves BN parameters and biases to plain SGD (without Nesterov), as You et al.
    (decay ? decayed_ : undecayed_).push_back({&p.value, &p.grad, &p.momentum});
  }
  const bool nesterov = options_.nesterov && !lars;
  if (!decayed_.empty())
    backend_.sgd_update_many(
        SgdParams{f(lr), f(options_.momentum), f(options_.weight_decay), nesterov}, decayed_);
  if (!undecayed_.empty())
    backend_.sgd_update_many(SgdParams{f(lr), f(options_.momentum), 0.f, nesterov}, undecayed_);
  for (auto& np : params_) np.param->grad = Tensor();
}

}  // namespace rn::optim

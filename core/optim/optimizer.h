// The optimizer over a network's parameters: SGD (momentum, Nesterov, weight decay, with BN
// parameters and biases optionally exempt from decay) or LARS, updating in place on the backend.
#pragma once

#include <string>
#include <vector>

#include "core/nn/module.h"

namespace rn::optim {

enum class OptimizerKind { sgd, lars };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::sgd;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  bool decay_bn_and_bias = true;  // false: no weight decay on batch-norm parameters and biases
  double lars_eta = 0.001;
};

class Optimizer {
 public:
  Optimizer(Backend& backend, std::vector<nn::NamedParameter> params, OptimizerOptions options);
  void step(double lr);
  const std::vector<nn::NamedParameter>& parameters() const { return params_; }
  const OptimizerOptions& options() const { return options_; }

 private:
  Backend& backend_;
  std::vector<nn::NamedParameter> params_;
  OptimizerOptions options_;
  // The tensors of one step's SGD updates, with and without weight decay (kept: their capacity
  // is reused, a step allocates nothing).
  std::vector<Backend::UpdateTensors> decayed_, undecayed_;
};

}  // namespace rn::optim

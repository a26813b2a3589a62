// A network's inference computation as a graph of ops: every Module describes what its eval-mode
// forward computes (Module::describe), in torchvision's terms (N x C x H x W, parameters by their
// state_dict names), to a GraphBuilder. `resnet export` implements one that writes ONNX.
#pragma once

#include <string>

#include "core/backend/ops.h"
#include "core/tensor.h"

namespace rn::nn {

// A value of the graph: the builder's handle for it and its shape (N x C x H x W, or N x F after
// the classifier; N may be 0 for "any batch").
struct GraphValue {
  int id = -1;
  Shape shape;
};

// A parameter or buffer of a module as the checkpoint names it ("layer1.0.bn1.running_var") and
// its tensor, in whatever layout and device the backend keeps it.
struct GraphTensor {
  std::string name;
  const Tensor* tensor = nullptr;
};

// Receives a network's ops in the order its forward runs them. Each call names its op (the
// module's path, as parameters are named) and returns the op's output.
class GraphBuilder {
 public:
  virtual ~GraphBuilder() = default;
  virtual GraphValue conv(const std::string& name, const GraphValue& x, const ConvParams& p,
                          const GraphTensor& weight, const GraphTensor* bias) = 0;
  // Eval-mode batch norm: (x - mean) / sqrt(var + eps) * gamma + beta, per channel.
  virtual GraphValue batch_norm(const std::string& name, const GraphValue& x,
                                const GraphTensor& gamma, const GraphTensor& beta,
                                const GraphTensor& mean, const GraphTensor& var, double eps) = 0;
  virtual GraphValue relu(const std::string& name, const GraphValue& x) = 0;
  virtual GraphValue sigmoid(const std::string& name, const GraphValue& x) = 0;
  virtual GraphValue scale(const std::string& name, const GraphValue& x, float factor) = 0;
  virtual GraphValue add(const std::string& name, const GraphValue& a, const GraphValue& b) = 0;
  virtual GraphValue mul(const std::string& name, const GraphValue& a, const GraphValue& b) = 0;
  // 1 - x.
  virtual GraphValue one_minus(const std::string& name, const GraphValue& x) = 0;
  virtual GraphValue pool(const std::string& name, const GraphValue& x, const PoolParams& p) = 0;
  // x (N x F, or N x F x 1 x 1) times weight^T (+ bias).
  virtual GraphValue linear(const std::string& name, const GraphValue& x, const GraphTensor& weight,
                            const GraphTensor* bias) = 0;
  // Option A: x[:, :, ::stride, ::stride], zero channels added to reach `out_channels`, half
  // (rounded down) before the input's channels and the rest after.
  virtual GraphValue pad_shortcut(const std::string& name, const GraphValue& x, int out_channels,
                                  int stride) = 0;
};

}  // namespace rn::nn

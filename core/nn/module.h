// Module: a layer with explicit forward and backward. Forward keeps what backward needs while in
// training mode; backward consumes it, writes parameter gradients and returns the input gradient.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/nn/graph.h"

namespace rn::nn {

// A trainable tensor. `shape` is the canonical (torchvision) shape; value, grad and momentum
// share whatever layout the backend prefers for it. `grad` holds a step's gradient from backward
// until the optimizer's update, which hands it back to the pool (as PyTorch's
// zero_grad(set_to_none=True)), so gradients and the forward's activations never peak together.
struct Parameter {
  Shape shape;
  Tensor value, grad, momentum;
  bool no_decay = false;  // batch-norm parameters and biases may be exempt from weight decay
  // Called as soon as `grad` holds this step's final gradient, or `low_grad` does (then still to
  // be cast into `grad`); gradient bucketing hooks here.
  std::function<void(Parameter&)> on_grad_ready;
  // Where backward takes `grad` from when set, for a given layout; an undefined result declines
  // it and the backend's pool serves instead. The gradient bucketer lends slices of its
  // all-reduce buffers this way, so gradients are summed where backward writes them.
  std::function<Tensor(const TensorDesc&)> grad_source;
  // Where backward left this step's gradient in the compute type (bf16 / f16), `grad` being the
  // f32 buffer it is still to be cast into: casts wait so that many go in one launch
  // (cast_pending_grads), by the gradient bucketer for a bucket before it is summed, or by the
  // network for what is left at the end of backward.
  Tensor low_grad;
  void mark_ready() {
    if (on_grad_ready) on_grad_ready(*this);
  }
};

// Casts every pending `low_grad` of `params` into its `grad` together (Backend::cast_many) and
// drops it; returns how many there were.
size_t cast_pending_grads(Backend& backend, const std::vector<Parameter*>& params);

// Sees a ReLU's output (see Module::set_relu_tap).
using ReluTap = std::function<void(const Tensor& relu_output)>;

// A gradient that is still a sum of two tensors (a residual branch's and its shortcut's): the
// module receiving it may fold the addition into its own first pass. `b` may be undefined.
struct GradSum {
  Tensor a, b;
};

struct NamedParameter {
  std::string name;
  Parameter* param;
};

// Non-trainable state saved with the model (batch-norm running statistics).
struct NamedBuffer {
  std::string name;
  Tensor* tensor;
};

class Module {
 public:
  explicit Module(Backend& backend) : backend_(backend) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  Tensor forward(const Tensor& x);
  Tensor backward(const Tensor& dy);
  GradSum backward_sum(const GradSum& dy);

  virtual void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  // The first layer of a network needs no input gradient; skipping it saves a whole pass.
  virtual void set_needs_input_grad(bool on) { needs_input_grad_ = on; }

  virtual void collect(const std::string& prefix, std::vector<NamedParameter>& params,
                       std::vector<NamedBuffer>& buffers) {}
  // Calls `tap` with the output of every ReLU that this module and those under it run in a
  // training forward, in the order they run (fused into a batch norm or a residual sum, or
  // standalone); null turns it off. `resnet step --relu-outputs` writes them, so that a reference
  // can differentiate on the same side of each ReLU's kink.
  void set_relu_tap(const ReluTap& tap);
  // Calls `f` on each direct child module (containers override it).
  virtual void for_each_child(const std::function<void(Module&)>& f) {}
  virtual Shape output_shape(const Shape& in) const = 0;
  // Multiply-adds of one forward pass of one sample of shape `in` (C x H x W, batch 1).
  virtual int64_t macs(const Shape& in) const { return 0; }
  // Convolution and linear layers inside (the "depth" of a network counts these).
  virtual int weighted_layers() const { return 0; }
  // Adds what this module's eval-mode forward computes on `x` to `b`, the ops and parameters
  // named under `prefix` as collect() names the parameters; returns the output.
  virtual GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) = 0;

 protected:
  virtual Tensor forward_impl(const Tensor& x) = 0;
  virtual Tensor backward_impl(const Tensor& dy) = 0;
  // Modules that can fuse an incoming sum override this; the default adds first.
  virtual GradSum backward_sum_impl(const GradSum& dy) {
    return {backward_impl(materialize(dy)), {}};
  }
  void tap_relu(const Tensor& relu_output) const {
    if (relu_tap_) relu_tap_(relu_output);
  }
  // a + b as one tensor (a itself when b is undefined).
  Tensor materialize(const GradSum& g);
  static std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }
  // `t` in layout `want`: itself when it already is, else a reordered copy.
  Tensor as_desc(const Tensor& t, const TensorDesc& want);
  // A fresh parameter of canonical `shape` from host values, on the backend.
  Parameter make_parameter(const Shape& shape, const std::vector<float>& values, bool no_decay);
  // Moves a parameter (value and optimizer state) into the layout `want`.
  void relayout(Parameter& p, const TensorDesc& want);
  // The parameter's gradient buffer for backward to overwrite, taken from the pool if it has none.
  Tensor& grad_buffer(Parameter& p);

  Backend& backend_;
  bool training_ = true;
  bool needs_input_grad_ = true;

 private:
  ReluTap relu_tap_;
};

// Op objects planned once per input layout and mode (training / inference).
template <typename Op>
class PlanCache {
 public:
  template <typename Make>
  Op& get(const TensorDesc& x, bool training, Make make) {
    for (auto& e : entries_)
      if (e.training == training && e.desc.same_layout(x)) return *e.op;
    entries_.push_back(Entry{x, training, make()});
    return *entries_.back().op;
  }

 private:
  struct Entry {
    TensorDesc desc;
    bool training;
    std::unique_ptr<Op> op;
  };
  std::vector<Entry> entries_;
};

}  // namespace rn::nn

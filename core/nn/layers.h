// The basic layers: convolution, batch norm (optionally fused with ReLU), ReLU, sigmoid, scaling,
// dropout, pooling, linear, identity, the zero-padding shortcut (option A), and a named sequence.
#pragma once

#include <memory>
#include <utility>

#include "core/nn/init.h"
#include "core/nn/module.h"

namespace rn::nn {

class Conv2d final : public Module {
 public:
  // Weights ~ N(0, 2 / fan_out), fan_out = out_channels * k * k (torchvision's ResNet init).
  // A bias (p.bias) starts at `bias_init` (a gate's b_g), else at 0.
  Conv2d(Backend& be, int in_channels, const ConvParams& p, InitRng& rng, float bias_init = 0.f);
  void collect(const std::string& prefix, std::vector<NamedParameter>& params,
               std::vector<NamedBuffer>& buffers) override;
  Shape output_shape(const Shape& in) const override;
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
  int64_t macs(const Shape& in) const override;
  int weighted_layers() const override { return 1; }
  const ConvParams& params() const { return p_; }
  // Mixed precision, batched: adds the (f32 master, low-precision copy) pair that the next
  // training forward needs to `casts` when this conv knows it (its last forward was a training
  // one in low precision, and its master is still in that plan's layout). The caller casts the
  // pairs together (Backend::cast_many) right before that forward, which then uses the copy
  // instead of casting its own; any other forward casts its own. False when nothing was added.
  bool prepare_low_weight(std::vector<Backend::CastPair>& casts);
  // With `on`, a backward whose weight gradient comes in the compute type leaves its cast to f32
  // pending (Parameter::low_grad) for the caller to cast with others (cast_pending_grads);
  // otherwise it casts at once.
  void set_defer_grad_cast(bool on) { defer_grad_cast_ = on; }
  Parameter& weight() { return weight_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  // The f32 master weights' desc for an op that takes weights `wd`.
  TensorDesc master_desc(const TensorDesc& wd) const;

  int in_channels_;
  ConvParams p_;
  Parameter weight_, bias_;
  PlanCache<ConvOp> plans_;
  ConvOp* op_ = nullptr;  // the plan of the last forward
  bool op_training_ = false;
  Tensor saved_x_;
  // Mixed precision: this step's low-precision copy of the f32 master weights, and the plan it
  // was prepared for by prepare_low_weight (null once a forward has used or ignored it).
  Tensor low_weight_;
  const ConvOp* prepared_for_ = nullptr;
  bool defer_grad_cast_ = false;
};

// Sums per-channel statistics in place across the replicas of a data-parallel job.
using StatsAllReduce = std::function<void(double* data, size_t count)>;

class BatchNorm2d final : public Module {
 public:
  BatchNorm2d(Backend& be, int channels, bool fuse_relu, bool zero_gamma = false,
              double momentum = 0.1, double eps = 1e-5);
  void collect(const std::string& prefix, std::vector<NamedParameter>& params,
               std::vector<NamedBuffer>& buffers) override;
  Shape output_shape(const Shape& in) const override { return in; }
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
  int64_t num_batches_tracked() const { return num_batches_tracked_; }
  void set_num_batches_tracked(int64_t n) { num_batches_tracked_ = n; }
  // Cross-replica ("sync") batch norm: training statistics over the whole global batch, summed
  // through `all_reduce` in forward (mean, variance) and backward (the two gradient sums); null
  // goes back to this replica's batch alone. Every replica must run the same layers in order.
  void set_sync(StatsAllReduce all_reduce) { sync_ = std::move(all_reduce); }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int channels_;
  BatchNormParams p_;
  double momentum_;
  Parameter gamma_, beta_;
  Tensor running_mean_, running_var_, batch_mean_, batch_var_;
  int64_t num_batches_tracked_ = 0;
  PlanCache<BatchNormOp> plans_;
  BatchNormOp* op_ = nullptr;
  Tensor saved_x_, saved_ws_;
  // Cross-replica mode: an unfused plan for the local statistics and backward, the output kept
  // for ReLU's gradient, and the global sample count.
  Tensor forward_sync(const Tensor& x, Tensor& y);
  Tensor backward_sync(const Tensor& dy);
  StatsAllReduce sync_;
  PlanCache<BatchNormOp> unfused_plans_;
  BatchNormOp* unfused_op_ = nullptr;
  Tensor saved_y_;
  double global_count_ = 0;
};

// Switches every BatchNorm2d under `root` to cross-replica statistics (null: back to local).
void set_batch_norm_sync(Module& root, const StatsAllReduce& all_reduce);

class ReLU final : public Module {
 public:
  using Module::Module;
  Shape output_shape(const Shape& in) const override { return in; }
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  Tensor saved_y_;
};

class Sigmoid final : public Module {
 public:
  using Module::Module;
  Shape output_shape(const Shape& in) const override { return in; }
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  Tensor saved_y_;
};

// y = factor * x: constant scaling of a shortcut or a branch (He et al. 2016, Fig. 2b).
class Scale final : public Module {
 public:
  Scale(Backend& be, float factor) : Module(be), factor_(factor) {}
  Shape output_shape(const Shape& in) const override { return in; }
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
  float factor() const { return factor_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  float factor_;
};

// Inverted dropout with probability p in training, identity in inference. The mask is a pure
// function of the key set before each training step (set_key) and the element, so backward
// draws it again, and a resumed run draws the masks it would have drawn.
class Dropout final : public Module {
 public:
  Dropout(Backend& be, float p);
  Shape output_shape(const Shape& in) const override { return in; }
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
  void set_key(uint64_t key) { key_ = key; }
  float p() const { return p_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  float p_;
  uint64_t key_ = 0;
  TensorDesc saved_x_desc_;
};

class Pool2d final : public Module {
 public:
  Pool2d(Backend& be, const PoolParams& p) : Module(be), p_(p) {}
  Shape output_shape(const Shape& in) const override;
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  PoolParams p_;
  PlanCache<PoolOp> plans_;
  PoolOp* op_ = nullptr;
  TensorDesc saved_x_desc_;
  Tensor saved_ws_;
};

class Linear final : public Module {
 public:
  // PyTorch's default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
  Linear(Backend& be, int in_features, int out_features, InitRng& rng, bool bias = true);
  void collect(const std::string& prefix, std::vector<NamedParameter>& params,
               std::vector<NamedBuffer>& buffers) override;
  Shape output_shape(const Shape& in) const override;
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
  int64_t macs(const Shape& in) const override {
    return static_cast<int64_t>(in_features_) * out_features_;
  }
  int weighted_layers() const override { return 1; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int in_features_, out_features_;
  bool has_bias_;
  Parameter weight_, bias_;
  std::unique_ptr<LinearOp> op_;
  TensorDesc op_desc_;
  Tensor saved_x_;
  TensorDesc saved_x_desc_;  // the input's own desc (bf16 / f16 under mixed precision)
};

class Identity final : public Module {
 public:
  using Module::Module;
  Shape output_shape(const Shape& in) const override { return in; }
  GraphValue describe(GraphBuilder&, const std::string&, const GraphValue& x) override { return x; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return x; }
  Tensor backward_impl(const Tensor& dy) override { return dy; }
};

// Shortcut option A: subsample by `stride` and zero-pad the channels up to `out_channels`.
class PadShortcut final : public Module {
 public:
  PadShortcut(Backend& be, int out_channels, int stride)
      : Module(be), out_channels_(out_channels), stride_(stride) {}
  Shape output_shape(const Shape& in) const override;
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int out_channels_, stride_;
  TensorDesc saved_x_desc_;
};

// Children run in order; each is named ("conv1", "0", ...) for parameter names.
class Sequential final : public Module {
 public:
  using Module::Module;
  Module& add(std::string name, std::unique_ptr<Module> m);
  template <typename M, typename... Args>
  M& emplace(std::string name, Args&&... args) {
    return static_cast<M&>(
        add(std::move(name), std::make_unique<M>(backend_, std::forward<Args>(args)...)));
  }
  size_t size() const { return children_.size(); }
  Module& at(size_t i) { return *children_[i].second; }
  void set_training(bool on) override;
  void set_needs_input_grad(bool on) override;
  void collect(const std::string& prefix, std::vector<NamedParameter>& params,
               std::vector<NamedBuffer>& buffers) override;
  void for_each_child(const std::function<void(Module&)>& f) override {
    for (auto& c : children_) f(*c.second);
  }
  Shape output_shape(const Shape& in) const override;
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
  int64_t macs(const Shape& in) const override;
  int weighted_layers() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override {
    return materialize(backward_sum_impl({dy, {}}));
  }
  GradSum backward_sum_impl(const GradSum& dy) override;

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

}  // namespace rn::nn

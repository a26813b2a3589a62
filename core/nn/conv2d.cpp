// Conv2d: weights in the layout the training convolution prefers, gradients marked ready at once.
#include <cmath>

#include "core/check.h"
#include "core/nn/layers.h"

namespace rn::nn {

Conv2d::Conv2d(Backend& be, int in_channels, const ConvParams& p, InitRng& rng, float bias_init)
    : Module(be), in_channels_(in_channels), p_(p) {
  RN_CHECK(in_channels % p.groups == 0 && p.out_channels % p.groups == 0,
           "[conv] channels " << in_channels << " -> " << p.out_channels
                              << " not divisible by groups " << p.groups);
  const Shape ws{p.out_channels, in_channels / p.groups, p.kernel, p.kernel};
  const double fan_out = static_cast<double>(p.out_channels) * p.kernel * p.kernel;
  weight_ = make_parameter(ws, rng.normal_vector(ws.numel(), std::sqrt(2.0 / fan_out)), false);
  if (p.bias)
    bias_ =
        make_parameter(Shape{p.out_channels}, std::vector<float>(p.out_channels, bias_init), true);
}

void Conv2d::collect(const std::string& prefix, std::vector<NamedParameter>& params,
                     std::vector<NamedBuffer>&) {
  params.push_back({join(prefix, "weight"), &weight_});
  if (p_.bias) params.push_back({join(prefix, "bias"), &bias_});
}

Shape Conv2d::output_shape(const Shape& in) const {
  return conv_output_shape(p_, in);
}

GraphValue Conv2d::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  const GraphTensor bias{join(prefix, "bias"), &bias_.value};
  return b.conv(prefix, x, p_, {join(prefix, "weight"), &weight_.value}, p_.bias ? &bias : nullptr);
}

int64_t Conv2d::macs(const Shape& in) const {
  const Shape out = output_shape(in);
  return out[1] * out[2] * out[3] * (in_channels_ / p_.groups) * p_.kernel * p_.kernel;
}

TensorDesc Conv2d::master_desc(const TensorDesc& wd) const {
  // Mixed precision: the parameter stays f32 (the master copy the optimizer updates) in the
  // layout family the op wants, and the op gets a low-precision cast of it each step.
  if (wd.dtype == DType::f32) return wd;
  TensorDesc master = wd;
  master.dtype = DType::f32;
  master.layout = backend_.layout_like(master, wd.shape);
  return master;
}

Tensor Conv2d::forward_impl(const Tensor& x) {
  RN_CHECK(x.shape().rank() == 4 && x.shape()[1] == in_channels_,
           "[conv] expects " << in_channels_ << " input channels, got " << x.shape().str());
  op_ =
      &plans_.get(x.desc(), training_, [&] { return backend_.make_conv(p_, x.desc(), training_); });
  op_training_ = training_;
  const TensorDesc& wd = op_->weight_desc();
  const TensorDesc master = master_desc(wd);
  // The training plan decides the weights' layout; an inference plan that prefers another one
  // reorders them on the fly instead of moving the optimizer state back and forth.
  if (training_ || weight_.value.is_plain()) relayout(weight_, master);
  const Tensor* w = &weight_.value;
  if (wd.dtype != DType::f32) {
    // A copy prepared for another plan (the input's shape changed) is cast again.
    if (!(training_ && prepared_for_ == op_)) {
      low_weight_ = backend_.allocate(wd);
      backend_.cast(weight_.value, low_weight_);
    }
    w = &low_weight_;
  }
  prepared_for_ = nullptr;
  Tensor y = backend_.allocate(op_->output_desc());
  op_->forward(x, *w, p_.bias ? &bias_.value : nullptr, y);
  if (!training_) low_weight_ = Tensor();
  if (training_) saved_x_ = x;
  return y;
}

bool Conv2d::prepare_low_weight(std::vector<Backend::CastPair>& casts) {
  prepared_for_ = nullptr;
  if (!training_ || !op_ || !op_training_ || op_->weight_desc().dtype == DType::f32) return false;
  const TensorDesc& wd = op_->weight_desc();
  // A master that moved to another layout (a checkpoint's load, a broadcast) is laid out again
  // by the forward, which then casts it itself.
  if (!weight_.value.desc().same_layout(master_desc(wd))) return false;
  low_weight_ = backend_.allocate(wd);
  casts.push_back({&weight_.value, &low_weight_});
  prepared_for_ = op_;
  return true;
}

Tensor Conv2d::backward_impl(const Tensor& dy) {
  RN_CHECK(saved_x_.defined(), "[conv] backward without a training forward");
  if (low_weight_.defined() && !op_->weight_grad_f32()) {
    // The gradient comes in the compute type and is kept in f32, as its master weight.
    Tensor dw = backend_.allocate(low_weight_.desc());
    op_->backward_weights(saved_x_, dy, dw, p_.bias ? &grad_buffer(bias_) : nullptr);
    Tensor& g = grad_buffer(weight_);
    if (defer_grad_cast_)
      weight_.low_grad = dw;
    else
      backend_.cast(dw, g);
  } else {
    op_->backward_weights(saved_x_, dy, grad_buffer(weight_),
                          p_.bias ? &grad_buffer(bias_) : nullptr);
  }
  weight_.mark_ready();
  if (p_.bias) bias_.mark_ready();
  Tensor dx;
  if (needs_input_grad_) {
    dx = backend_.allocate(saved_x_.desc());
    op_->backward_data(dy, low_weight_.defined() ? low_weight_ : weight_.value, dx);
  }
  saved_x_ = Tensor();
  low_weight_ = Tensor();
  return dx;
}

}  // namespace rn::nn

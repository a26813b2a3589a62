// ReLU, pooling, linear, the option-A shortcut and Sequential.
#include <cmath>

#include "core/check.h"
#include "core/nn/layers.h"

namespace rn::nn {

Tensor ReLU::forward_impl(const Tensor& x) {
  Tensor y = backend_.allocate(x.desc());
  backend_.relu_forward(x, y);
  if (training_) {
    saved_y_ = y;
    tap_relu(y);
  }
  return y;
}

Tensor ReLU::backward_impl(const Tensor& dy) {
  RN_CHECK(saved_y_.defined(), "[relu] backward without a training forward");
  Tensor g = as_desc(dy, saved_y_.desc());
  Tensor dx = backend_.allocate(saved_y_.desc());
  backend_.relu_backward(saved_y_, g, dx);
  saved_y_ = Tensor();
  return dx;
}

Tensor Sigmoid::forward_impl(const Tensor& x) {
  Tensor y = backend_.allocate(x.desc());
  backend_.sigmoid_forward(x, y);
  if (training_) saved_y_ = y;
  return y;
}

Tensor Sigmoid::backward_impl(const Tensor& dy) {
  RN_CHECK(saved_y_.defined(), "[sigmoid] backward without a training forward");
  Tensor dx = backend_.allocate(saved_y_.desc());
  backend_.sigmoid_backward(saved_y_, as_desc(dy, saved_y_.desc()), dx);
  saved_y_ = Tensor();
  return dx;
}

GraphValue ReLU::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  return b.relu(prefix, x);
}

GraphValue Sigmoid::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  return b.sigmoid(prefix, x);
}

GraphValue Scale::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  return b.scale(prefix, x, factor_);
}

Tensor Scale::forward_impl(const Tensor& x) {
  Tensor y = backend_.allocate(x.desc());
  backend_.scale_to(x, factor_, y);
  return y;
}

Tensor Scale::backward_impl(const Tensor& dy) {
  Tensor dx = backend_.allocate(dy.desc());
  backend_.scale_to(dy, factor_, dx);
  return dx;
}

Dropout::Dropout(Backend& be, float p) : Module(be), p_(p) {
  RN_CHECK(p >= 0.f && p < 1.f, "[dropout] p must be in [0, 1), got " << p);
}

// Inference: the identity (inverted dropout scales in training only).
GraphValue Dropout::describe(GraphBuilder&, const std::string&, const GraphValue& x) {
  return x;
}

Tensor Dropout::forward_impl(const Tensor& x) {
  if (!training_ || p_ == 0.f) return x;
  Tensor y = backend_.allocate(x.desc());
  backend_.dropout_forward(x, p_, key_, y);
  saved_x_desc_ = x.desc();
  return y;
}

Tensor Dropout::backward_impl(const Tensor& dy) {
  if (p_ == 0.f) return dy;
  Tensor g = as_desc(dy, saved_x_desc_);
  Tensor dx = backend_.allocate(saved_x_desc_);
  backend_.dropout_backward(g, p_, key_, dx);
  return dx;
}

Shape Pool2d::output_shape(const Shape& in) const {
  if (p_.global) return Shape{in[0], in[1], 1, 1};
  return Shape{in[0], in[1], (in[2] + 2 * p_.pad - p_.kernel) / p_.stride + 1,
               (in[3] + 2 * p_.pad - p_.kernel) / p_.stride + 1};
}

GraphValue Pool2d::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  return b.pool(prefix, x, p_);
}

Tensor Pool2d::forward_impl(const Tensor& x) {
  op_ =
      &plans_.get(x.desc(), training_, [&] { return backend_.make_pool(p_, x.desc(), training_); });
  Tensor y = backend_.allocate(op_->output_desc());
  Tensor ws;
  if (training_ && op_->workspace_desc().shape.rank() > 0)
    ws = backend_.allocate(op_->workspace_desc());
  op_->forward(x, y, ws.defined() ? &ws : nullptr);
  if (training_) saved_x_desc_ = x.desc(), saved_ws_ = ws;
  return y;
}

Tensor Pool2d::backward_impl(const Tensor& dy) {
  Tensor dx = backend_.allocate(saved_x_desc_);
  op_->backward(dy, saved_ws_.defined() ? &saved_ws_ : nullptr, dx);
  saved_ws_ = Tensor();
  return dx;
}

Linear::Linear(Backend& be, int in_features, int out_features, InitRng& rng, bool bias)
    : Module(be), in_features_(in_features), out_features_(out_features), has_bias_(bias) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = make_parameter(Shape{out_features, in_features},
                           rng.uniform_vector(int64_t{out_features} * in_features, bound), false);
  if (bias)
    bias_ = make_parameter(Shape{out_features}, rng.uniform_vector(out_features, bound), true);
}

void Linear::collect(const std::string& prefix, std::vector<NamedParameter>& params,
                     std::vector<NamedBuffer>&) {
  params.push_back({join(prefix, "weight"), &weight_});
  if (has_bias_) params.push_back({join(prefix, "bias"), &bias_});
}

Shape Linear::output_shape(const Shape& in) const {
  return Shape{in[0], out_features_};
}

GraphValue Linear::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  const GraphTensor bias{join(prefix, "bias"), &bias_.value};
  return b.linear(prefix, x, {join(prefix, "weight"), &weight_.value}, has_bias_ ? &bias : nullptr);
}

Tensor Linear::forward_impl(const Tensor& x) {
  RN_CHECK(x.shape()[1] == in_features_,
           "[linear] expects " << in_features_ << " features, got " << x.shape().str());
  // Mixed precision: the head runs in f32 on an f32 copy of its (small) input.
  Tensor x32 = x;
  if (x.dtype() != DType::f32) {
    TensorDesc d{x.shape(), DType::f32, nullptr};
    if (x.layout())
      d.layout = backend_.layout_like(TensorDesc{x.shape(), DType::f32, x.layout()}, x.shape());
    x32 = backend_.allocate(d);
    backend_.cast(x, x32);
  }
  if (!op_ || !op_desc_.same_layout(x32.desc())) {
    op_ = backend_.make_linear(LinearParams{out_features_, has_bias_}, x32.desc());
    op_desc_ = x32.desc();
  }
  Tensor y = backend_.allocate(op_->output_desc());
  op_->forward(x32, weight_.value, has_bias_ ? &bias_.value : nullptr, y);
  if (training_) saved_x_ = x32, saved_x_desc_ = x.desc();
  return y;
}

Tensor Linear::backward_impl(const Tensor& dy) {
  RN_CHECK(saved_x_.defined(), "[linear] backward without a training forward");
  op_->backward_weights(saved_x_, dy, grad_buffer(weight_),
                        has_bias_ ? &grad_buffer(bias_) : nullptr);
  weight_.mark_ready();
  if (has_bias_) bias_.mark_ready();
  Tensor dx;
  if (needs_input_grad_) {
    dx = backend_.allocate(saved_x_.desc());
    op_->backward_data(dy, weight_.value, dx);
    if (!dx.desc().same_layout(saved_x_desc_)) {
      Tensor low = backend_.allocate(saved_x_desc_);
      backend_.cast(dx, low);
      dx = low;
    }
  }
  saved_x_ = Tensor();
  return dx;
}

Shape PadShortcut::output_shape(const Shape& in) const {
  return Shape{in[0], out_channels_, (in[2] + stride_ - 1) / stride_,
               (in[3] + stride_ - 1) / stride_};
}

GraphValue PadShortcut::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  return b.pad_shortcut(prefix, x, out_channels_, stride_);
}

Tensor PadShortcut::forward_impl(const Tensor& x) {
  // The output keeps the input's layout family: same oneDNN format, new dimensions.
  const Shape out = output_shape(x.shape());
  TensorDesc d = x.desc();
  d.shape = out;
  d.layout = backend_.layout_like(x.desc(), out);
  Tensor y = backend_.allocate(d);
  backend_.pad_shortcut_forward(x, stride_, y);
  if (training_) saved_x_desc_ = x.desc();
  return y;
}

Tensor PadShortcut::backward_impl(const Tensor& dy) {
  Tensor dx = backend_.allocate(saved_x_desc_);
  backend_.pad_shortcut_backward(dy, stride_, dx);
  return dx;
}

Module& Sequential::add(std::string name, std::unique_ptr<Module> m) {
  children_.emplace_back(std::move(name), std::move(m));
  return *children_.back().second;
}

void Sequential::set_training(bool on) {
  Module::set_training(on);
  for (auto& [n, m] : children_) m->set_training(on);
}

void Sequential::set_needs_input_grad(bool on) {
  Module::set_needs_input_grad(on);
  if (!children_.empty()) children_.front().second->set_needs_input_grad(on);
}

void Sequential::collect(const std::string& prefix, std::vector<NamedParameter>& params,
                         std::vector<NamedBuffer>& buffers) {
  for (auto& [n, m] : children_) m->collect(join(prefix, n), params, buffers);
}

Shape Sequential::output_shape(const Shape& in) const {
  Shape s = in;
  for (const auto& [n, m] : children_) s = m->output_shape(s);
  return s;
}

int64_t Sequential::macs(const Shape& in) const {
  Shape s = in;
  int64_t total = 0;
  for (const auto& [n, m] : children_) {
    total += m->macs(s);
    s = m->output_shape(s);
  }
  return total;
}

int Sequential::weighted_layers() const {
  int n = 0;
  for (const auto& [name, m] : children_) n += m->weighted_layers();
  return n;
}

GraphValue Sequential::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  GraphValue h = x;
  for (auto& [n, m] : children_) h = m->describe(b, join(prefix, n), h);
  return h;
}

Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor h = x;
  for (auto& [n, m] : children_) h = m->forward(h);
  return h;
}

GradSum Sequential::backward_sum_impl(const GradSum& dy) {
  GradSum g = dy;
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    g = it->second->backward_sum(g);
    if (!g.a.defined()) break;  // the first layer needs no input gradient
  }
  return g;
}

}  // namespace rn::nn

// BatchNorm2d with PyTorch's conventions: momentum 0.1 on the running statistics, and the
// running variance updated with the unbiased batch variance.
#include "core/check.h"
#include "core/nn/layers.h"

namespace rn::nn {

BatchNorm2d::BatchNorm2d(Backend& be, int channels, bool fuse_relu, bool zero_gamma,
                         double momentum, double eps)
    : Module(be), channels_(channels), momentum_(momentum) {
  p_.eps = eps;
  p_.fuse_relu = fuse_relu;
  gamma_ =
      make_parameter(Shape{channels}, std::vector<float>(channels, zero_gamma ? 0.f : 1.f), true);
  beta_ = make_parameter(Shape{channels}, std::vector<float>(channels, 0.f), true);
  running_mean_ = backend_.upload_persistent(Tensor::zeros(Shape{channels}));
  running_var_ = backend_.upload_persistent(
      Tensor::from_vector(Shape{channels}, std::vector<float>(channels, 1.f)));
  batch_mean_ = backend_.upload_persistent(Tensor::zeros(Shape{channels}));
  batch_var_ = backend_.upload_persistent(Tensor::zeros(Shape{channels}));
}

void BatchNorm2d::collect(const std::string& prefix, std::vector<NamedParameter>& params,
                          std::vector<NamedBuffer>& buffers) {
  params.push_back({join(prefix, "weight"), &gamma_});
  params.push_back({join(prefix, "bias"), &beta_});
  buffers.push_back({join(prefix, "running_mean"), &running_mean_});
  buffers.push_back({join(prefix, "running_var"), &running_var_});
}

Tensor BatchNorm2d::forward_impl(const Tensor& x) {
  RN_CHECK(x.shape().rank() == 4 && x.shape()[1] == channels_,
           "[batch_norm] expects " << channels_ << " channels, got " << x.shape().str());
  op_ = &plans_.get(x.desc(), training_,
                    [&] { return backend_.make_batch_norm(p_, x.desc(), training_); });
  Tensor y = backend_.allocate(op_->output_desc());
  if (!training_) {
    op_->forward_inference(x, gamma_.value, beta_.value, running_mean_, running_var_, y);
    return y;
  }
  Tensor ws;
  if (p_.fuse_relu) ws = backend_.allocate(op_->workspace_desc());
  op_->forward_training(x, gamma_.value, beta_.value, y, batch_mean_, batch_var_,
                        p_.fuse_relu ? &ws : nullptr);
  const double m = static_cast<double>(x.shape()[0]) * x.shape()[2] * x.shape()[3];
  const float mom = static_cast<float>(momentum_);
  backend_.axpby(running_mean_, mom, batch_mean_, 1.f - mom);
  backend_.axpby(running_var_, static_cast<float>(momentum_ * m / std::max(m - 1, 1.0)), batch_var_,
                 1.f - mom);
  ++num_batches_tracked_;
  saved_x_ = x;
  saved_ws_ = ws;
  return y;
}

Tensor BatchNorm2d::backward_impl(const Tensor& dy) {
  RN_CHECK(saved_x_.defined(), "[batch_norm] backward without a training forward");
  Tensor dx = backend_.allocate(saved_x_.desc());
  op_->backward(saved_x_, dy, gamma_.value, batch_mean_, batch_var_,
                p_.fuse_relu ? &saved_ws_ : nullptr, dx, grad_buffer(gamma_), grad_buffer(beta_));
  gamma_.mark_ready();
  beta_.mark_ready();
  saved_x_ = Tensor();
  saved_ws_ = Tensor();
  return dx;
}

}  // namespace rn::nn

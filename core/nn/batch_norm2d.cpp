// BatchNorm2d with PyTorch's conventions: momentum 0.1 on the running statistics, and the
// running variance updated with the unbiased batch variance; optionally with statistics over the
// global batch of a data-parallel job (cross-replica batch norm, as torch.nn.SyncBatchNorm).
#include <algorithm>
#include <cmath>

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

GraphValue BatchNorm2d::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  const GraphValue y = b.batch_norm(prefix, x, {join(prefix, "weight"), &gamma_.value},
                                    {join(prefix, "bias"), &beta_.value},
                                    {join(prefix, "running_mean"), &running_mean_},
                                    {join(prefix, "running_var"), &running_var_}, p_.eps);
  return p_.fuse_relu ? b.relu(join(prefix, "relu"), y) : y;
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
  if (sync_) return forward_sync(x, y);
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
  if (p_.fuse_relu) tap_relu(y);
  return y;
}

Tensor BatchNorm2d::backward_impl(const Tensor& dy) {
  RN_CHECK(saved_x_.defined(), "[batch_norm] backward without a training forward");
  if (sync_) return backward_sync(dy);
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

namespace rn::nn {

// Forward over the global batch: each replica's mean and biased variance become sums (in double,
// so that E[x^2] - E[x]^2 keeps its precision), one all-reduce combines them, and x is normalised
// with the global statistics.
Tensor BatchNorm2d::forward_sync(const Tensor& x, Tensor& y) {
  unfused_op_ = op_;
  if (p_.fuse_relu) {
    BatchNormParams unfused = p_;
    unfused.fuse_relu = false;
    unfused_op_ = &unfused_plans_.get(
        x.desc(), true, [&] { return backend_.make_batch_norm(unfused, x.desc(), true); });
  }
  // The local statistics (y is overwritten below).
  unfused_op_->forward_training(x, gamma_.value, beta_.value, y, batch_mean_, batch_var_, nullptr);
  const double n = static_cast<double>(x.shape()[0]) * x.shape()[2] * x.shape()[3];
  const auto mean = backend_.download(batch_mean_).to_vector();
  const auto var = backend_.download(batch_var_).to_vector();
  const size_t c = static_cast<size_t>(channels_);
  std::vector<double> sums(2 * c + 1);
  for (size_t i = 0; i < c; ++i) {
    sums[i] = n * mean[i];
    sums[c + i] = n * (static_cast<double>(var[i]) + static_cast<double>(mean[i]) * mean[i]);
  }
  sums[2 * c] = n;
  sync_(sums.data(), sums.size());
  global_count_ = sums[2 * c];
  std::vector<float> gmean(c), gvar(c);
  for (size_t i = 0; i < c; ++i) {
    const double m = sums[i] / global_count_;
    gmean[i] = static_cast<float>(m);
    gvar[i] = static_cast<float>(std::max(sums[c + i] / global_count_ - m * m, 0.0));
  }
  backend_.copy(backend_.upload(Tensor::from_vector(Shape{channels_}, gmean)), batch_mean_);
  backend_.copy(backend_.upload(Tensor::from_vector(Shape{channels_}, gvar)), batch_var_);
  // Normalising with given statistics is what inference does (ReLU fused when configured).
  op_->forward_inference(x, gamma_.value, beta_.value, batch_mean_, batch_var_, y);
  const float mom = static_cast<float>(momentum_);
  backend_.axpby(running_mean_, mom, batch_mean_, 1.f - mom);
  backend_.axpby(running_var_,
                 static_cast<float>(momentum_ * global_count_ / std::max(global_count_ - 1, 1.0)),
                 batch_var_, 1.f - mom);
  ++num_batches_tracked_;
  saved_x_ = x;
  if (p_.fuse_relu) {
    saved_y_ = y;
    tap_relu(y);
  }
  return y;
}

// Backward over the global batch. The replica's own backward, given the global statistics,
// yields dgamma_l = sum(dy * x^) and dbeta_l = sum(dy) over its n samples and
//   dx_l = gamma / s * (dy - dbeta_l / n - x^ * dgamma_l / n),  s = sqrt(var + eps);
// the global gradient has the global sums over N samples instead, which differs from dx_l by a
// per-channel affine function of x, added in one pass. The parameter gradients stay the local
// sums: the gradient bucketer averages them across replicas like every other gradient.
Tensor BatchNorm2d::backward_sync(const Tensor& dy) {
  Tensor g = dy;
  if (p_.fuse_relu) {
    g = backend_.allocate(saved_y_.desc());
    backend_.relu_backward(saved_y_, as_desc(dy, saved_y_.desc()), g);
  }
  Tensor dx = backend_.allocate(saved_x_.desc());
  Tensor& dgamma = grad_buffer(gamma_);
  Tensor& dbeta = grad_buffer(beta_);
  unfused_op_->backward(saved_x_, g, gamma_.value, batch_mean_, batch_var_, nullptr, dx, dgamma,
                        dbeta);
  const size_t c = static_cast<size_t>(channels_);
  const auto dg = backend_.download(dgamma).to_vector();
  const auto db = backend_.download(dbeta).to_vector();
  const auto gamma = backend_.download(gamma_.value).to_vector();
  const auto mean = backend_.download(batch_mean_).to_vector();
  const auto var = backend_.download(batch_var_).to_vector();
  std::vector<double> sums(2 * c);
  std::copy(dg.begin(), dg.end(), sums.begin());
  std::copy(db.begin(), db.end(), sums.begin() + c);
  sync_(sums.data(), sums.size());
  const double n =
      static_cast<double>(saved_x_.shape()[0]) * saved_x_.shape()[2] * saved_x_.shape()[3];
  std::vector<float> scale(c), shift(c);
  for (size_t i = 0; i < c; ++i) {
    const double inv_s = 1.0 / std::sqrt(static_cast<double>(var[i]) + p_.eps);
    const double a = gamma[i] * inv_s * inv_s * (dg[i] / n - sums[i] / global_count_);
    const double b = gamma[i] * inv_s * (db[i] / n - sums[c + i] / global_count_) - a * mean[i];
    scale[i] = static_cast<float>(a);
    shift[i] = static_cast<float>(b);
  }
  backend_.channel_affine_add(dx, saved_x_,
                              backend_.upload(Tensor::from_vector(Shape{channels_}, scale)),
                              backend_.upload(Tensor::from_vector(Shape{channels_}, shift)));
  gamma_.mark_ready();
  beta_.mark_ready();
  saved_x_ = Tensor();
  saved_y_ = Tensor();
  return dx;
}

void set_batch_norm_sync(Module& root, const StatsAllReduce& all_reduce) {
  if (auto* bn = dynamic_cast<BatchNorm2d*>(&root)) bn->set_sync(all_reduce);
  root.for_each_child([&](Module& child) { set_batch_norm_sync(child, all_reduce); });
}

}  // namespace rn::nn

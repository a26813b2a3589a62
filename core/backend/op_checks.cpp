// The op objects' public methods: every argument checked against the plan, on every backend
// alike, then the backend's implementation. Shapes are compared, never built, so that a step
// allocates nothing here.
#include "core/backend/backend.h"
#include "core/check.h"

namespace rn {
namespace {

void check_shape(const char* op, const char* arg, const Shape& planned, const Tensor& t) {
  RN_CHECK(t.shape() == planned, "[" << op << "] " << arg << ": planned for " << planned.str()
                                     << ", got " << t.shape().str());
}

// An optional argument: required, and checked, when the plan has it (a non-empty shape).
void check_optional(const char* op, const char* arg, const Shape& planned, const Tensor* t) {
  if (planned.rank() == 0) return;
  RN_CHECK(t != nullptr,
           "[" << op << "] " << arg << ": planned for " << planned.str() << ", got none");
  check_shape(op, arg, planned, *t);
}

}  // namespace

ConvOp::ConvOp(const ConvParams& p, const Shape& x) : x_(x) {
  if (p.bias) bias_ = Shape{p.out_channels};
}

void ConvOp::forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  check_shape("conv", "input", x_, x);
  check_shape("conv", "weight", weight_desc().shape, w);
  check_optional("conv", "bias", bias_, bias);
  check_shape("conv", "output", output_desc().shape, y);
  forward_impl(x, w, bias, y);
}

void ConvOp::backward_data(const Tensor& dy, const Tensor& w, Tensor& dx) {
  check_shape("conv", "output gradient", output_desc().shape, dy);
  check_shape("conv", "weight", weight_desc().shape, w);
  check_shape("conv", "input gradient", x_, dx);
  backward_data_impl(dy, w, dx);
}

void ConvOp::backward_weights(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias) {
  check_shape("conv", "input", x_, x);
  check_shape("conv", "output gradient", output_desc().shape, dy);
  check_shape("conv", "weight gradient", weight_desc().shape, dw);
  check_optional("conv", "bias gradient", bias_, dbias);
  backward_weights_impl(x, dy, dw, dbias);
}

BatchNormOp::BatchNormOp(const Shape& x) : x_(x) {
  if (x.rank() >= 2) channels_ = Shape{x[1]};
}

void BatchNormOp::check_channels(const char* arg, const Tensor& t) const {
  check_shape("batch_norm", arg, channels_, t);
}

void BatchNormOp::forward_training(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                   Tensor& y, Tensor& mean, Tensor& var, Tensor* workspace) {
  check_shape("batch_norm", "input", x_, x);
  check_channels("gamma", gamma), check_channels("beta", beta);
  check_shape("batch_norm", "output", output_desc().shape, y);
  check_channels("mean", mean), check_channels("variance", var);
  check_optional("batch_norm", "workspace (fused ReLU)", workspace_desc().shape, workspace);
  forward_training_impl(x, gamma, beta, y, mean, var, workspace);
}

void BatchNormOp::forward_inference(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                    const Tensor& mean, const Tensor& var, Tensor& y) {
  check_shape("batch_norm", "input", x_, x);
  check_channels("gamma", gamma), check_channels("beta", beta);
  check_channels("mean", mean), check_channels("variance", var);
  check_shape("batch_norm", "output", output_desc().shape, y);
  forward_inference_impl(x, gamma, beta, mean, var, y);
}

void BatchNormOp::backward(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                           const Tensor& mean, const Tensor& var, const Tensor* workspace,
                           Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  check_shape("batch_norm", "input", x_, x);
  check_shape("batch_norm", "output gradient", output_desc().shape, dy);
  check_channels("gamma", gamma);
  check_channels("mean", mean), check_channels("variance", var);
  check_optional("batch_norm", "workspace (fused ReLU)", workspace_desc().shape, workspace);
  check_shape("batch_norm", "input gradient", x_, dx);
  check_channels("gamma gradient", dgamma), check_channels("beta gradient", dbeta);
  backward_impl(x, dy, gamma, mean, var, workspace, dx, dgamma, dbeta);
}

void PoolOp::forward(const Tensor& x, Tensor& y, Tensor* workspace) {
  check_shape("pool", "input", x_, x);
  check_shape("pool", "output", output_desc().shape, y);
  check_optional("pool", "workspace (max pooling in training)", workspace_desc().shape, workspace);
  forward_impl(x, y, workspace);
}

void PoolOp::backward(const Tensor& dy, const Tensor* workspace, Tensor& dx) {
  check_shape("pool", "output gradient", output_desc().shape, dy);
  check_optional("pool", "workspace (the forward's)", workspace_desc().shape, workspace);
  check_shape("pool", "input gradient", x_, dx);
  backward_impl(dy, workspace, dx);
}

LinearOp::LinearOp(const LinearParams& p, const Shape& x) : x_(x) {
  if (x.rank() >= 2) w_ = Shape{p.out_features, x[1]};
  if (p.bias) bias_ = Shape{p.out_features};
}

void LinearOp::forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  check_shape("linear", "input", x_, x);
  check_shape("linear", "weight", w_, w);
  check_optional("linear", "bias", bias_, bias);
  check_shape("linear", "output", output_desc().shape, y);
  forward_impl(x, w, bias, y);
}

void LinearOp::backward_data(const Tensor& dy, const Tensor& w, Tensor& dx) {
  check_shape("linear", "output gradient", output_desc().shape, dy);
  check_shape("linear", "weight", w_, w);
  check_shape("linear", "input gradient", x_, dx);
  backward_data_impl(dy, w, dx);
}

void LinearOp::backward_weights(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias) {
  check_shape("linear", "input", x_, x);
  check_shape("linear", "output gradient", output_desc().shape, dy);
  check_shape("linear", "weight gradient", w_, dw);
  check_optional("linear", "bias gradient", bias_, dbias);
  backward_weights_impl(x, dy, dw, dbias);
}

}  // namespace rn

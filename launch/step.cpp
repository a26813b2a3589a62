// StepRunner: the forward / loss / backward / update sequence.
#include "launch/step.h"

#include "core/check.h"

namespace rn::launch {

StepRunner::StepRunner(Backend& backend, models::Network& net, const optim::OptimizerOptions& opt,
                       const CrossEntropyParams& loss)
    : backend_(backend), net_(net), optimizer_(backend, net.parameters(), opt), loss_(loss) {}

void StepRunner::set_precision(DType compute) {
  RN_CHECK(compute == DType::f32 || backend_.device().kind == DeviceKind::cuda,
           "precision " << dtype_name(compute) << " needs the cuda device");
  compute_ = compute;
  scaler_ = compute == DType::f16 ? std::make_unique<optim::LossScaler>() : nullptr;
}

Tensor StepRunner::to_compute(const Tensor& x) {
  if (x.dtype() == compute_) return x;
  Tensor out = backend_.allocate(TensorDesc{x.shape(), compute_, nullptr});
  backend_.cast(x, out);
  return out;
}

LossStats StepRunner::train_step(const Tensor& images, const Tensor& labels, double lr) {
  net_.set_training(true);
  Tensor x = to_compute(backend_.upload(images));
  Tensor y = backend_.upload(labels);
  Tensor logits = net_.forward(x);
  if (!dlogits_.defined() || !dlogits_.desc().same_layout(logits.desc()))
    dlogits_ = backend_.allocate(logits.desc());
  LossStats s = backend_.softmax_cross_entropy(logits, y, loss_, &dlogits_);
  if (scaler_) backend_.scale(dlogits_, scaler_->scale());
  net_.backward(dlogits_);
  if (sync_) sync_();
  // An overflowed fp16 step is skipped (after the all-reduce, so every rank skips it alike).
  if (scaler_ && !scaler_->unscale(backend_, optimizer_.parameters())) return s;
  optimizer_.step(lr);
  return s;
}

LossStats StepRunner::eval_step(const Tensor& images, const Tensor& labels) {
  net_.set_training(false);
  Tensor logits = net_.forward(to_compute(backend_.upload(images)));
  return backend_.softmax_cross_entropy(logits, backend_.upload(labels), CrossEntropyParams{},
                                        nullptr);
}

Tensor StepRunner::predict(const Tensor& images) {
  net_.set_training(false);
  return backend_.download(net_.forward(to_compute(backend_.upload(images))));
}

}  // namespace rn::launch

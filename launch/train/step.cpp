// StepRunner: the forward / loss / backward / update sequence.
#include "launch/train/step.h"

#include "core/check.h"

namespace rn::launch {

const char* precision_name(DType t) {
  switch (t) {
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "fp16";
    default:
      return "fp32";
  }
}

void check_precision_runs(DType t, Device device, const std::string& what) {
  if (const std::string why = precision_unsupported(device, t); !why.empty())
    RN_FAIL(what << " " << precision_name(t) << " on "
                 << (device.kind == DeviceKind::cuda ? "cuda" : "cpu") << ": " << why);
}

DType checked_precision(const std::string& value, Device device, const std::string& what) {
  DType t;
  if (value == "fp32")
    t = DType::f32;
  else if (value == "bf16")
    t = DType::bf16;
  else if (value == "fp16")
    t = DType::f16;
  else
    RN_FAIL(what << " must be fp32, bf16 or fp16, got '" << value << "'");
  check_precision_runs(t, device, what);
  return t;
}

StepRunner::StepRunner(Backend& backend, models::Network& net, const optim::OptimizerOptions& opt,
                       const CrossEntropyParams& loss)
    : backend_(backend), net_(net), optimizer_(backend, net.parameters(), opt), loss_(loss) {}

void StepRunner::set_precision(DType compute) {
  const std::string why = precision_unsupported(backend_.device(), compute);
  RN_CHECK(why.empty(), "precision " << dtype_name(compute) << ": " << why);
  compute_ = compute;
  scaler_ = compute == DType::f16 ? std::make_unique<optim::LossScaler>() : nullptr;
}

void StepRunner::set_profiler(Profiler* profiler) {
  profiler_ = profiler;
  if (profiler) wait_entry_ = profiler->entry("all-reduce wait", "the gradients' (host waits)");
}

void StepRunner::sync() {
  if (!profiler_) return sync_();
  Profiler::Scope s(*profiler_, wait_entry_);
  sync_();
}

void StepRunner::confirm() {
  if (!profiler_) return confirm_();
  Profiler::Scope s(*profiler_, wait_entry_);
  confirm_();
}

Tensor to_compute(Backend& backend, const Tensor& x, DType compute) {
  if (x.dtype() == compute) return x;
  Tensor out = backend.allocate(TensorDesc{x.shape(), compute, nullptr});
  backend.cast(x, out);
  return out;
}

LossStats StepRunner::train_step(const Tensor& images, const Tensor& labels, double lr) {
  return train_step_on_device(backend_.upload(images), backend_.upload(labels), lr);
}

LossStats StepRunner::train_step_on_device(const Tensor& images, const Tensor& labels, double lr) {
  RN_CHECK(images.device() == backend_.device() && labels.device() == backend_.device(),
           "[step] the batch is on " << device_name(images.device()) << ", the network on "
                                     << device_name(backend_.device()));
  net_.set_training(true);
  Tensor x = to_compute(backend_, images, compute_);
  Tensor logits = net_.forward(x);
  if (!dlogits_.defined() || !dlogits_.desc().same_layout(logits.desc()))
    dlogits_ = backend_.allocate(logits.desc());
  // The loss statistics are read at the end: on a GPU the whole step is queued before the host
  // waits for anything.
  backend_.queue_softmax_cross_entropy(logits, labels, loss_, &dlogits_);
  if (scaler_) backend_.scale(dlogits_, scaler_->scale());
  net_.backward(dlogits_);
  if (sync_) sync();
  if (scaler_) {
    // The overflow check reads the summed gradients on the host: the collectives first, under
    // the stall watchdog. An overflowed fp16 step is skipped (after the all-reduce, so every
    // rank skips it alike).
    if (confirm_) confirm();
    if (!scaler_->unscale(backend_, optimizer_.parameters())) return backend_.queued_loss_stats();
  }
  optimizer_.step(lr);
  // Waits, under the watchdog, for collectives left to the device (NCCL) while the update runs.
  if (confirm_) confirm();
  return backend_.queued_loss_stats();
}

LossStats StepRunner::eval_step(const Tensor& images, const Tensor& labels) {
  net_.set_training(false);
  Tensor logits = net_.forward(to_compute(backend_, backend_.upload(images), compute_));
  return backend_.softmax_cross_entropy(logits, backend_.upload(labels), CrossEntropyParams{},
                                        nullptr);
}

Tensor StepRunner::predict(const Tensor& images) {
  net_.set_training(false);
  return backend_.download(net_.forward(to_compute(backend_, backend_.upload(images), compute_)));
}

}  // namespace rn::launch

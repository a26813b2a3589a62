// StepRunner: the forward / loss / backward / update sequence.
#include "launch/step.h"

namespace rn::launch {

StepRunner::StepRunner(Backend& backend, models::Network& net, const optim::OptimizerOptions& opt,
                       const CrossEntropyParams& loss)
    : backend_(backend), net_(net), optimizer_(backend, net.parameters(), opt), loss_(loss) {}

LossStats StepRunner::train_step(const Tensor& images, const Tensor& labels, double lr) {
  net_.set_training(true);
  Tensor x = backend_.upload(images);
  Tensor y = backend_.upload(labels);
  Tensor logits = net_.forward(x);
  if (!dlogits_.defined() || !dlogits_.desc().same_layout(logits.desc()))
    dlogits_ = backend_.allocate(logits.desc());
  LossStats s = backend_.softmax_cross_entropy(logits, y, loss_, &dlogits_);
  net_.backward(dlogits_);
  if (sync_) sync_();
  optimizer_.step(lr);
  return s;
}

LossStats StepRunner::eval_step(const Tensor& images, const Tensor& labels) {
  net_.set_training(false);
  Tensor logits = net_.forward(backend_.upload(images));
  return backend_.softmax_cross_entropy(logits, backend_.upload(labels), CrossEntropyParams{},
                                        nullptr);
}

Tensor StepRunner::predict(const Tensor& images) {
  net_.set_training(false);
  return backend_.download(net_.forward(backend_.upload(images)));
}

}  // namespace rn::launch

// One training step and one evaluation step of a network on a backend: upload the batch,
// forward, loss, backward, optimizer update. Shared by `train`, `eval` and `bench`.
#pragma once

#include <functional>
#include <memory>

#include "core/backend/profiler.h"
#include "core/models/model_spec.h"
#include "core/optim/loss_scaler.h"
#include "core/optim/optimizer.h"

namespace rn::launch {

// A compute type as configs and flags name it: "fp32", "bf16", "fp16".
const char* precision_name(DType t);
// Throws one error line that starts with `what` (the flag or config field it came from) where
// `device` does not run `t`, saying why (precision_unsupported).
void check_precision_runs(DType t, Device device, const std::string& what);
// A flag's `value` ("fp32", "bf16" or "fp16") as a compute type that `device` runs; an unknown
// name lists the choices.
DType checked_precision(const std::string& value, Device device, const std::string& what);
// `x` (on `backend`) in the compute type: itself when it already is, else a cast copy.
Tensor to_compute(Backend& backend, const Tensor& x, DType compute);

class StepRunner {
 public:
  StepRunner(Backend& backend, models::Network& net, const optim::OptimizerOptions& opt,
             const CrossEntropyParams& loss);
  // `images` plain host N x C x H x W f32, `labels` host N i32: uploaded from pageable memory at
  // the start of the step, then train_step_on_device.
  LossStats train_step(const Tensor& images, const Tensor& labels, double lr);
  // The same step on a batch already on the backend's device (plain, f32 and i32).
  LossStats train_step_on_device(const Tensor& images, const Tensor& labels, double lr);
  LossStats eval_step(const Tensor& images, const Tensor& labels);
  // Inference only: the logits as a plain host tensor.
  Tensor predict(const Tensor& images);
  optim::Optimizer& optimizer() { return optimizer_; }
  // `sync` runs between backward and the update (the data-parallel gradient all-reduce), and
  // `confirm` after the update is queued (the host's wait for collectives that only the device
  // waited for in `sync`).
  void set_gradient_sync(std::function<void()> sync, std::function<void()> confirm = nullptr) {
    sync_ = std::move(sync), confirm_ = std::move(confirm);
  }
  // Mixed precision: activations in `compute` (bf16 or f16; the parameters stay f32 masters).
  // f16 also scales the loss dynamically.
  void set_precision(DType compute);
  // The host's time in `sync` and `confirm` counted in `profiler` as "all-reduce wait" (while
  // the profiler is on); nullptr: not counted.
  void set_profiler(Profiler* profiler);
  DType precision() const { return compute_; }
  const optim::LossScaler* loss_scaler() const { return scaler_.get(); }

 private:
  Backend& backend_;
  models::Network& net_;
  optim::Optimizer optimizer_;
  CrossEntropyParams loss_;

  Tensor dlogits_;
  std::function<void()> sync_, confirm_;
  Profiler* profiler_ = nullptr;
  int wait_entry_ = -1;
  void sync();     // sync_, timed
  void confirm();  // confirm_, timed
  DType compute_ = DType::f32;
  std::unique_ptr<optim::LossScaler> scaler_;
};

}  // namespace rn::launch

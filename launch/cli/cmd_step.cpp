// `resnet step`: one training step from a checkpoint on /images and /labels, writing the loss,
// every parameter's gradient, and the weights, momentum and BN statistics after the update (the
// conformance tests compare all of them with PyTorch). With --relu-outputs it also writes every
// ReLU's output of the forward, in the order they ran, as /relu/00000, /relu/00001, ...: the
// tests take the ReLU masks from them, because a float32 forward may round an input within a few
// ulps of 0 to the other side of the kink, where the gradient differs by the whole element.
#include <cstdio>
#include <stdexcept>

#include "core/check.h"
#include "core/optim/optimizer.h"
#include "io/array_file.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/checkpoint_network.h"
#include "launch/train/step.h"

namespace rn::launch {
namespace {

double number(const Args& args, const std::string& name, double fallback) {
  if (!args.has(name)) return fallback;
  const std::string v = args.get(name);
  try {
    size_t used = 0;
    const double d = std::stod(v, &used);
    if (used != v.size()) throw std::invalid_argument("");
    return d;
  } catch (const std::exception&) {
    RN_FAIL("--" << name << " must be a number, got '" << v << "'");
  }
}

void write_tensor(io::ArrayWriter& out, Backend& be, const std::string& name, const Shape& shape,
                  const Tensor& t) {
  // A plain host copy in the canonical (torchvision) order, whatever layout the backend keeps,
  // in f32 whatever the compute type (bf16 values are exact in f32).
  Tensor f32 = t;
  if (t.dtype() != DType::f32) {
    f32 = be.allocate(TensorDesc{t.shape(), DType::f32, nullptr});
    be.cast(t, f32);
  }
  const Tensor h = be.download(f32);
  out.write_f32(name, shape.dims(), h.data_as<float>());
}

// The step's hyperparameters, from the flags.
struct StepFlags {
  double lr = 0.1, smoothing = 0;
  optim::OptimizerOptions opt;
};

StepFlags step_flags(const Args& args) {
  StepFlags f;
  f.lr = number(args, "lr", 0.1);
  f.opt.momentum = number(args, "momentum", 0.9);
  f.opt.weight_decay = number(args, "weight-decay", 0.0);
  f.opt.nesterov = args.flag("nesterov");
  f.smoothing = number(args, "label-smoothing", 0.0);
  if (f.lr < 0 || f.opt.momentum < 0 || f.opt.weight_decay < 0 || f.smoothing < 0 ||
      f.smoothing >= 1)
    RN_FAIL("--lr, --momentum and --weight-decay must be >= 0, --label-smoothing in [0, 1)");
  return f;
}

// After the update: every parameter's weights and momentum, every buffer (BN statistics).
void write_state(io::ArrayWriter& out, Backend& be, models::Network& net) {
  for (const auto& p : net.parameters()) {
    write_tensor(out, be, "/model/" + p.name, p.param->shape, p.param->value);
    write_tensor(out, be, "/optimizer/" + p.name, p.param->shape, p.param->momentum);
  }
  for (const auto& b : net.buffers())
    write_tensor(out, be, "/model/" + b.name, b.tensor->shape(), *b.tensor);
}

}  // namespace

const CommandSpec& step_command() {
  static const CommandSpec c{
      "step",
      "",
      "One training step from a checkpoint on /images and /labels; writes the loss, every "
      "gradient, and the weights, momentum and BN statistics after the update.",
      {{"checkpoint", Flag::Takes::value, "FILE", "the checkpoint (weights and momentum)", true},
       {"input", Flag::Takes::value, "X.h5", "/images (N x C x H x W float32) and /labels", true},
       {"output", Flag::Takes::value, "Y.h5",
        "written: /loss, /logits, /grad/*, /model/*, "
        "/optimizer/*",
        true},
       {"lr", Flag::Takes::value, "LR", "learning rate (default 0.1)"},
       {"momentum", Flag::Takes::value, "M", "SGD momentum (default 0.9)"},
       {"weight-decay", Flag::Takes::value, "WD", "weight decay (default 0)"},
       {"label-smoothing", Flag::Takes::value, "S", "label smoothing in [0, 1) (default 0)"},
       {"threads", Flag::Takes::value, "T", "CPU threads (default: this rank's share)"},
       {"precision", Flag::Takes::value, "fp32|bf16", "compute type (default fp32)"},
       {"nesterov", Flag::Takes::nothing, "", "Nesterov momentum"},
       {"relu-outputs", Flag::Takes::nothing, "", "also write every ReLU's output (/relu/NNNNN)"}}};
  return c;
}

int run_step(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, step_command());
  const std::string ckpt = args.required("checkpoint");
  const std::string input = args.required("input");
  const std::string output = args.required("output");
  const StepFlags f = step_flags(args);
  const int threads = job.env.threads_or(args.get_int("threads", 0));
  const DType compute = checked_precision(args.get("precision", "fp32"), Device{}, "--precision");
  // The momentum buffers come from the checkpoint too: the update continues a run.
  CheckpointNetwork cn = load_checkpoint_network(ckpt, threads, /*with_momentum=*/true, comm,
                                                 checkpoint_sharing(job.env, comm, job.hooks));
  if (comm.rank() != 0) return 0;
  Backend& be = *cn.backend;
  models::Network& net = *cn.net;
  const io::ArrayReader in(input);
  const Tensor images = read_images(in, input, cn.in_channels);
  const Tensor labels = read_labels(in, input, images.shape()[0], cn.classes);
  optim::Optimizer optimizer(be, net.parameters(), f.opt);

  io::ArrayWriter out(output);
  int relus = 0;
  if (args.flag("relu-outputs")) {
    net.set_relu_tap([&](const Tensor& y) {
      char name[32];
      std::snprintf(name, sizeof name, "/relu/%05d", relus++);
      write_tensor(out, be, name, y.shape(), y);
    });
  }
  net.set_training(true);
  // Mixed precision as in training: the batch and the convolution weights cast to `compute`,
  // the master weights, the classifier and the loss in f32.
  const Tensor logits = net.forward(to_compute(be, be.upload(images), compute));
  Tensor dlogits = be.allocate(logits.desc());
  net.set_relu_tap(nullptr);
  const LossStats loss = be.softmax_cross_entropy(
      logits, be.upload(labels), CrossEntropyParams{static_cast<float>(f.smoothing)}, &dlogits);
  out.write_f64("/loss", loss.loss);
  write_tensor(out, be, "/logits", logits.shape(), logits);
  net.backward(dlogits);
  // The gradients before the update hands their buffers back.
  for (const auto& p : net.parameters()) {
    RN_CHECK(p.param->grad.defined(), "[step] no gradient reached " << p.name);
    write_tensor(out, be, "/grad/" + p.name, p.param->shape, p.param->grad);
  }
  optimizer.step(f.lr);
  write_state(out, be, net);
  std::printf("wrote %s: loss %.6f, %zu gradients, weights after one SGD step (lr %g)\n",
              output.c_str(), loss.loss, net.parameters().size(), f.lr);
  return 0;
}

}  // namespace rn::launch

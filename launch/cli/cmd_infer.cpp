// `resnet infer --checkpoint FILE --input X.h5 --output Y.h5 [--precision fp32|bf16]`: eval-mode
// logits of /images.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/check.h"
#include "io/array_file.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/checkpoint_network.h"
#include "launch/train/step.h"

namespace rn::launch {

const CommandSpec& infer_command() {
  static const CommandSpec c{
      "infer",
      "",
      "Eval-mode logits of a checkpoint's network on the images of an HDF5 file.",
      {{"checkpoint", Flag::Takes::value, "FILE", "the checkpoint (its network is rebuilt from it)",
        true},
       {"input", Flag::Takes::value, "X.h5", "/images: N x C x H x W float32", true},
       {"output", Flag::Takes::value, "Y.h5", "written: /logits, N x classes", true},
       {"batch", Flag::Takes::value, "B", "images per forward pass (default 64)"},
       {"threads", Flag::Takes::value, "T", "CPU threads (default: this rank's share)"},
       {"precision", Flag::Takes::value, "fp32|bf16", "compute type (default fp32)"}}};
  return c;
}

int run_infer(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, infer_command());
  const std::string ckpt = args.required("checkpoint");
  const std::string input = args.required("input");
  const std::string output = args.required("output");
  const int batch = args.get_int("batch", 64);
  if (batch < 1) RN_FAIL("--batch must be at least 1, got " << batch);
  const int threads = job.env.threads_or(args.get_int("threads", 0));
  const DType compute = checked_precision(args.get("precision", "fp32"), Device{}, "--precision");
  // Every rank reads the checkpoint (a collective read); rank 0 alone computes and writes.
  CheckpointNetwork cn = load_checkpoint_network(ckpt, threads, /*with_momentum=*/false, comm,
                                                 checkpoint_sharing(job.env, comm, job.hooks));
  if (comm.rank() != 0) return 0;
  const io::ArrayReader in(input);
  const Tensor images = read_images(in, input, cn.in_channels);
  const Shape& s = images.shape();
  const int64_t n = s[0], per_image = s[1] * s[2] * s[3];
  cn.net->set_training(false);
  std::vector<float> logits(static_cast<size_t>(n) * cn.classes);
  // Batches bound the memory; eval-mode batch norm makes every image's logits independent of
  // the others in its batch.
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t b = std::min<int64_t>(batch, n - start);
    Tensor x = Tensor::zeros(Shape{b, s[1], s[2], s[3]});
    std::memcpy(x.data(), images.data_as<float>() + start * per_image,
                static_cast<size_t>(b * per_image) * sizeof(float));
    const Tensor y = cn.backend->download(
        cn.net->forward(to_compute(*cn.backend, cn.backend->upload(x), compute)));
    std::memcpy(logits.data() + start * cn.classes, y.data(),
                static_cast<size_t>(b) * cn.classes * sizeof(float));
  }
  io::ArrayWriter out(output);
  out.write_f32("/logits", {n, cn.classes}, logits.data());
  std::printf("wrote %s: /logits %lld x %d\n", output.c_str(), static_cast<long long>(n),
              cn.classes);
  return 0;
}

}  // namespace rn::launch

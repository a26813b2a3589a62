// `resnet bench`: training (forward + backward + SGD-momentum update) and inference images/s on
// synthetic data, the median of timed iterations after warm-up. The timed step reads a batch
// that already lies on the device, as PyTorch's benchmarks do; the batch's upload is timed on its
// own (from pageable memory, as `train` uploads today; from pinned memory; and overlapped with
// the step). Under mpirun each rank trains a replica and the training step is timed twice: with
// the gradient all-reduce and without it; `--data-parallel` does the same on one rank (the
// bucketer's copies and, on CUDA, NCCL).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "core/check.h"
#include "core/models/model_spec.h"
#include "core/nn/init.h"
#include "distributed/gradient_bucketer.h"
#include "distributed/nccl_communicator.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/step.h"

namespace rn::launch {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

template <typename F>
std::vector<double> time_iterations(int warmup, int iters, F step) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return t;
}

// The upload of one batch: from pageable memory at the start of the step (how `train` uploads
// today), from pinned memory alone, and the step with the next batch's upload from pinned memory
// overlapped (upload_ahead into two device buffers in turn).
struct UploadTimes {
  double pageable_s = 0, pinned_s = 0, overlapped_step_s = 0;
};

UploadTimes time_uploads(Backend& backend, StepRunner& runner, const Tensor& images,
                         const Tensor& labels, int warmup, int iters) {
  UploadTimes u;
  u.pageable_s = median(time_iterations(warmup, iters, [&] {
    backend.upload(images);
    backend.synchronize();
  }));
  Tensor pinned = backend.allocate_pinned(images.desc());
  std::memcpy(pinned.data(), images.data(), images.bytes());
  Tensor buffers[2] = {backend.allocate_persistent(images.desc()),
                       backend.allocate_persistent(images.desc())};
  u.pinned_s = median(time_iterations(warmup, iters, [&] {
    backend.upload_ahead(pinned, buffers[0]);
    backend.synchronize();
  }));
  int k = 0;
  backend.upload_ahead(pinned, buffers[0]);
  u.overlapped_step_s = median(time_iterations(warmup, iters, [&] {
    backend.upload_ahead(pinned, buffers[(k + 1) % 2]);
    runner.train_step_on_device(buffers[k % 2], labels, 0.01);
    backend.synchronize();
    ++k;
  }));
  return u;
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

}  // namespace

int run_bench(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, FlagSpec{{"model", "input", "batch", "threads", "device", "warmup", "iters",
                            "classes", "precision", "bucket-kib", "first-bucket-kib", "max-mib"},
                           {},
                           {"json", "train-only", "infer-only", "allreduce", "data-parallel",
                            "peak", "sweep"}});
  if (args.flag("allreduce")) return run_allreduce_bench(args, job);
  if (args.flag("peak")) return run_peak_bench(args, job);
  const std::string name = args.required("model");
  const DefaultInput d = input_from_args(args, name);
  const int batch = args.get_int("batch", 16), warmup = args.get_int("warmup", 3),
            iters = args.get_int("iters", 10);
  const int threads = args.get_int("threads", job.env.threads);
  if (batch < 1 || warmup < 0 || iters < 1 || threads < 1)
    RN_FAIL("--batch, --iters and --threads must be positive, --warmup >= 0");
  const std::string dev = args.get("device", "cpu");
  if (dev != "cpu" && dev != "cuda") RN_FAIL("--device must be cpu or cuda, got '" << dev << "'");
  const std::string precision = args.get("precision", "fp32");
  const Device device = job.env.device(dev == "cuda" ? DeviceKind::cuda : DeviceKind::cpu);
  const DType compute = checked_precision(precision, device, "--precision");
  auto backend = make_backend(device, threads);
  auto net = models::build_model(*backend, models::model_spec(name, d.channels, d.classes), 0);
  StepRunner runner(*backend, *net, optim::OptimizerOptions{.momentum = 0.9, .weight_decay = 5e-4},
                    CrossEntropyParams{});
  if (compute != DType::f32) runner.set_precision(compute);

  nn::InitRng rng(1);
  const Shape in{batch, d.channels, d.height, d.width};
  Tensor images = Tensor::from_vector(in, rng.normal_vector(in.numel(), 1.0));
  Tensor labels = Tensor::zeros(Shape{batch}, DType::i32);
  for (int i = 0; i < batch; ++i)
    labels.data_as<int32_t>()[i] = static_cast<int32_t>(rng.next_u64() % d.classes);

  const int64_t macs = net->macs(Shape{1, d.channels, d.height, d.width});
  const int world = comm.size();
  const bool data_parallel = world > 1 || args.flag("data-parallel");
  // Gradients on the GPU are summed by NCCL (MPI here is not CUDA-aware), as in training.
  std::unique_ptr<distributed::Communicator> nccl;
  if (data_parallel && dev == "cuda" && !args.flag("infer-only"))
    nccl = distributed::make_nccl_communicator(comm, *backend);
  distributed::Communicator& device_comm = nccl ? *nccl : comm;
  const std::string allreduce = !data_parallel ? "none"
                                : nccl         ? "nccl"
                                : world > 1    ? "mpi"
                                               : "local";
  double train_ips = 0, infer_ips = 0, train_med = 0, infer_med = 0, local_med = 0;
  double first_step_s = 0;
  UploadTimes upload;
  if (!args.flag("infer-only")) {
    // The batch stays on the device for the timed steps.
    const Tensor dev_images = backend->upload_persistent(images);
    const Tensor dev_labels = backend->upload_persistent(labels);
    const auto train = [&] {
      runner.train_step_on_device(dev_images, dev_labels, 0.01);
      backend->synchronize();
    };
    // The first step plans every layer: cuDNN's algorithm search for each convolution shape on
    // CUDA, oneDNN's primitives on the CPU, and the first allocations. Timed on its own.
    first_step_s = time_iterations(0, 1, train)[0];
    if (data_parallel) {
      // Without communication first: every rank steps alone, as a single process would.
      local_med = median(time_iterations(warmup, iters, train));
      comm.barrier();
      distributed::GradientBucketer bucketer(*backend, device_comm, net->parameters());
      runner.set_gradient_sync([&] { bucketer.finish(); }, [&] { bucketer.confirm(); });
      train_med = median(time_iterations(warmup, iters, train));
      runner.set_gradient_sync(nullptr);
      // Averaged over ranks: equal with communication, each rank its own without.
      train_med = comm.all_reduce_sum(train_med) / world;
      local_med = comm.all_reduce_sum(local_med) / world;
    } else {
      train_med = median(time_iterations(warmup, iters, train));
      // On the CPU an upload is a copy in memory, nothing to time.
      if (device.kind == DeviceKind::cuda)
        upload = time_uploads(*backend, runner, images, dev_labels, warmup, iters);
    }
    train_ips = world * batch / train_med;
  }
  if (!args.flag("train-only")) {
    auto t = time_iterations(warmup, iters, [&] {
      runner.predict(images);
      backend->synchronize();
    });
    infer_med = median(t);
    infer_ips = batch / infer_med;
  }
  // Training is counted as three forward passes (forward, backward-data, backward-weights).
  const double train_gflops = train_ips * 3 * 2 * macs / 1e9,
               infer_gflops = infer_ips * 2 * macs / 1e9;
  if (comm.rank() != 0) return 0;
  const double overhead = local_med > 0 ? (train_med - local_med) / train_med : 0;
  if (args.flag("json")) {
    char buf[2048];
    std::snprintf(
        buf, sizeof(buf),
        "{\"model\": \"%s\", \"input\": [%d, %d, %d], \"batch\": %d, \"device\": \"%s\", "
        "\"precision\": \"%s\", "
        "\"threads\": %d, \"train_img_per_s\": %.2f, \"infer_img_per_s\": %.2f, "
        "\"train_iter_s_median\": %.4f, \"infer_iter_s_median\": %.4f, \"fwd_macs_per_img\": %lld, "
        "\"train_gflops\": %.1f, \"infer_gflops\": %.1f, \"peak_rss_mib\": %.1f, \"backend\": "
        "\"%s\", \"ranks\": %d, \"allreduce\": \"%s\", \"train_iter_s_no_comm\": %.4f, "
        "\"comm_overhead\": %.4f, \"batch_mib\": %.1f, \"upload_s_pageable\": %.4f, "
        "\"upload_s_pinned\": %.4f, \"train_iter_s_upload_overlapped\": %.4f, "
        "\"first_step_s\": %.3f}",
        name.c_str(), d.channels, d.height, d.width, batch, dev.c_str(), precision.c_str(), threads,
        train_ips, infer_ips, train_med, infer_med, static_cast<long long>(macs), train_gflops,
        infer_gflops, peak_rss_mib(), backend->name().c_str(), world, allreduce.c_str(), local_med,
        overhead, images.bytes() / 1048576.0, upload.pageable_s, upload.pinned_s,
        upload.overlapped_step_s, first_step_s);
    std::cout << buf << "\n";
  } else {
    std::printf("%s %dx%dx%d batch %d %s on %s\n", name.c_str(), d.channels, d.height, d.width,
                batch, precision.c_str(), backend->name().c_str());
    if (train_ips > 0)
      std::printf(
          "  train  %9.1f img/s  (%.4f s/iter, %.1f GFLOP/s); first step %.2f s (plans "
          "every layer)\n",
          train_ips, train_med, train_gflops, first_step_s);
    if (data_parallel && train_ips > 0)
      std::printf(
          "  %d rank(s) x batch %d: step %.4f s with gradient all-reduce (%s), %.4f s without; "
          "communication %.1f%% of the step\n",
          world, batch, train_med, allreduce.c_str(), local_med, 100 * overhead);
    if (upload.pageable_s > 0)
      std::printf(
          "  upload of the batch (%.1f MiB, not in the step above): %.4f s from pageable memory "
          "(train's way, before each step), %.4f s from pinned; step with the next batch's "
          "upload overlapped: %.4f s\n",
          images.bytes() / 1048576.0, upload.pageable_s, upload.pinned_s, upload.overlapped_step_s);
    if (infer_ips > 0)
      std::printf("  infer  %9.1f img/s  (%.4f s/iter, %.1f GFLOP/s)\n", infer_ips, infer_med,
                  infer_gflops);
    std::printf("  peak resident memory %.1f MiB\n", peak_rss_mib());
  }
  return 0;
}

}  // namespace rn::launch

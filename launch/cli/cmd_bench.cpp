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
#include <optional>
#include <thread>

#include "core/backend/profiler.h"
#include "core/check.h"
#include "core/models/model_spec.h"
#include "core/nn/init.h"
#include "distributed/gradient_bucketer.h"
#include "distributed/nccl_communicator.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/config.h"
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

// What one `resnet bench` of a network measures, read from its flags.
struct BenchPlan {
  std::string name, dev, precision, conv = "auto";
  DefaultInput d;
  int batch = 16, warmup = 3, iters = 10, threads = 1;
  Device device;
  DType compute = DType::f32;
  ConvAlgorithm conv_algorithm = ConvAlgorithm::automatic;
  bool train = true, infer = true, data_parallel = false, profile = false;
};

BenchPlan plan_bench(const Args& args, const Job& job) {
  BenchPlan p;
  p.name = args.required("model");
  p.d = input_from_args(args, p.name);
  p.batch = args.get_int("batch", 16), p.warmup = args.get_int("warmup", 3);
  p.iters = args.get_int("iters", 10);
  p.threads = args.get_int("threads", job.env.threads);
  if (p.batch < 1 || p.warmup < 0 || p.iters < 1 || p.threads < 1)
    RN_FAIL("--batch, --iters and --threads must be positive, --warmup >= 0");
  p.device = device_flag(args, job.env);
  p.dev = p.device.kind == DeviceKind::cuda ? "cuda" : "cpu";
  p.precision = args.get("precision", "fp32");
  p.compute = checked_precision(p.precision, p.device, "--precision");
  p.conv = args.get("conv-algorithm", "auto");
  const auto named = std::find_if(std::begin(kConvAlgorithmNames), std::end(kConvAlgorithmNames),
                                  [&](const auto& n) { return p.conv == n.first; });
  if (named == std::end(kConvAlgorithmNames))
    RN_FAIL("--conv-algorithm must be auto, direct or winograd, got '" << p.conv << "'");
  p.conv_algorithm = named->second;
  p.train = !args.flag("infer-only"), p.infer = !args.flag("train-only");
  p.data_parallel = job.comm.size() > 1 || args.flag("data-parallel");
  p.profile = args.flag("profile");
  return p;
}

// The medians, in seconds per step, and what follows from them.
struct BenchTimes {
  double train_med = 0, infer_med = 0, local_med = 0, first_step_s = 0;
  double train_ips = 0, infer_ips = 0, train_gflops = 0, infer_gflops = 0, overhead = 0;
  std::string allreduce = "none";
  std::string conv_summary;  // the convolutions' algorithms, where the backend chooses
  UploadTimes upload;
  std::optional<ProfileReport> train_profile, infer_profile;  // --profile
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// --profile: `iters` more steps, each call timed, after the figures above (which it does not
// slow).
struct ProfileRun {
  Profiler& profiler;
  double peak_gflops = 0;
  int iters = 0;
  template <typename F>
  ProfileReport operator()(F step) {
    profiler.reset();
    profiler.set_enabled(true);
    const std::vector<double> t = time_iterations(0, iters, step);
    profiler.set_enabled(false);
    return make_profile_report(profiler, iters, mean(t), peak_gflops);
  }
};

// Training steps on a batch that stays on the device: the first step apart (it plans every
// layer: cuDNN's algorithm search for each convolution shape on CUDA, oneDNN's primitives on the
// CPU, the first allocations), then the median; data-parallel, with and without the gradient
// all-reduce (NCCL on GPUs, as in training: MPI here is not CUDA-aware).
// `device_backend`: the backend itself, under the profiling one with --profile (NCCL takes it).
void time_training(const BenchPlan& p, Backend& backend, Backend& device_backend,
                   models::Network& net, StepRunner& runner, const Tensor& images,
                   const Tensor& labels, distributed::Communicator& comm, ProfileRun* profile,
                   BenchTimes& t) {
  const int world = comm.size();
  std::unique_ptr<distributed::Communicator> nccl;
  if (p.data_parallel && p.device.kind == DeviceKind::cuda)
    nccl = distributed::make_nccl_communicator(comm, device_backend);
  t.allreduce = !p.data_parallel ? "none" : nccl ? "nccl" : world > 1 ? "mpi" : "local";
  const Tensor dev_images = backend.upload_persistent(images);
  const Tensor dev_labels = backend.upload_persistent(labels);
  const auto train = [&] {
    runner.train_step_on_device(dev_images, dev_labels, 0.01);
    backend.synchronize();
  };
  t.first_step_s = time_iterations(0, 1, train)[0];
  if (p.data_parallel) {
    // Without communication first: every rank steps alone, as a single process would.
    t.local_med = median(time_iterations(p.warmup, p.iters, train));
    comm.barrier();
    distributed::GradientBucketer bucketer(backend, nccl ? *nccl : comm, net.parameters());
    runner.set_gradient_sync([&] { bucketer.finish(); }, [&] { bucketer.confirm(); });
    t.train_med = median(time_iterations(p.warmup, p.iters, train));
    if (profile) t.train_profile = (*profile)(train);
    runner.set_gradient_sync(nullptr);
    // Averaged over ranks: equal with communication, each rank its own without.
    t.train_med = comm.all_reduce_sum(t.train_med) / world;
    t.local_med = comm.all_reduce_sum(t.local_med) / world;
  } else {
    t.train_med = median(time_iterations(p.warmup, p.iters, train));
    if (profile) t.train_profile = (*profile)(train);
    // On the CPU an upload is a copy in memory, nothing to time.
    if (p.device.kind == DeviceKind::cuda)
      t.upload = time_uploads(backend, runner, images, dev_labels, p.warmup, p.iters);
  }
  t.train_ips = world * p.batch / t.train_med;
}

void print_bench_json(const BenchPlan& p, const BenchTimes& t, int64_t macs,
                      const std::string& backend, int world, double batch_mib) {
  char buf[4096];
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
      "\"first_step_s\": %.3f, \"conv_algorithm\": \"%s\", \"conv_algorithms\": \"%s\"}",
      p.name.c_str(), p.d.channels, p.d.height, p.d.width, p.batch, p.dev.c_str(),
      p.precision.c_str(), p.threads, t.train_ips, t.infer_ips, t.train_med, t.infer_med,
      static_cast<long long>(macs), t.train_gflops, t.infer_gflops, peak_rss_mib(), backend.c_str(),
      world, t.allreduce.c_str(), t.local_med, t.overhead, batch_mib, t.upload.pageable_s,
      t.upload.pinned_s, t.upload.overlapped_step_s, t.first_step_s, p.conv.c_str(),
      t.conv_summary.c_str());
  std::string json = buf;
  if (t.train_profile || t.infer_profile) {
    json.pop_back();  // the closing brace
    if (t.train_profile) json += ", \"profile_train\": " + profile_json(*t.train_profile);
    if (t.infer_profile) json += ", \"profile_infer\": " + profile_json(*t.infer_profile);
    json += "}";
  }
  std::cout << json << "\n";
}

void print_bench_text(const BenchPlan& p, const BenchTimes& t, const std::string& backend,
                      int world, double batch_mib) {
  std::printf("%s %dx%dx%d batch %d %s on %s\n", p.name.c_str(), p.d.channels, p.d.height,
              p.d.width, p.batch, p.precision.c_str(), backend.c_str());
  if (t.train_ips > 0)
    std::printf(
        "  train  %9.1f img/s  (%.4f s/iter, %.1f GFLOP/s); first step %.2f s (plans "
        "every layer)\n",
        t.train_ips, t.train_med, t.train_gflops, t.first_step_s);
  if (p.data_parallel && t.train_ips > 0)
    std::printf(
        "  %d rank(s) x batch %d: step %.4f s with gradient all-reduce (%s), %.4f s without; "
        "communication %.1f%% of the step\n",
        world, p.batch, t.train_med, t.allreduce.c_str(), t.local_med, 100 * t.overhead);
  if (t.upload.pageable_s > 0)
    std::printf(
        "  upload of the batch (%.1f MiB, not in the step above): %.4f s from pageable memory "
        "(train's way, before each step), %.4f s from pinned; step with the next batch's "
        "upload overlapped: %.4f s\n",
        batch_mib, t.upload.pageable_s, t.upload.pinned_s, t.upload.overlapped_step_s);
  if (t.infer_ips > 0)
    std::printf("  infer  %9.1f img/s  (%.4f s/iter, %.1f GFLOP/s)\n", t.infer_ips, t.infer_med,
                t.infer_gflops);
  if (!t.conv_summary.empty())
    std::printf("  --conv-algorithm %s: %s\n", p.conv.c_str(), t.conv_summary.c_str());
  std::printf("  peak resident memory %.1f MiB\n", peak_rss_mib());
  if (t.train_profile)
    std::printf("training step profile:\n%s", profile_text(*t.train_profile, 15).c_str());
  if (t.infer_profile)
    std::printf("inference profile:\n%s", profile_text(*t.infer_profile, 15).c_str());
}

}  // namespace

const CommandSpec& bench_command() {
  static const CommandSpec c{
      "bench",
      "",
      "Training and inference images/s of a network on a synthetic batch (data-parallel under "
      "mpirun); --allreduce: the gradient all-reduce; --peak: convolution GFLOP/s.",
      {{"model", Flag::Takes::value, "NAME", "the network (required, but with --peak)"},
       {"input", Flag::Takes::value, "CxHxW", "input size (default: the network's data set's)"},
       {"classes", Flag::Takes::value, "N", "classes (default: the network's data set's)"},
       {"batch", Flag::Takes::value, "B", "images per rank and step (default 16)"},
       {"threads", Flag::Takes::value, "T", "CPU threads (default: this rank's share)"},
       {"device", Flag::Takes::value, "cpu|cuda", "where to run (default cpu)"},
       {"precision", Flag::Takes::value, "fp32|bf16|fp16", "compute type (default fp32)"},
       {"conv-algorithm", Flag::Takes::value, "auto|direct|winograd",
        "CPU 3x3 convolutions of stride 1 in fp32 (default auto: Winograd where it wins)"},
       {"warmup", Flag::Takes::value, "N", "untimed steps first (default 3; --allreduce 2)"},
       {"iters", Flag::Takes::value, "N", "timed steps; the median is reported (default 10)"},
       {"train-only", Flag::Takes::nothing, "", "time training steps only"},
       {"infer-only", Flag::Takes::nothing, "", "time inference only"},
       {"data-parallel", Flag::Takes::nothing, "", "with the gradient all-reduce on one rank too"},
       {"profile", Flag::Takes::nothing, "",
        "where a step's time goes: by op kind and layer, convolutions per pass against the "
        "peak"},
       {"allreduce", Flag::Takes::nothing, "",
        "all-reduce of a network's gradients (--model, "
        "default resnet50)"},
       {"bucket-kib", Flag::Takes::value, "K", "--allreduce: bucket size (default 25600)"},
       {"first-bucket-kib", Flag::Takes::value, "K", "--allreduce: first bucket (default 1024)"},
       {"sweep", Flag::Takes::nothing, "", "--allreduce: bandwidth over message sizes"},
       {"max-mib", Flag::Takes::value, "M", "--sweep: the largest message (default 64)"},
       {"peak", Flag::Takes::nothing, "", "convolution GFLOP/s in fp32 and bf16"},
       {"json", Flag::Takes::nothing, "", "one JSON object"}}};
  return c;
}

int run_bench(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, bench_command());
  if (args.flag("allreduce")) return run_allreduce_bench(args, job);
  if (args.flag("peak")) return run_peak_bench(args, job);
  const BenchPlan p = plan_bench(args, job);
  auto device_backend = make_backend(p.device, p.threads);
  device_backend->set_conv_algorithm(p.conv_algorithm);
  // --profile: everything runs through the profiling backend, timing off until the profile.
  Profiler profiler;
  std::unique_ptr<Backend> profiling;
  std::optional<ProfileRun> profile;
  if (p.profile) {
    profiling = make_profiling_backend(*device_backend, profiler);
    profile.emplace(
        ProfileRun{profiler, profile_peak_gflops(p.device, p.compute, p.threads), p.iters});
  }
  Backend* const backend = profiling ? profiling.get() : device_backend.get();
  auto net =
      models::build_model(*backend, models::model_spec(p.name, p.d.channels, p.d.classes), 0);
  StepRunner runner(*backend, *net, optim::OptimizerOptions{.momentum = 0.9, .weight_decay = 5e-4},
                    CrossEntropyParams{});
  if (p.compute != DType::f32) runner.set_precision(p.compute);
  if (profile) runner.set_profiler(&profiler);

  nn::InitRng rng(1);
  const Shape in{p.batch, p.d.channels, p.d.height, p.d.width};
  Tensor images = Tensor::from_vector(in, rng.normal_vector(in.numel(), 1.0));
  Tensor labels = Tensor::zeros(Shape{p.batch}, DType::i32);
  for (int i = 0; i < p.batch; ++i)
    labels.data_as<int32_t>()[i] = static_cast<int32_t>(rng.next_u64() % p.d.classes);

  const int64_t macs = net->macs(Shape{1, p.d.channels, p.d.height, p.d.width});
  BenchTimes t;
  if (p.train)
    time_training(p, *backend, *device_backend, *net, runner, images, labels, comm,
                  profile ? &*profile : nullptr, t);
  if (p.infer) {
    const auto infer = [&] {
      runner.predict(images);
      backend->synchronize();
    };
    t.infer_med = median(time_iterations(p.warmup, p.iters, infer));
    t.infer_ips = p.batch / t.infer_med;
    if (profile) t.infer_profile = (*profile)(infer);
  }
  // Training is counted as three forward passes (forward, backward-data, backward-weights).
  t.train_gflops = t.train_ips * 3 * 2 * macs / 1e9, t.infer_gflops = t.infer_ips * 2 * macs / 1e9;
  t.conv_summary = backend->conv_algorithm_summary();
  if (comm.rank() != 0) return 0;
  t.overhead = t.local_med > 0 ? (t.train_med - t.local_med) / t.train_med : 0;
  const double batch_mib = images.bytes() / 1048576.0;
  if (args.flag("json"))
    print_bench_json(p, t, macs, backend->name(), comm.size(), batch_mib);
  else
    print_bench_text(p, t, backend->name(), comm.size(), batch_mib);
  return 0;
}

}  // namespace rn::launch

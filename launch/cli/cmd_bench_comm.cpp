// `resnet bench --allreduce`: the gradient bucketer's all-reduce of a network's gradients against
// one plain MPI_Allreduce of the same bytes, run under mpirun; the median of timed iterations.
// `--sweep`: the all-reduce time of each message size, for the scaling model.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>

#include "core/check.h"
#include "core/models/model_spec.h"
#include "distributed/gradient_bucketer.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"

namespace rn::launch {
namespace {

template <typename F>
double median_seconds(distributed::Communicator& comm, int warmup, int iters, F f) {
  std::vector<double> t;
  for (int i = 0; i < warmup + iters; ++i) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) t.push_back(s);
  }
  // Every rank reports the slowest rank's time: a collective ends when its last rank is done.
  double m = median(t);
  std::vector<double> all(comm.size(), 0.0);
  all[comm.rank()] = m;
  comm.all_reduce_sum(all.data(), all.size());
  return *std::max_element(all.begin(), all.end());
}

}  // namespace

// All-reduce time against message size, for fitting a cost model: one JSON line per size, from
// 4 KiB up by factors of 4 to --max-mib, through the path training takes (the communicator's
// non-blocking all-reduce).
int run_allreduce_sweep(const Args& args, distributed::Communicator& comm) {
  const int warmup = args.get_int("warmup", 2), iters = args.get_int("iters", 10);
  const int max_mib = args.get_int("max-mib", 64);
  if (warmup < 0 || iters < 1 || max_mib < 1)
    RN_FAIL("--iters and --max-mib must be positive, --warmup >= 0");
  std::vector<float> buf((static_cast<size_t>(max_mib) << 20) / sizeof(float), 1.f);
  for (size_t bytes = 4 << 10; bytes <= static_cast<size_t>(max_mib) << 20; bytes *= 4) {
    const size_t floats = bytes / sizeof(float);
    const double s = median_seconds(comm, warmup, iters,
                                    [&] { comm.all_reduce_sum_async(buf.data(), floats)->wait(); });
    if (comm.rank() == 0)
      std::printf("{\"ranks\": %d, \"bytes\": %zu, \"seconds\": %.7f, \"gb_per_s\": %.4f}\n",
                  comm.size(), bytes, s, static_cast<double>(bytes) / s / 1e9);
  }
  return 0;
}

namespace {

// Gradients with a network's parameter shapes, as plain host tensors.
struct HostGradients {
  std::deque<nn::Parameter> storage;  // a deque: `named` points into it
  std::vector<nn::NamedParameter> named;

  void fill(Backend& backend, const models::ModelSpec& spec) {
    auto net = models::build_model(backend, spec, 0);
    for (auto& p : net->parameters()) {
      nn::Parameter& q = storage.emplace_back();
      q.shape = p.param->shape;
      q.grad = Tensor::from_vector(q.shape, std::vector<float>(q.shape.numel(), 1.f));
      named.push_back({p.name, &q});
    }
  }

  size_t floats() const {
    size_t n = 0;
    for (auto& p : storage) n += static_cast<size_t>(p.shape.numel());
    return n;
  }

  // Last parameter first, as backward does: each gradient goes where the parameter's
  // grad_source says (after the first step, the bucketer's own buffer), then is marked ready.
  void mark_ready_as_backward_does() {
    for (size_t k = storage.size(); k-- > 0;) {
      nn::Parameter& q = storage[k];
      if (q.grad_source) {
        Tensor lent = q.grad_source(q.grad.desc());
        if (lent.defined()) q.grad = lent;
      }
      q.mark_ready();
    }
  }
};

}  // namespace

int run_allreduce_bench(const Args& args, const Job& job) {
  distributed::Communicator& comm = job.comm;
  if (args.flag("sweep")) return run_allreduce_sweep(args, comm);
  const std::string name = args.get("model", "resnet50");
  const DefaultInput d = input_from_args(args, name);
  const int warmup = args.get_int("warmup", 2), iters = args.get_int("iters", 10);
  if (warmup < 0 || iters < 1) RN_FAIL("--iters must be positive, --warmup >= 0");
  const size_t bucket = static_cast<size_t>(args.get_int("bucket-kib", 25 << 10)) << 10;
  const size_t first = static_cast<size_t>(args.get_int("first-bucket-kib", 1 << 10)) << 10;

  auto backend = make_cpu_backend(1);
  HostGradients g;
  g.fill(*backend, models::model_spec(name, d.channels, d.classes));
  const size_t floats = g.floats();
  const double bytes = static_cast<double>(floats) * sizeof(float);

  std::vector<float> flat(floats, 1.f);
  const double plain_s = median_seconds(comm, warmup, iters, [&] {
    RN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, flat.data(), static_cast<int>(floats), MPI_FLOAT,
                               MPI_SUM, MPI_COMM_WORLD));
  });
  const double nonblocking_s = median_seconds(
      comm, warmup, iters, [&] { comm.all_reduce_sum_async(flat.data(), floats)->wait(); });
  distributed::GradientBucketer bucketer(*backend, comm, g.named, bucket, first);
  const double bucketed_s = median_seconds(comm, warmup, iters, [&] {
    g.mark_ready_as_backward_does();
    bucketer.finish();
  });

  if (comm.rank() != 0) return 0;
  const double plain_gbs = bytes / plain_s / 1e9, bucketed_gbs = bytes / bucketed_s / 1e9;
  if (args.flag("json")) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "{\"model\": \"%s\", \"ranks\": %d, \"bytes\": %.0f, \"buckets\": %zu, "
                  "\"mpi_allreduce_s\": %.5f, \"bucketer_s\": %.5f, \"mpi_allreduce_gb_per_s\": "
                  "%.3f, \"bucketer_gb_per_s\": %.3f, \"bucketer_vs_mpi\": %.3f}",
                  name.c_str(), comm.size(), bytes, bucketer.num_buckets(), plain_s, bucketed_s,
                  plain_gbs, bucketed_gbs, plain_s / bucketed_s);
    std::cout << buf << "\n";
  } else {
    std::printf("all-reduce of %s's gradients (%.1f MiB) on %d rank(s)\n", name.c_str(),
                bytes / (1 << 20), comm.size());
    std::printf("  MPI_Allreduce, one buffer   %8.2f ms  %6.2f GB/s\n", plain_s * 1e3, plain_gbs);
    std::printf("  MPI_Iallreduce, one buffer  %8.2f ms  %6.2f GB/s\n", nonblocking_s * 1e3,
                bytes / nonblocking_s / 1e9);
    std::printf("  bucketer, %3zu bucket(s)     %8.2f ms  %6.2f GB/s  (%.2fx of MPI_Allreduce)\n",
                bucketer.num_buckets(), bucketed_s * 1e3, bucketed_gbs, plain_s / bucketed_s);
  }
  return 0;
}

}  // namespace rn::launch

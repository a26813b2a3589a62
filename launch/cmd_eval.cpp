// `resnet eval`: top-1 / top-5 on the config's test split of one checkpoint or an ensemble of
// them (softmax averaged over models and, with --crops 10, over ten views of each image).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/loader.h"
#include "launch/args.h"
#include "launch/checkpointing.h"
#include "launch/commands.h"
#include "launch/logging.h"
#include "launch/step.h"
#include "launch/trainer.h"

namespace rn::launch {
namespace {

// View `v` of every sample of the batch (the loader writes each sample's views in a row).
Tensor view_of(const io::HostBatch& b, int v) {
  Tensor t = Tensor::zeros(Shape{b.n, b.c, b.h, b.w});
  const size_t view = static_cast<size_t>(b.c) * b.h * b.w;
  float* out = t.data_as<float>();
  for (int n = 0; n < b.n; ++n)
    std::memcpy(out + view * n, b.images.data() + view * (static_cast<size_t>(n) * b.views + v),
                view * sizeof(float));
  return t;
}

// Adds softmax(logits) row by row into `probs` (N x K).
void add_softmax(const Tensor& logits, std::vector<double>& probs) {
  const int64_t n = logits.shape()[0], k = logits.shape()[1];
  const float* l = logits.data_as<float>();
  for (int64_t i = 0; i < n; ++i) {
    const float* row = l + i * k;
    const float mx = *std::max_element(row, row + k);
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
    for (int64_t j = 0; j < k; ++j)
      probs[i * k + j] += std::exp(static_cast<double>(row[j] - mx)) / sum;
  }
}

}  // namespace

int run_eval(const std::vector<std::string>& argv, distributed::Communicator& comm) {
  Args args(argv,
            FlagSpec{{"config", "crops", "precision"}, {"checkpoint", "set"}, {"json", "verbose"}});
  init_logging(comm.rank(), args.flag("verbose"));
  const auto files = args.all("checkpoint");
  if (files.empty()) RN_FAIL("--checkpoint is required (repeat it for an ensemble)");
  const int crops = args.get_int("crops", 1);
  if (crops != 1 && crops != 10) RN_FAIL("--crops must be 1 or 10, got " << crops);
  const Config cfg = load_config(args.required("config"), args.all("set"));
  // No file-list cache for eval: the run directory may belong to a job still running.
  const DataSplits data =
      load_data(cfg, comm, DataOptions{.eval_views = crops, .cache_listing = false});
  const int threads = cfg.train.threads > 0 ? cfg.train.threads : default_threads_per_rank();
  const Device device{cfg.train.device == "cuda" ? DeviceKind::cuda : DeviceKind::cpu, 0};
  // The config's precision unless --precision says otherwise; the weights stay f32.
  const DType compute =
      args.has("precision")
          ? checked_precision(args.get("precision"), device, "--precision")
          : checked_precision(cfg.train.precision, device, cfg.source + ": 'train.precision'");
  auto backend = make_backend(device, threads);
  // Each member is built as its checkpoint names it, with the config's input and classes.
  std::vector<std::unique_ptr<models::Network>> nets;
  for (const auto& f : files) {
    const io::CheckpointSummary s = io::read_checkpoint_summary(f);
    models::ModelSpec spec;
    try {
      spec = models::model_spec(s.header.model, cfg.model.in_channels, cfg.model.num_classes);
    } catch (const Error& e) {
      RN_FAIL("checkpoint '" << f << "': model: " << e.what());
    }
    nets.push_back(models::build_model(*backend, spec, 0));
    load_into_model(f, *nets.back(), *backend, /*with_momentum=*/false, comm);
    nets.back()->set_training(false);
  }
  io::DistributedSampler sampler(data.test->size(), 0, /*shuffle=*/false, comm.rank(),
                                 comm.size(), /*wrap=*/false);
  io::LoaderOptions lo = loader_options(cfg, /*train=*/false);
  // Ten views per sample: a tenth of the samples per batch keeps the batch's memory.
  lo.batch_size = std::max(1, cfg.data.test_batch_size / crops);
  io::Loader loader(*data.test, sampler, lo);
  loader.start_epoch(0);
  const int k = cfg.model.num_classes;
  io::HostBatch b;
  double top1 = 0, top5 = 0, samples = 0, bad = 0;
  std::vector<double> probs;
  while (loader.next(b)) {
    probs.assign(static_cast<size_t>(b.n) * k, 0.0);
    bad += b.bad;
    for (int v = 0; v < b.views; ++v) {
      const Tensor x = to_compute(*backend, backend->upload(view_of(b, v)), compute);
      for (auto& net : nets) add_softmax(backend->download(net->forward(x)), probs);
    }
    for (int i = 0; i < b.n; ++i) {
      const double* p = probs.data() + static_cast<size_t>(i) * k;
      const double mine = p[b.labels[i]];
      int above = 0;  // classes ranked before the true one (ties go to the lower index)
      for (int j = 0; j < k; ++j) above += p[j] > mine || (p[j] == mine && j < b.labels[i]);
      top1 += above < 1, top5 += above < 5;
    }
    samples += b.n;
  }
  top1 = comm.all_reduce_sum(top1), top5 = comm.all_reduce_sum(top5);
  samples = comm.all_reduce_sum(samples);
  bad = comm.all_reduce_sum(bad);
  if (comm.rank() != 0) return 0;
  if (args.flag("json"))
    std::printf(
        "{\"models\": %zu, \"crops\": %d, \"samples\": %lld, \"top1\": %.6f, \"top5\": %.6f, "
        "\"bad_samples\": %lld}\n",
        nets.size(), crops, static_cast<long long>(samples), top1 / samples, top5 / samples,
        static_cast<long long>(bad));
  else
    std::printf("eval: %zu model(s), %d crop(s), %lld test samples: top-1 %.4f, top-5 %.4f%s\n",
                nets.size(), crops, static_cast<long long>(samples), top1 / samples,
                top5 / samples,
                bad > 0 ? str_cat(" (", static_cast<long long>(bad), " bad samples substituted)").c_str()
                        : "");
  return 0;
}

}  // namespace rn::launch

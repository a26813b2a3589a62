// `resnet eval`: top-1 / top-5 on the config's test split of one checkpoint or an ensemble of
// them (softmax averaged over models and, with --crops 10, over ten views of each image).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

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

// The ten views of the usual 10-crop evaluation: four corners and the centre at 7/8 of the size
// (224 of 256 on ImageNet), each also mirrored.
struct View {
  int y, x;
  bool flip;
};

std::vector<View> views(int crops, int h, int w, int ch, int cw) {
  if (crops == 1) return {View{0, 0, false}};
  std::vector<View> v;
  for (bool flip : {false, true})
    for (auto [y, x] : {std::pair{0, 0},
                        {0, w - cw},
                        {h - ch, 0},
                        {h - ch, w - cw},
                        {(h - ch) / 2, (w - cw) / 2}})
      v.push_back(View{y, x, flip});
  return v;
}

// The batch's images cut to one view (the whole image for 1 crop).
Tensor view_of(const io::HostBatch& b, const View& v, int ch, int cw) {
  Tensor t = Tensor::zeros(Shape{b.n, b.c, ch, cw});
  float* out = t.data_as<float>();
  for (int n = 0; n < b.n; ++n)
    for (int c = 0; c < b.c; ++c)
      for (int y = 0; y < ch; ++y) {
        const float* row =
            b.images.data() + ((static_cast<size_t>(n) * b.c + c) * b.h + v.y + y) * b.w;
        float* dst = out + ((static_cast<size_t>(n) * b.c + c) * ch + y) * cw;
        for (int x = 0; x < cw; ++x) dst[x] = row[v.flip ? v.x + cw - 1 - x : v.x + x];
      }
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
  const DataSplits data = load_data(cfg);
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int local_ranks = local ? std::max(1, std::atoi(local)) : 1;
  const int threads =
      cfg.train.threads > 0
          ? cfg.train.threads
          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_ranks);
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
  const io::Normalization norm = io::compute_normalization(data.train);
  io::DistributedSampler sampler(data.test.count, 0, /*shuffle=*/false, comm.rank(), comm.size(),
                                 /*wrap=*/false);
  io::Loader loader(data.test, sampler,
                    io::LoaderOptions{.batch_size = cfg.data.test_batch_size,
                                      .workers = cfg.data.workers,
                                      .prefetch = 2,
                                      .drop_last = false,
                                      .norm = norm});
  loader.start_epoch(0);
  const int h = data.test.height, w = data.test.width;
  const int ch = crops == 1 ? h : h * 7 / 8, cw = crops == 1 ? w : w * 7 / 8;
  const auto vs = views(crops, h, w, ch, cw);
  const int k = cfg.model.num_classes;
  io::HostBatch b;
  double top1 = 0, top5 = 0, samples = 0;
  std::vector<double> probs;
  while (loader.next(b)) {
    probs.assign(static_cast<size_t>(b.n) * k, 0.0);
    for (const auto& v : vs) {
      const Tensor x = to_compute(*backend, backend->upload(view_of(b, v, ch, cw)), compute);
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
  if (comm.rank() != 0) return 0;
  if (args.flag("json"))
    std::printf(
        "{\"models\": %zu, \"crops\": %d, \"samples\": %lld, \"top1\": %.6f, \"top5\": %.6f}\n",
        nets.size(), crops, static_cast<long long>(samples), top1 / samples, top5 / samples);
  else
    std::printf("eval: %zu model(s), %d crop(s), %lld test samples: top-1 %.4f, top-5 %.4f\n",
                nets.size(), crops, static_cast<long long>(samples), top1 / samples,
                top5 / samples);
  return 0;
}

}  // namespace rn::launch

// Scoring members and their ensemble in one pass over the test split.
#include "launch/train/ensemble_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/loader.h"
#include "launch/train/checkpointing.h"
#include "launch/train/data.h"
#include "launch/train/json_text.h"
#include "launch/train/step.h"

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

// Classes ranked before the true one (ties go to the lower index).
int classes_above(const double* p, int k, int label) {
  int above = 0;
  for (int j = 0; j < k; ++j) above += p[j] > p[label] || (p[j] == p[label] && j < label);
  return above;
}

struct Members {
  std::unique_ptr<Backend> backend;
  std::vector<std::unique_ptr<models::Network>> nets;
};

Device device_of(const Config& cfg, const distributed::RankEnvironment& env) {
  return env.device(cfg.train.device.value);
}

Members load_members(const Config& cfg, const std::vector<EnsembleModel>& models,
                     const distributed::RankEnvironment& env, const TestHooks& hooks,
                     distributed::Communicator& comm) {
  const CheckpointSharing sharing = checkpoint_sharing(env, comm, hooks);
  Members m;
  m.backend = make_backend(device_of(cfg, env), env.threads_or(cfg.train.threads));
  for (const auto& model : models) {
    const io::CheckpointSummary s = io::read_checkpoint_summary(model.checkpoint);
    models::ModelSpec spec;
    try {
      spec = models::model_spec(s.header.model, cfg.model.in_channels, cfg.model.num_classes);
    } catch (const Error& e) {
      RN_FAIL("checkpoint '" << model.checkpoint << "': model: " << e.what());
    }
    m.nets.push_back(models::build_model(*m.backend, spec, 0));
    load_into_model(model.checkpoint, *m.nets.back(), *m.backend, /*with_momentum=*/false, comm,
                    sharing);
    m.nets.back()->set_training(false);
  }
  return m;
}

// One pass over the test split with `crops` views of each sample.
CropScores score(const Config& cfg, Members& members, const std::vector<EnsembleModel>& models,
                 int crops, DType compute, distributed::Communicator& comm, int list_threads) {
  // No file-list cache: the run directory may belong to a job still running.
  const DataSplits data = load_data(
      cfg, comm,
      DataOptions{.eval_views = crops, .cache_listing = false, .list_threads = list_threads});
  io::DistributedSampler sampler(data.test->size(), 0, /*shuffle=*/false, comm.rank(), comm.size(),
                                 /*wrap=*/false);
  io::LoaderOptions lo = loader_options(cfg, /*train=*/false);
  // Ten views per sample: a tenth of the samples per batch keeps the batch's memory.
  lo.batch_size = std::max(1, cfg.data.test_batch_size / crops);
  io::Loader loader(*data.test, sampler, lo);
  loader.start_epoch(0);
  const int k = cfg.model.num_classes;
  const size_t nm = models.size();
  std::vector<double> counts(2 * (nm + 1) + 2, 0.0);  // top1, top5 per row; samples, bad
  io::HostBatch b;
  std::vector<std::vector<double>> probs(nm + 1);
  while (loader.next(b)) {
    for (auto& p : probs) p.assign(static_cast<size_t>(b.n) * k, 0.0);
    for (int v = 0; v < b.views; ++v) {
      const Tensor x =
          to_compute(*members.backend, members.backend->upload(view_of(b, v)), compute);
      for (size_t m = 0; m < nm; ++m)
        add_softmax(members.backend->download(members.nets[m]->forward(x)), probs[m]);
    }
    // The ensemble: the weighted sum of the members' (view-summed) probabilities. Its ranking is
    // that of the weighted mean; with equal weights two identical members rank as one.
    for (size_t m = 0; m < nm; ++m)
      for (size_t i = 0; i < probs[nm].size(); ++i) probs[nm][i] += models[m].weight * probs[m][i];
    for (size_t row = 0; row <= nm; ++row)
      for (int i = 0; i < b.n; ++i) {
        const int above =
            classes_above(probs[row].data() + static_cast<size_t>(i) * k, k, b.labels[i]);
        counts[2 * row] += above < 1, counts[2 * row + 1] += above < 5;
      }
    counts[counts.size() - 2] += b.n;
    counts[counts.size() - 1] += b.bad;
  }
  comm.all_reduce_sum(counts.data(), counts.size());  // integers below 2^53: exact
  CropScores s{.crops = crops,
               .samples = static_cast<int64_t>(counts[counts.size() - 2]),
               .bad = static_cast<int64_t>(counts[counts.size() - 1])};
  for (size_t row = 0; row <= nm; ++row) {
    s.top1.push_back(static_cast<int64_t>(counts[2 * row]));
    s.top5.push_back(static_cast<int64_t>(counts[2 * row + 1]));
  }
  return s;
}

std::string fraction(int64_t count, int64_t samples) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f",
                samples > 0 ? static_cast<double>(count) / samples : 0.0);
  return text;
}

}  // namespace

EnsembleScores evaluate_ensemble(const Config& cfg, const std::vector<EnsembleModel>& models,
                                 const ScoreOptions& options, distributed::Communicator& comm,
                                 const distributed::RankEnvironment& env) {
  RN_CHECK(!models.empty(), "evaluate_ensemble of no model");
  const DType compute = options.precision;
  check_precision_runs(compute, device_of(cfg, env), options.precision_source);
  Members members = load_members(cfg, models, env, options.hooks, comm);
  EnsembleScores s{.models = models};
  for (int c : options.crops)
    s.by_crops.push_back(score(cfg, members, models, c, compute, comm, std::max(4, env.cpus)));
  return s;
}

std::string scores_table(const EnsembleScores& s) {
  size_t width = 8;  // "ensemble"
  for (const auto& m : s.models) width = std::max(width, m.name.size());
  std::ostringstream out;
  out << std::left << std::setw(static_cast<int>(width)) << "model"
      << "  weight";
  for (const auto& c : s.by_crops) {
    const std::string views = c.crops == 1 ? "1 crop" : std::to_string(c.crops) + " crops";
    out << "  " << std::setw(18) << "top-1 (" + views + ")" << std::setw(18)
        << "top-5 (" + views + ")";
  }
  out << "\n";
  for (size_t row = 0; row <= s.models.size(); ++row) {
    const bool ens = row == s.models.size();
    out << std::setw(static_cast<int>(width)) << (ens ? "ensemble" : s.models[row].name) << "  "
        << std::setw(6);
    if (ens)
      out << "";
    else
      out << s.models[row].weight;
    for (const auto& c : s.by_crops)
      out << "  " << std::setw(18) << fraction(c.top1[row], c.samples) << std::setw(18)
          << fraction(c.top5[row], c.samples);
    out << "\n";
  }
  const CropScores& first = s.by_crops.front();
  out << "(" << first.samples << " test samples, each once"
      << (first.bad > 0 ? str_cat("; ", first.bad, " bad samples substituted") : std::string())
      << ")\n";
  return out.str();
}

std::string scores_json(const EnsembleScores& s) {
  const size_t nm = s.models.size();
  const CropScores& first = s.by_crops.front();
  std::ostringstream out;
  out << std::setprecision(6) << std::fixed;
  out << "{\"models\": " << nm << ", \"crops\": " << first.crops
      << ", \"samples\": " << first.samples
      << ", \"top1\": " << static_cast<double>(first.top1[nm]) / std::max<int64_t>(first.samples, 1)
      << ", \"top5\": " << static_cast<double>(first.top5[nm]) / std::max<int64_t>(first.samples, 1)
      << ", \"bad_samples\": " << first.bad << ", \"results\": [";
  bool comma = false;
  for (const auto& c : s.by_crops)
    for (size_t row = 0; row <= nm; ++row) {
      out << (comma ? ", " : "") << "{\"name\": \""
          << json_escape(row == nm ? "ensemble" : s.models[row].name) << "\"";
      if (row < nm)
        out << ", \"checkpoint\": \"" << json_escape(s.models[row].checkpoint) << "\""
            << ", \"weight\": " << s.models[row].weight;
      out << ", \"crops\": " << c.crops << ", \"top1_correct\": " << c.top1[row]
          << ", \"top5_correct\": " << c.top5[row]
          << ", \"top1\": " << static_cast<double>(c.top1[row]) / std::max<int64_t>(c.samples, 1)
          << ", \"top5\": " << static_cast<double>(c.top5[row]) / std::max<int64_t>(c.samples, 1)
          << "}";
      comma = true;
    }
  out << "]}";
  return out.str();
}

std::vector<EnsembleModel> member_checkpoints(const Config& cfg, distributed::Communicator& comm) {
  if (cfg.ensemble.members.empty()) {
    const std::string path = resolve_resume(cfg, "auto", comm);
    if (path.empty())
      RN_FAIL(cfg.source << ": no checkpoint in " << checkpoint_dir(cfg)
                         << " (train first, or name one with --checkpoint)");
    return {
        EnsembleModel{.name = std::filesystem::path(path).filename().string(), .checkpoint = path}};
  }
  const std::vector<Config> members = member_configs(cfg);
  std::vector<EnsembleModel> models;
  for (size_t m = 0; m < members.size(); ++m) {
    const std::string path = resolve_resume(members[m], "auto", comm);
    if (path.empty())
      RN_FAIL(members[m].source << ": no checkpoint in " << checkpoint_dir(members[m])
                                << " (train the ensemble first)");
    models.push_back(EnsembleModel{.name = cfg.ensemble.members[m].name,
                                   .checkpoint = path,
                                   .weight = cfg.ensemble.members[m].weight});
  }
  return models;
}

}  // namespace rn::launch

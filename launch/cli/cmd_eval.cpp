// `resnet eval`: top-1 / top-5 on the config's test split of one checkpoint or an ensemble of
// them (softmax averaged over models and, with --crops 10, over ten views of each image): the
// checkpoints named, or the newest of the config's run_dir (of each member's, for an ensemble).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/check.h"
#include "distributed/nccl_communicator.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/ensemble_eval.h"
#include "launch/train/logging.h"
#include "launch/train/step.h"

namespace rn::launch {
namespace {

// "1", "10" or "1,10": the view counts to score.
std::vector<int> parse_crops(const std::string& text) {
  if (text == "1") return {1};
  if (text == "10") return {10};
  if (text == "1,10") return {1, 10};
  if (text == "10,1") return {10, 1};
  RN_FAIL("--crops must be 1 or 10 (or 1,10 for both), got '" << text << "'");
}

// "--weights 1,2,0.5": one positive number per model.
std::vector<double> parse_weights(const std::string& text, size_t count) {
  std::vector<double> weights;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    double w = 0;
    try {
      w = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !(w > 0) || !std::isfinite(w))
      RN_FAIL("--weights: '" << item << "' is not a positive number");
    weights.push_back(w);
  }
  if (weights.size() != count)
    RN_FAIL("--weights gives " << weights.size() << " weight(s) for " << count << " model(s)");
  return weights;
}

}  // namespace

const CommandSpec& eval_command() {
  static const CommandSpec c{
      "eval",
      "",
      "Top-1 / top-5 on the config's test split of checkpoints, one or an ensemble (softmax "
      "averaged over models and views); without --checkpoint, the newest checkpoint of the "
      "config's run_dir (of each member's, for an ensemble).",
      {{"config", Flag::Takes::value, "FILE", "the job's YAML config (data, test split)", true},
       {"checkpoint", Flag::Takes::values, "FILE",
        "a checkpoint to score (repeat for an ensemble)"},
       {"set", Flag::Takes::values, "KEY=VALUE", "a config value over the file's (repeatable)"},
       {"crops", Flag::Takes::value, "1|10|1,10", "views per image: centre, ten crops, or both"},
       {"weights", Flag::Takes::value, "W1,W2,...", "one positive weight per model"},
       {"precision", Flag::Takes::value, "fp32|bf16|fp16", "compute type (default: the config's)"},
       {"json", Flag::Takes::nothing, "", "one JSON object instead of the table"},
       {"verbose", Flag::Takes::nothing, "", "debug lines, on every rank"}}};
  return c;
}

int run_eval(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, eval_command());
  init_logging(comm.rank(), args.flag("verbose"));
  const std::vector<int> crops = parse_crops(args.get("crops", "1"));
  const Config cfg = load_config(args.required("config"), args.all("set"), auto_facts(job.env));
  std::vector<EnsembleModel> models;
  for (const auto& f : args.all("checkpoint"))
    models.push_back(
        EnsembleModel{.name = std::filesystem::path(f).filename().string(), .checkpoint = f});
  if (models.empty()) models = member_checkpoints(cfg, comm);
  if (args.has("weights")) {
    const auto w = parse_weights(args.get("weights"), models.size());
    for (size_t i = 0; i < models.size(); ++i) models[i].weight = w[i];
  }
  // The config's precision unless --precision says otherwise; the weights stay f32.
  const ScoreOptions options{
      .crops = crops,
      .precision = args.has("precision")
                       ? checked_precision(args.get("precision"),
                                           job.env.device(cfg.train.device.value), "--precision")
                       : cfg.train.precision.value,
      .precision_source =
          args.has("precision") ? "--precision" : cfg.source + ": 'train.precision'",
      .hooks = job.hooks};
  const EnsembleScores s = evaluate_ensemble(cfg, models, options, comm, job.env);
  if (comm.rank() != 0) return 0;
  if (args.flag("json")) {
    std::printf("%s\n", scores_json(s).c_str());
    return 0;
  }
  if (models.size() > 1 || crops.size() > 1) std::printf("%s", scores_table(s).c_str());
  const CropScores& c = s.by_crops.front();
  const size_t e = models.size();  // the ensemble's row
  std::printf("eval: %zu model(s), %d crop(s), %lld test samples: top-1 %.4f, top-5 %.4f%s\n",
              models.size(), c.crops, static_cast<long long>(c.samples),
              static_cast<double>(c.top1[e]) / c.samples,
              static_cast<double>(c.top5[e]) / c.samples,
              c.bad > 0 ? str_cat(" (", c.bad, " bad samples substituted)").c_str() : "");
  return 0;
}

}  // namespace rn::launch

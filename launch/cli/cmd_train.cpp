// `resnet train`: read the config, train (or resume) one model or an ensemble, print the final
// top-1 / top-5 (an ensemble's: a table of every member's and the ensemble's).
#include <cstdio>

#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/dry_run.h"
#include "launch/train/ensemble.h"
#include "launch/train/logging.h"
#include "launch/train/trainer.h"

namespace rn::launch {
namespace {

int report_ensemble(const Config& cfg, const EnsembleResult& r) {
  if (r.preempted) {
    std::string names;
    for (const auto& n : r.stopped) names += (names.empty() ? "" : ", ") + n;
    std::printf("stopped by signal after %.1f s: %s checkpointed; continue with --resume auto\n",
                r.wall_s, names.empty() ? "every running member" : names.c_str());
    return 0;
  }
  const CropScores& c = r.scores.by_crops.front();
  const size_t e = r.scores.models.size();
  std::printf("%s", scores_table(r.scores).c_str());
  std::printf(
      "final: ensemble of %zu after %.1f s: test top-1 %.4f, top-5 %.4f (%lld test "
      "samples, 1 crop); %s/ensemble.json\n",
      e, r.wall_s, static_cast<double>(c.top1[e]) / c.samples,
      static_cast<double>(c.top5[e]) / c.samples, static_cast<long long>(c.samples),
      cfg.run_dir.c_str());
  return 0;
}

}  // namespace

const CommandSpec& train_command() {
  static const CommandSpec c{
      "train",
      "",
      "Train a network (or every member of the config's ensemble: section), data-parallel on "
      "every rank.",
      {{"config", Flag::Takes::value, "FILE", "the job's YAML config", true},
       {"set", Flag::Takes::values, "KEY=VALUE", "a config value over the file's (repeatable)"},
       {"resume", Flag::Takes::value, "auto|FILE",
        "continue from the newest complete checkpoint of run_dir, or from FILE"},
       {"dry-run", Flag::Takes::nothing, "",
        "check the config, the networks, the device and the data, then stop (nothing written)"},
       {"profile", Flag::Takes::value, "N",
        "time N steps after the first 10 by op kind and layer: a table in the log, "
        "profile.json in run_dir"},
       {"verbose", Flag::Takes::nothing, "", "debug lines, on every rank"}}};
  return c;
}

int run_train(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, train_command());
  init_logging(comm.rank(), args.flag("verbose"));
  const Config cfg = load_config(args.required("config"), args.all("set"), auto_facts(job.env));
  if (args.flag("dry-run")) {
    const std::vector<std::string> lines = dry_run(cfg, comm, job.env);
    if (comm.rank() != 0) return 0;
    std::printf("dry run: nothing trained, nothing written\n");
    for (const auto& l : lines) std::printf("  %s\n", l.c_str());
    return 0;
  }
  const int profile_steps = args.get_int("profile", 0);
  if (args.has("profile") && profile_steps < 1)
    RN_FAIL("--profile must be a number of steps >= 1, got " << profile_steps);
  for (const std::string& l : cfg.train.auto_choices.value) RN_LOG(info) << l;
  if (!cfg.ensemble.members.empty()) {
    if (profile_steps > 0)
      RN_FAIL("--profile profiles one network: train a member's own config to profile it");
    const EnsembleResult r = train_ensemble(cfg, comm, job.env, job.hooks, args.get("resume"));
    return comm.rank() == 0 ? report_ensemble(cfg, r) : 0;
  }
  const TrainResult r = train(cfg, comm, job.env, args.get("resume"),
                              {.hooks = job.hooks, .profile_steps = profile_steps});
  if (comm.rank() != 0) return 0;
  if (r.preempted) {
    std::printf("stopped by signal after %lld steps: checkpoint %s\n",
                static_cast<long long>(r.steps), r.last_checkpoint.c_str());
    return 0;
  }
  std::printf(
      "final: %s after %d epoch(s), %lld steps, %.1f s: test top-1 %.4f, top-5 %.4f "
      "(%lld test samples), %.1f train img/s\n",
      cfg.model.spec().name.c_str(), r.epochs, static_cast<long long>(r.steps), r.wall_s,
      r.test.top1, r.test.top5, static_cast<long long>(r.test.samples), r.train_img_per_s);
  return 0;
}

}  // namespace rn::launch

// The dry run of a training job.
#include "launch/train/dry_run.h"

#include <filesystem>

#include "core/backend/backend.h"
#include "core/check.h"
#include "core/models/model_spec.h"
#include "launch/train/checkpointing.h"
#include "launch/train/data.h"
#include "launch/train/ensemble.h"
#include "launch/train/step.h"

namespace rn::launch {
namespace {

// One network: its cost, and whether its device runs its precision.
std::string check_network(const Config& c, const distributed::RankEnvironment& env,
                          const std::string& who) {
  // As the trainer checks them: the precision on the device, then the device itself.
  const Device device = env.device(c.train.device.value);
  check_precision_runs(c.train.precision.value, device, c.source + ": 'train.precision'");
  auto backend = make_backend(device, 1);
  auto net = models::build_model_uninitialised(*backend, c.model.spec());
  const Shape in = training_input(c);
  return str_cat(who, "network ", c.model.spec().name, ": ", net->num_parameters(), " parameters, ",
                 net->macs(in) / 1e6, " M multiply-adds per ", in[1], "x", in[2], "x", in[3],
                 " image; ", c.train.epochs, " epoch(s)",
                 c.train.max_steps > 0 ? str_cat(" (at most ", c.train.max_steps, " steps)") : "",
                 " on ", device.kind == DeviceKind::cuda ? "cuda" : "cpu", " in ",
                 precision_name(c.train.precision.value));
}

std::string run_dir_state(const Config& c) {
  std::error_code ec;
  if (!std::filesystem::exists(c.run_dir, ec)) return "run_dir " + c.run_dir + ": new";
  const std::string newest = newest_checkpoint(c);
  return "run_dir " + c.run_dir + ": exists" +
         (newest.empty() ? ", no checkpoint" : "; --resume auto would continue " + newest);
}

}  // namespace

std::vector<std::string> dry_run(const Config& cfg, distributed::Communicator& comm,
                                 const distributed::RankEnvironment& env) {
  std::vector<std::string> lines{"config " + cfg.source + ": valid"};
  for (const std::string& l : cfg.train.auto_choices.value) lines.push_back(l);
  if (cfg.ensemble.members.empty()) {
    lines.push_back(check_network(cfg, env, ""));
  } else {
    for (const Config& m : member_configs(cfg)) {
      const std::string name = std::filesystem::path(m.run_dir).filename().string();
      lines.push_back(check_network(m, env, "member " + name + ": "));
    }
  }
  // The members share the data (the keys that decide it may not differ), so it is read once.
  const DataSplits data = load_data(cfg, comm, DataOptions{.cache_listing = false});
  lines.push_back(str_cat("data ", cfg.data.kind, " at ", cfg.data.root, ": ", data.train->size(),
                          " train and ", data.test->size(), " test samples, ",
                          data.train->num_classes(), " classes; ", comm.size(), " rank(s) x ",
                          cfg.data.batch_size, " per step, ", env.threads_or(cfg.train.threads),
                          " thread(s) per rank"));
  if (data.train->num_classes() < cfg.model.num_classes)
    lines.push_back("note: " + class_count_note(cfg, data.train->num_classes()));
  lines.push_back(run_dir_state(cfg));
  return lines;
}

}  // namespace rn::launch

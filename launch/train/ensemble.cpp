// Rank groups training an ensemble's members, one progress line for all of them on rank 0, and
// the ensemble's evaluation at the end.
#include "launch/train/ensemble.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "distributed/nccl_communicator.h"
#include "launch/train/logging.h"
#include "launch/train/trainer.h"

namespace rn::launch {
namespace {

using Clock = std::chrono::steady_clock;

// Where each member stands, as rank 0 knows it.
struct MemberStatus {
  std::string state = "waiting";  // waiting | training | done | stopped
  TrainProgress last;
  bool has_progress = false;
};

// The messages between the rank groups of an ensemble job. Group leaders post their members'
// progress lines and states to rank 0 of the job, which polls them between its own steps and
// while it waits, and prints one line for the whole ensemble. A stop signal caught by any rank
// is relayed to every rank, so that every group checkpoints and stops, as a single-model job's
// ranks all stop when one of them is signalled.
class EnsembleProgress {
 public:
  EnsembleProgress(distributed::Communicator& world, const Config& cfg,
                   const distributed::RankGroups& plan, bool leader, const StopSignals& signals)
      : world_(world),
        cfg_(cfg),
        plan_(plan),
        leader_(leader),
        signals_(signals),
        status_(cfg.ensemble.members.size()),
        group_done_(plan.num_groups(), false) {}

  // From the trainer of member `m`, on every rank of its group.
  void update(int m, const TrainProgress& p) {
    if (leader_ && p.event != TrainProgress::Event::step) {
      std::ostringstream msg;
      msg << std::setprecision(17) << "P " << m << " " << static_cast<int>(p.event) << " "
          << p.epoch << " " << p.epochs << " " << p.step << " " << p.total_steps << " " << p.loss
          << " " << p.img_per_s << " " << p.test_top1 << " " << p.test_top5;
      world_.post(0, msg.str());
    }
    poll();
  }
  void state(int m, const std::string& s) {
    if (leader_) world_.post(0, str_cat("S ", m, " ", s));
    poll();
  }
  void group_finished(int g) {
    if (leader_) world_.post(0, str_cat("G ", g));
  }
  // Rank 0: takes every message until each group has finished, printing as they come.
  void wait_for_groups() {
    if (world_.rank() != 0) return;
    for (;;) {
      poll();
      if (std::all_of(group_done_.begin(), group_done_.end(), [](bool d) { return d; })) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // Relays this rank's stop signal and takes those relayed by others.
  void poll_signals() { poll(); }
  std::vector<std::string> stopped() const {
    std::vector<std::string> names;
    for (size_t m = 0; m < status_.size(); ++m)
      if (status_[m].state == "stopped") names.push_back(cfg_.ensemble.members[m].name);
    return names;
  }

 private:
  void poll() {
    if (const int sig = signals_.raised(); sig != 0 && !relayed_) {
      for (int r = 0; r < world_.size(); ++r)
        if (r != world_.rank()) world_.post(r, str_cat("X ", sig));
      relayed_ = true;
    }
    bool fresh = false;
    while (auto msg = world_.poll()) fresh = take(*msg) || fresh;
    if (fresh && Clock::now() - last_line_ >= std::chrono::seconds(2)) print_line();
  }

  // Returns whether a progress line is worth printing.
  bool take(const std::string& text) {
    std::istringstream in(text);
    char kind = 0;
    int index = 0;
    in >> kind >> index;
    if (kind == 'X') {  // another rank's stop signal: index is its number
      signals_.raise(index);
      relayed_ = true;  // every rank has it from the one that caught it
      return false;
    }
    if (kind == 'G') {
      group_done_.at(index) = true;
      return false;
    }
    MemberStatus& s = status_.at(index);
    const std::string& name = cfg_.ensemble.members[index].name;
    if (kind == 'S') {
      in >> std::ws;
      std::getline(in, s.state);
      RN_LOG_JOB(info) << "member " << name << " ("
                       << plan_.describe_ranks(plan_.group_of_member[index]) << "): " << s.state;
      return false;
    }
    int event = 0;
    TrainProgress& p = s.last;
    in >> event >> p.epoch >> p.epochs >> p.step >> p.total_steps >> p.loss >> p.img_per_s >>
        p.test_top1 >> p.test_top5;
    p.event = static_cast<TrainProgress::Event>(event);
    s.has_progress = true;
    if (p.event == TrainProgress::Event::epoch)
      RN_LOG_JOB(info) << "member " << name << ": epoch " << p.epoch << "/" << p.epochs
                       << " done: train loss " << std::fixed << std::setprecision(4) << p.loss
                       << ", test top-1 " << p.test_top1 << " top-5 " << p.test_top5;
    return p.event == TrainProgress::Event::log;
  }

  void print_line() {
    std::ostringstream line;
    line << "ensemble:";
    for (size_t m = 0; m < status_.size(); ++m) {
      const MemberStatus& s = status_[m];
      line << (m ? " |" : "") << " " << cfg_.ensemble.members[m].name;
      if (s.state != "training" || !s.has_progress) {
        if (s.state.rfind("done", 0) == 0 && s.has_progress)
          line << " done e" << s.last.epochs << " top-1 " << std::fixed << std::setprecision(4)
               << s.last.test_top1;
        else
          line << " " << s.state;
        continue;
      }
      const TrainProgress& p = s.last;
      line << " e" << p.epoch << "/" << p.epochs << " " << p.step << "/" << p.total_steps
           << " loss " << std::fixed << std::setprecision(4) << p.loss << " "
           << std::setprecision(0) << p.img_per_s << " img/s";
    }
    RN_LOG_JOB(info) << line.str();
    last_line_ = Clock::now();
  }

  distributed::Communicator& world_;
  const Config& cfg_;
  const distributed::RankGroups& plan_;
  const bool leader_;  // rank 0 of its group: reports for its members
  const StopSignals& signals_;
  bool relayed_ = false;
  std::vector<MemberStatus> status_;
  std::vector<bool> group_done_;
  Clock::time_point last_line_{};
};

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path);
  if (!(f << text)) RN_FAIL("run_dir: cannot write " << path.string());
}

}  // namespace

Shape training_input(const Config& c) {
  int side_h = c.data.height, side_w = c.data.width;  // synthetic
  const DataKind kind = c.data.kind.value;
  if (kind == DataKind::fashion_mnist) side_h = side_w = 28;
  if (kind == DataKind::cifar10 || kind == DataKind::cifar100) side_h = side_w = 32;
  if (is_encoded(kind)) side_h = side_w = c.data.augment.crop;
  return Shape{1, c.model.in_channels, side_h, side_w};
}

distributed::RankGroups plan_ensemble(const Config& cfg, const std::vector<Config>& members,
                                      int world_size) {
  std::vector<double> costs;
  std::vector<int> fixed;
  auto cpu = make_cpu_backend(1);
  for (size_t m = 0; m < members.size(); ++m) {
    const Config& c = members[m];
    const double macs = static_cast<double>(
        models::build_model_uninitialised(*cpu, c.model.spec())->macs(training_input(c)));
    costs.push_back(macs * c.train.epochs);
    if (cfg.ensemble.members[m].ranks > 0) fixed.push_back(cfg.ensemble.members[m].ranks);
  }
  try {
    return distributed::plan_rank_groups(world_size, costs, cfg.ensemble.split.value, fixed);
  } catch (const Error& e) {
    RN_FAIL(cfg.source << ": 'ensemble': " << e.what());
  }
}

namespace {

// Rank 0: the ensemble's run_dir and config.yaml, and the line that says which ranks train
// which member.
void announce(const Config& cfg, const std::vector<Config>& members,
              const distributed::RankGroups& plan, int world_size) {
  std::error_code ec;
  std::filesystem::create_directories(cfg.run_dir, ec);
  if (ec) RN_FAIL("run_dir '" << cfg.run_dir << "': cannot create: " << ec.message());
  write_text(std::filesystem::path(cfg.run_dir) / "config.yaml", to_yaml(cfg));
  std::ostringstream where;
  for (size_t m = 0; m < members.size(); ++m) {
    const std::string& name = cfg.ensemble.members[m].name;
    const std::string& model = members[m].model.name;
    where << (m ? ", " : "") << name << (name == model ? "" : " (" + model + ")") << " on "
          << plan.describe_ranks(plan.group_of_member[m]);
  }
  RN_LOG_JOB(info) << "ensemble of " << members.size() << " on " << world_size << " rank(s), "
                   << plan.num_groups() << " group(s)"
                   << (static_cast<int>(members.size()) > world_size
                           ? " (more members than ranks: members take turns)"
                           : "")
                   << ": " << where.str();
}

// This rank's group trains its members one after another; false when a stop signal ended one
// (after its checkpoint), leaving the rest unstarted.
bool train_group(const Config& cfg, const std::vector<Config>& members,
                 const distributed::RankGroups& plan, int g, distributed::Communicator& group,
                 const std::string& resume, const distributed::RankEnvironment& env,
                 const TestHooks& hooks, EnsembleProgress& progress, const StopSignals& signals) {
  for (int m : plan.members_of_group[g]) {
    progress.poll_signals();
    if (stop_requested(signals, group)) return false;
    const std::string& name = cfg.ensemble.members[m].name;
    set_log_member(name);
    progress.state(m, "training");
    TrainerOptions options;
    options.hooks = hooks;
    options.signals = &signals;
    options.on_progress = [&progress, m](const TrainProgress& p) { progress.update(m, p); };
    TrainResult r;
    try {
      r = train(members[m], group, env, resume, options);
    } catch (const std::exception& e) {
      RN_FAIL("ensemble member '" << name << "' (" << plan.describe_ranks(g) << "): " << e.what());
    }
    set_log_member("");
    progress.state(m,
                   r.preempted ? "stopped" : (r.already_done ? "done (trained before)" : "done"));
    if (r.preempted) return false;
  }
  return true;
}

}  // namespace

EnsembleResult train_ensemble(const Config& cfg, distributed::Communicator& world,
                              const distributed::RankEnvironment& env, const TestHooks& hooks,
                              const std::string& resume) {
  const auto t_start = Clock::now();
  if (!resume.empty() && resume != "auto")
    RN_FAIL("--resume " << resume << ": an ensemble resumes with --resume auto (each member "
                        << "from the newest checkpoint in run_dir/<member>/checkpoints)");
  const std::vector<Config> members = member_configs(cfg);
  const distributed::RankGroups plan = plan_ensemble(cfg, members, world.size());
  if (world.rank() == 0) announce(cfg, members, plan, world.size());
  const int g = plan.group_of_rank(world.rank());
  auto group = distributed::split_into_group(world, plan);
  set_console_to_job_lines(true);
  StopSignals signals;
  EnsembleProgress progress(world, cfg, plan, group->rank() == 0, signals);
  const bool finished =
      train_group(cfg, members, plan, g, *group, resume, env, hooks, progress, signals);
  progress.group_finished(g);
  progress.wait_for_groups();
  // The groups end at their own pace: this meeting waits for the slowest without a time limit
  // (a stalled group's own watchdog ends the job).
  const double timeout = world.timeout_s();
  world.set_timeout(0);
  const bool any_stopped = world.all_reduce_sum(finished ? 0.0 : 1.0) > 0;
  world.set_timeout(timeout);
  set_console_to_job_lines(false);
  EnsembleResult result{.preempted = any_stopped, .stopped = progress.stopped()};
  if (!any_stopped) {
    const ScoreOptions options{.crops = {1, 10},
                               .precision = cfg.train.precision.value,
                               .precision_source = cfg.source + ": 'train.precision'",
                               .hooks = hooks};
    result.scores = evaluate_ensemble(cfg, member_checkpoints(cfg, world), options, world, env);
    result.evaluated = true;
    if (world.rank() == 0)
      write_text(std::filesystem::path(cfg.run_dir) / "ensemble.json",
                 scores_json(result.scores) + "\n");
  }
  result.wall_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  return result;
}

}  // namespace rn::launch

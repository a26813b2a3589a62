// The checkpoints/ folder of a run (names, newest, keep_last) and the preemption signals.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>

#include "core/check.h"
#include "launch/train/checkpointing.h"
#include "launch/train/logging.h"

namespace rn::launch {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPrefix = "ckpt-s";
constexpr const char* kSuffix = ".h5";

bool is_checkpoint_name(const std::string& n) {
  const std::string pre = kPrefix, suf = kSuffix;
  return n.size() > pre.size() + suf.size() && n.rfind(pre, 0) == 0 &&
         n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
}

// The complete checkpoints of the folder, oldest first (the names sort by step).
std::vector<fs::path> list_checkpoints(const Config& cfg) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(checkpoint_dir(cfg), ec))
    if (e.is_regular_file() && is_checkpoint_name(e.path().filename().string()))
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// The one thing a signal handler may touch: a lock-free atomic (process-wide by necessity).
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig, std::memory_order_relaxed);
}

}  // namespace

void check_writable(const std::string& dir) {
  const fs::path probe = fs::path(dir) / ".write-probe";
  errno = 0;
  FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) RN_FAIL("checkpoint folder '" << dir << "' is not writable: " << std::strerror(errno));
  std::fclose(f);
  std::error_code ec;
  fs::remove(probe, ec);
}

std::string checkpoint_dir(const Config& cfg) {
  return (fs::path(cfg.run_dir) / "checkpoints").string();
}

std::string checkpoint_path(const Config& cfg, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%010lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return (fs::path(checkpoint_dir(cfg)) / name).string();
}

std::string newest_checkpoint(const Config& cfg) {
  const auto all = list_checkpoints(cfg);
  return all.empty() ? "" : all.back().string();
}

std::string resolve_resume(const Config& cfg, const std::string& resume,
                           distributed::Communicator& comm) {
  std::string path = resume == "auto" ? newest_checkpoint(cfg) : resume;
  // Rank 0's view decides, so that no two ranks start from different files.
  uint64_t len = path.size();
  comm.broadcast(&len, sizeof(len), 0);
  path.resize(len);
  comm.broadcast(path.data(), len, 0);
  return path;
}

void prune_checkpoints(const Config& cfg, bool remove_temporaries) {
  std::error_code ec;
  if (remove_temporaries)
    for (const auto& e : fs::directory_iterator(checkpoint_dir(cfg), ec)) {
      const std::string n = e.path().filename().string();
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0 &&
          is_checkpoint_name(n.substr(0, n.size() - 4)))
        fs::remove(e.path(), ec);
    }
  const auto all = list_checkpoints(cfg);
  const size_t keep = static_cast<size_t>(std::max(cfg.checkpoint.keep_last, 1));
  for (size_t i = 0; i + keep < all.size(); ++i) fs::remove(all[i], ec);
}

std::string save_run_checkpoint(const Config& cfg, models::Network& net, Backend& be,
                                TrainerState state, double local_loss_sum, int64_t local_correct,
                                int64_t local_seen, distributed::Communicator& comm,
                                const CheckpointSharing& sharing, const ModelUse& use,
                                double* seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto loss = comm.all_gather(std::bit_cast<uint64_t>(local_loss_sum));
  const auto correct = comm.all_gather(static_cast<uint64_t>(local_correct));
  const auto seen = comm.all_gather(static_cast<uint64_t>(local_seen));
  state.world_size = comm.size();
  state.loss_sum.clear(), state.correct.clear(), state.seen.clear();
  for (int r = 0; r < comm.size(); ++r) {
    state.loss_sum.push_back(std::bit_cast<double>(loss[r]));
    state.correct.push_back(static_cast<int64_t>(correct[r]));
    state.seen.push_back(static_cast<int64_t>(seen[r]));
  }
  const std::string path = checkpoint_path(cfg, state.step);
  save_checkpoint(path, net, be, state, to_yaml(cfg), comm, sharing, use);
  if (comm.rank() == 0) prune_checkpoints(cfg, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (seconds) *seconds = s;
  RN_LOG(info) << "checkpoint " << path << " (epoch " << state.epoch << ", step " << state.step
               << ") written in " << std::fixed << std::setprecision(3) << s << " s";
  return path;
}

bool stop_requested(const StopSignals& signals, distributed::Communicator& comm) {
  const double mine = signals.raised() != 0 ? 1.0 : 0.0;
  return (comm.size() > 1 ? comm.all_reduce_sum(mine) : mine) > 0;
}

StopSignals::StopSignals() {
  g_stop_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a signal must not make a blocking read or MPI call fail
  sigaction(SIGTERM, &sa, &previous_term_);
  sigaction(SIGUSR1, &sa, &previous_usr1_);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &previous_term_, nullptr);
  sigaction(SIGUSR1, &previous_usr1_, nullptr);
}

int StopSignals::raised() const {
  return g_stop_signal.load(std::memory_order_relaxed);
}

void StopSignals::raise(int sig) const {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, sig, std::memory_order_relaxed);
}

}  // namespace rn::launch

// The trainer's side of checkpoints: what a training run saves and restores (weights, momentum,
// BN statistics, trainer state), the checkpoints/ folder (names, keep_last, --resume auto), and
// the preemption signals (SIGTERM, SIGUSR1).
#pragma once

#include <csignal>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/models/model_spec.h"
#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "io/checkpoint.h"
#include "launch/train/config.h"
#include "launch/train/model_use.h"
#include "launch/train/test_hooks.h"

namespace rn::launch {

// Where training stands, beyond the tensors. The data RNGs are counter-based (io/counter_rng.h):
// a rank's random state is its seed and its position (epoch, batch), stored per rank.
struct TrainerState {
  int64_t epoch = 0;           // the epoch in progress, from 0
  int64_t batch_in_epoch = 0;  // batches of `epoch` every rank has already taken
  int64_t step = 0;            // steps taken in all (the LR schedule's position)
  int64_t steps_per_epoch = 0;
  int world_size = 1;
  uint64_t seed = 0;
  double lr = 0;  // the schedule's value at `step`, for reading only
  // This epoch's training-metric sums, one entry per rank (they feed metrics.jsonl).
  std::vector<double> loss_sum;
  std::vector<int64_t> correct, seen;
  double train_time_s = 0;  // finished epochs' training time and images (the final summary)
  int64_t train_images = 0;
  double loss_scale = 1.0;  // fp32 training does not scale the loss
};

// How the ranks of a communicator share checkpoint reads and writes, decided once by whoever
// holds the rank environment.
struct CheckpointSharing {
  // All on one node: each reads the whole file through the shared page cache instead of
  // receiving the other ranks' shares.
  bool one_node = false;
  int write_pause_ms = 0;  // tests: io::CheckpointWriteOptions::pause_after_data_ms
};
CheckpointSharing checkpoint_sharing(const distributed::RankEnvironment& env,
                                     const distributed::Communicator& comm, const TestHooks& hooks);

// Every rank's BN buffers (running statistics, which data-parallel training without SyncBN lets
// differ between replicas), concatenated per rank in net.buffers() order (collective).
std::vector<std::vector<float>> gather_buffers(models::Network& net, Backend& be,
                                               distributed::Communicator& comm);

// The checkpoint datasets of `net`, its momentum (when `with_momentum`), `state`, the config
// text and `use` (/meta), in the same order on every rank. /model holds rank 0's buffers,
// /trainer/rank_buffers every rank's (`rank_buffers`, from gather_buffers).
std::vector<io::CheckpointEntry> checkpoint_entries(
    models::Network& net, Backend& be, const TrainerState& state, const std::string& config_yaml,
    bool with_momentum, const std::vector<std::vector<float>>& rank_buffers,
    const ModelUse& use = {});

// Writes `path` from every rank of `comm` (collective).
void save_checkpoint(const std::string& path, models::Network& net, Backend& be,
                     const TrainerState& state, const std::string& config_yaml,
                     distributed::Communicator& comm, const CheckpointSharing& sharing,
                     const ModelUse& use = {});

struct CheckpointData {
  io::CheckpointSummary summary;
  ModelUse use;  // /meta: class names and evaluation transform (empty in older checkpoints)
  // Every dataset, by path ("model/fc.bias"), but those read straight into a model's tensors.
  std::map<std::string, io::Bytes> tensors;
  std::set<std::string> placed;  // those
};

// Reads and verifies a whole checkpoint on every rank of `comm` (collective).
CheckpointData load_checkpoint(const std::string& path, distributed::Communicator& comm,
                               const CheckpointSharing& sharing);

// load_checkpoint, then restore_model; the tensors of `net` that are plain host fp32 (a network
// not yet run, as when a job resumes) are read straight into place.
CheckpointData load_into_model(const std::string& path, models::Network& net, Backend& be,
                               bool with_momentum, distributed::Communicator& comm,
                               const CheckpointSharing& sharing);

// Copies /model (and /optimizer when `with_momentum`) into `net`, in its own layouts. A file of
// another network is one error listing the missing, unexpected and wrongly shaped tensors.
void restore_model(const CheckpointData& data, const std::string& path, models::Network& net,
                   Backend& be, bool with_momentum);

// This rank's own BN buffers from /trainer/rank_buffers: for a resume on the checkpoint's own
// number of ranks, where it makes every replica continue exactly.
void restore_rank_buffers(const CheckpointData& data, const std::string& path, models::Network& net,
                          Backend& be, int rank, int world_size);

// The trainer state of a checkpoint as rank `rank` of `world_size` ranks continues it: the same
// position when the rank count is unchanged; otherwise the nearest global sample position of the
// same epoch, with every rank's metric sums given to rank 0.
TrainerState restore_trainer_state(const CheckpointData& data, const std::string& path, int rank,
                                   int world_size, int64_t batch_size, int64_t steps_per_epoch);

// run_dir/checkpoints and the name of the checkpoint after `step` steps in it.
std::string checkpoint_dir(const Config& cfg);
std::string checkpoint_path(const Config& cfg, int64_t step);
// The newest complete checkpoint of run_dir/checkpoints, or "" when there is none.
std::string newest_checkpoint(const Config& cfg);
// What `--resume` names: "" (start fresh), "auto", or a file; decided on rank 0, the same on all.
std::string resolve_resume(const Config& cfg, const std::string& resume,
                           distributed::Communicator& comm);
// Fails now, not hours later at the first checkpoint, when `dir` cannot take a new file.
void check_writable(const std::string& dir);
// Rank 0: removes all but the newest `keep_last` checkpoints, and temporary files of writes that
// never finished (a crashed run's).
void prune_checkpoints(const Config& cfg, bool remove_temporaries);

// Saves the run's checkpoint after `state.step` steps (collective): gathers every rank's metric
// sums (`local_*`) into `state`, writes checkpoint_path(cfg, step), and on rank 0 prunes to
// keep_last. Returns the path; `seconds` gets the time training paused for it.
std::string save_run_checkpoint(const Config& cfg, models::Network& net, Backend& be,
                                TrainerState state, double local_loss_sum, int64_t local_correct,
                                int64_t local_seen, distributed::Communicator& comm,
                                const CheckpointSharing& sharing, const ModelUse& use,
                                double* seconds = nullptr);

// Whether any rank has caught a stop signal; collective (one 8-byte all-reduce per step), so
// every rank stops after the same step even when the signal reached one rank only.
bool stop_requested(const class StopSignals& signals, distributed::Communicator& comm);

// Catches SIGTERM and SIGUSR1 while alive (the previous handlers are restored after): the handler
// only records the signal; the trainer asks `raised` once per step.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int raised() const;  // the signal number, or 0
  // Records `sig` as if it had arrived (where no signal has): a signal another process caught,
  // relayed, as in an ensemble whose rank groups must all stop.
  void raise(int sig) const;

 private:
  struct sigaction previous_term_ {
  }, previous_usr1_{};
};

}  // namespace rn::launch

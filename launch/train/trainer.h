// The training loop of `resnet train` as an object built from (config, communicator): data, model,
// optimizer, resume, the loop, per-epoch evaluation, metrics.jsonl and checkpoints. A single-model
// job runs one on every rank; an ensemble runs one per member on each rank group.
#pragma once

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "core/optim/lr_schedule.h"
#include "distributed/communicator.h"
#include "distributed/gradient_bucketer.h"
#include "distributed/nccl_communicator.h"
#include "distributed/rank_environment.h"
#include "io/loader.h"
#include "io/sample_set.h"
#include "launch/train/checkpointing.h"
#include "launch/train/config.h"
#include "launch/train/data.h"
#include "launch/train/logging.h"
#include "launch/train/step.h"

namespace rn::launch {

struct EvalResult {
  double loss = 0, top1 = 0, top5 = 0;
  int64_t samples = 0;
  int64_t bad = 0;  // samples replaced by a substitute (bad files), over all ranks
};

struct TrainResult {
  int epochs = 0;
  int64_t steps = 0;
  double wall_s = 0;
  double train_img_per_s = 0;
  EvalResult test;
  bool evaluated = false;       // `test` holds an evaluation of this run (not when nothing ran)
  bool preempted = false;       // stopped by SIGTERM / SIGUSR1 after writing a checkpoint
  bool already_done = false;    // resumed from a checkpoint that had finished training
  std::string last_checkpoint;  // the newest checkpoint this run wrote or resumed from ("": none)
};

// Where a run stands, for whoever watches it (an ensemble's progress line).
struct TrainProgress {
  enum class Event { step, log, epoch };
  Event event = Event::step;
  int epoch = 0, epochs = 0;  // epoch is 1-based: the one in progress or just done
  int64_t step = 0, total_steps = 0;
  double loss = 0, img_per_s = 0;       // log: over the steps since the last log line
  double test_top1 = 0, test_top5 = 0;  // epoch: its evaluation
};

// What the code that runs a trainer decides for it.
struct TrainerOptions {
  TestHooks hooks;
  // SIGTERM / SIGUSR1 watch; nullptr: the trainer watches for itself while it runs.
  const StopSignals* signals = nullptr;
  // Called on every rank after each step, at each progress line and after each evaluation.
  std::function<void(const TrainProgress&)> on_progress;
  // Profile this many steps (after the run's first 10, which plan the layers), then go on: a
  // table in the log and profile.json in run_dir (rank 0's steps). 0: no profile.
  int profile_steps = 0;
};

// Evaluates every sample of `data` once across the ranks of `comm`, in batches of the config's
// data.test_batch_size.
EvalResult evaluate(StepRunner& runner, const io::SampleSet& data, const Config& cfg,
                    distributed::Communicator& comm);

// Trains one replica per rank of `comm` (gradients averaged); the group's rank 0 writes the run
// directory's files. Construction checks the config, reads the data and builds the model. `env`
// is this rank's environment in the job (its threads, its GPU, where the ranks run).
class Trainer {
 public:
  Trainer(const Config& cfg, distributed::Communicator& comm,
          const distributed::RankEnvironment& env, TrainerOptions options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // `resume`: "" (fresh), "auto" (the newest checkpoint of run_dir/checkpoints, fresh when there
  // is none) or a checkpoint file.
  TrainResult run(const std::string& resume = "");

 private:
  using Clock = std::chrono::steady_clock;
  // This epoch's sums on this rank (a resumed epoch starts from the checkpoint's).
  struct EpochSums {
    double loss_sum = 0, window_loss = 0;
    int64_t seen = 0, correct = 0, window_seen = 0, window_correct = 0, bad = 0, batch = 0;
    double lr = 0;
    Clock::time_point window_start;
  };

  void check_same_config_everywhere();
  void prepare_run_dir();
  void build();
  void log_setup() const;
  void prepare_checkpoints();
  void restore(const std::string& resume);
  EpochSums start_epoch(int epoch);
  // Trains the rest of `epoch`; false when a stop signal ended the run (after its checkpoint).
  bool train_epoch(int epoch, EpochSums& sums);
  void log_window(int epoch, EpochSums& sums);
  void finish_epoch(int epoch, EpochSums& sums, double epoch_train_s);
  TrainerState state_at(int64_t epoch, int64_t batch, int64_t at_step) const;
  // Where the run stands after step_ of `epoch` (0-based), for `event`.
  TrainProgress progress_at(TrainProgress::Event event, int epoch) const;
  void report(const TrainProgress& p) const;
  void start_profile();
  void finish_profile();

  const Config cfg_;
  distributed::Communicator& comm_;
  const distributed::RankEnvironment& env_;
  const TrainerOptions options_;
  const int rank_, world_;
  const bool lead_;
  const Clock::time_point t_start_;
  models::ModelSpec spec_;
  DType compute_ = DType::f32;
  std::unique_ptr<LogFile> log_file_;
  DataSplits data_;
  CheckpointSharing sharing_;  // how this group's ranks read and write checkpoints
  // With a profile, backend_ is the profiling backend over device_backend_.
  Profiler profiler_;
  std::unique_ptr<Backend> device_backend_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<distributed::Communicator> nccl_;
  std::unique_ptr<models::Network> net_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<distributed::GradientBucketer> bucketer_;
  distributed::NodeLayout nodes_;  // where the ranks run (several ranks only)
  std::unique_ptr<io::DistributedSampler> sampler_;
  std::unique_ptr<io::Loader> loader_;
  std::unique_ptr<optim::LrSchedule> schedule_;
  std::unique_ptr<StopSignals> own_signals_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0, step_ = 0;
  bool conv_algorithms_logged_ = false;  // the convolutions' algorithms, said after step 1
  // The profiled steps are profile_from_ + 1 .. profile_to_ (none: -1).
  int64_t profile_from_ = -1, profile_to_ = -1;
  Clock::time_point profile_t0_;
  int loader_entry_ = -1, batch_entry_ = -1, stop_entry_ = -1;
  std::ofstream metrics_, steps_;  // one line per evaluated epoch; per train.log_every steps
  TrainerState ckpt_;
  double train_time_ = 0;
  int64_t train_images_ = 0;
  TrainResult result_;
};

// A Trainer of `cfg` on `comm`, run once: `resnet train` of a single model.
TrainResult train(const Config& cfg, distributed::Communicator& comm,
                  const distributed::RankEnvironment& env, const std::string& resume = "",
                  TrainerOptions options = {});

}  // namespace rn::launch

// The training loop of `resnet train`: data, model, schedule, progress lines, per-epoch
// evaluation and metrics.jsonl; and the evaluation loop it shares with `resnet eval`.
#pragma once

#include <string>

#include "distributed/communicator.h"
#include "io/sample_set.h"
#include "launch/config.h"
#include "launch/data.h"
#include "launch/step.h"

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
  bool preempted = false;       // stopped by SIGTERM / SIGUSR1 after writing a checkpoint
  std::string last_checkpoint;  // the newest checkpoint this run wrote ("" if none)
};

// Evaluates every sample of `data` once across the ranks of `comm`, in batches of the config's
// data.test_batch_size.
EvalResult evaluate(StepRunner& runner, const io::SampleSet& data, const Config& cfg,
                    distributed::Communicator& comm);

// Trains on every rank of `comm` (one replica each, gradients averaged); rank 0 writes the
// run directory's files. `resume`: "" (fresh), "auto" (the newest checkpoint of
// run_dir/checkpoints, fresh when there is none) or a checkpoint file.
TrainResult train(const Config& cfg, distributed::Communicator& comm,
                  const std::string& resume = "");

}  // namespace rn::launch

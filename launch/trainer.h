// The training loop of `resnet train`: data, model, schedule, progress lines, per-epoch
// evaluation and metrics.jsonl; and the evaluation loop it shares with `resnet eval`.
#pragma once

#include <string>

#include "distributed/communicator.h"
#include "io/dataset.h"
#include "io/image_set.h"
#include "launch/config.h"
#include "launch/step.h"

namespace rn::launch {

struct EvalResult {
  double loss = 0, top1 = 0, top5 = 0;
  int64_t samples = 0;
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

// The data sets a config names (train and test splits), validated against the model.
struct DataSplits {
  io::ImageSet train, test;
};
DataSplits load_data(const Config& cfg);

// Evaluates every sample of `data` once across the ranks of `comm`, in batches of `batch_size`.
EvalResult evaluate(StepRunner& runner, const io::ImageSet& data, const io::Normalization& norm,
                    int batch_size, int workers, distributed::Communicator& comm);

// Trains on every rank of `comm` (one replica each, gradients averaged); rank 0 writes the
// run directory's files. `resume`: "" (fresh), "auto" (the newest checkpoint of
// run_dir/checkpoints, fresh when there is none) or a checkpoint file.
TrainResult train(const Config& cfg, distributed::Communicator& comm,
                  const std::string& resume = "");

}  // namespace rn::launch

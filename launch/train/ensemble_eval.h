// Evaluation of several checkpoints together: each member's and the ensemble's top-1 / top-5 on
// the config's test split, with 1 and 10 crops, the ensemble scoring the weighted mean of the
// members' softmax probabilities. Shared by `resnet eval` and the end of an ensemble's training.
#pragma once

#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "launch/train/config.h"
#include "launch/train/test_hooks.h"

namespace rn::launch {

struct EnsembleModel {
  std::string name;        // a member's name, or the checkpoint's file name
  std::string checkpoint;  // its file
  double weight = 1;       // its share in the mean of probabilities
};

struct CropScores {
  int crops = 1;
  int64_t samples = 0, bad = 0;  // test samples scored (each once, over all ranks), substitutes
  // One per model, then the ensemble's last: correct counts within the first 1 and 5 classes.
  std::vector<int64_t> top1, top5;
};

struct EnsembleScores {
  std::vector<EnsembleModel> models;
  std::vector<CropScores> by_crops;  // in the order asked for
};

struct ScoreOptions {
  std::vector<int> crops{1};     // view counts to score: 1 and/or 10
  DType precision = DType::f32;  // the activations' (the weights stay f32)
  std::string precision_source;  // the flag or config field it came from, for messages
  TestHooks hooks;
};

// Scores `models` on the test split of `cfg` with each view count of `options.crops`, every test
// sample once across the ranks of `comm` (collective). Each model is built as its checkpoint
// names it, with cfg's input channels and classes, on cfg's train.device (this rank's GPU, its
// train.threads or the environment's).
EnsembleScores evaluate_ensemble(const Config& cfg, const std::vector<EnsembleModel>& models,
                                 const ScoreOptions& options, distributed::Communicator& comm,
                                 const distributed::RankEnvironment& env);

// A table: one row per model and one for the ensemble, top-1 and top-5 for each view count.
std::string scores_table(const EnsembleScores& s);
// One JSON object: "models", "crops", "samples", "top1", "top5", "bad_samples" of the ensemble at
// the first view count (what a single-model `eval --json` has always printed), then "results":
// one object per model and view count, the ensemble's named "ensemble".
std::string scores_json(const EnsembleScores& s);

// The newest checkpoint of each member of `cfg`'s ensemble, or of its run_dir where it has no
// ensemble, decided on rank 0 (collective); a member (or run) without one is an error naming it.
std::vector<EnsembleModel> member_checkpoints(const Config& cfg, distributed::Communicator& comm);

}  // namespace rn::launch

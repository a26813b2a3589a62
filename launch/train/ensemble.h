// `resnet train` of an ensemble: the members of the config's `ensemble:` section trained side by
// side on rank groups of one job (each group data-parallel on a communicator of its own, members
// taking turns where there are more members than ranks), then evaluated together.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "distributed/rank_groups.h"
#include "launch/train/config.h"
#include "launch/train/ensemble_eval.h"

namespace rn::launch {

// The C x H x W input (as a 1 x C x H x W shape) the config's network sees in training.
Shape training_input(const Config& c);

struct EnsembleResult {
  bool preempted = false;            // a stop signal ended it; the stopped members checkpointed
  std::vector<std::string> stopped;  // the members that stopped (rank 0's view)
  bool evaluated = false;            // `scores` holds the final evaluation
  EnsembleScores scores;
  double wall_s = 0;
};

// The plan of `cfg`'s ensemble on `world_size` ranks: each member's cost is its multiply-adds
// per image times its epochs (ensemble.split: macs sizes groups by it; with more members than
// ranks it decides who takes turns where).
distributed::RankGroups plan_ensemble(const Config& cfg, const std::vector<Config>& members,
                                      int world_size);

// Trains every member (collective over `world`): `resume` "" or "auto" (each member from its
// own newest checkpoint; a member that finished is not trained again). Then scores each member
// and the ensemble with 1 and 10 crops, and rank 0 writes run_dir/ensemble.json.
EnsembleResult train_ensemble(const Config& cfg, distributed::Communicator& world,
                              const distributed::RankEnvironment& env, const TestHooks& hooks,
                              const std::string& resume);

}  // namespace rn::launch

// `resnet train --dry-run`: what a job checks before its first step, without training or writing
// anything: the config (validated as it is read), every network it names, the device and
// precision, and both data splits read (or listed) as training would.
#pragma once

#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "launch/train/config.h"

namespace rn::launch {

// The lines the dry run reports (rank 0 prints them); a problem throws, as the job would.
// Collective over `comm`.
std::vector<std::string> dry_run(const Config& cfg, distributed::Communicator& comm,
                                 const distributed::RankEnvironment& env);

}  // namespace rn::launch

// Rank groups: how the ranks of one job are shared among the members of an ensemble, each group
// training its members data-parallel on a communicator of its own.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"

namespace rn::distributed {

enum class GroupSplit {
  equal,         // groups as equal as the rank count allows (the costliest members get the rest)
  proportional,  // group sizes in proportion to the members' costs (D'Hondt), each >= 1 rank
};

// Which ranks train which members. Groups hold consecutive ranks, in member order.
struct RankGroups {
  std::vector<int> first_rank, size;               // per group
  std::vector<int> group_of_member;                // member -> group
  std::vector<std::vector<int>> members_of_group;  // group -> its members, in training order
  int num_groups() const { return static_cast<int>(size.size()); }
  int group_of_rank(int rank) const;
  // "ranks 2-3", "rank 4": the job ranks of group `g`, for messages.
  std::string describe_ranks(int g) const;
};

// Plans the groups of `world` ranks for members of the given costs (any positive measure of the
// work: multiply-adds x epochs). With at most `world` members, one group per member, sized by
// `split`, or by `fixed_sizes` (one per member, >= 1 each, adding up to `world`) when given.
// With more members than ranks, every rank is a group of its own and the members take turns on
// them, the costliest first on the least loaded (longest-processing-time first): a rank never
// trains two members at once, which on a CPU would only share its cores. Throws rn::Error with
// one line for a plan that cannot be made.
RankGroups plan_rank_groups(int world, const std::vector<double>& costs, GroupSplit split,
                            const std::vector<int>& fixed_sizes = {});

// This rank's group of `comm` under `groups`, as a communicator of its own (collective).
std::unique_ptr<Communicator> split_into_group(Communicator& comm, const RankGroups& groups);

}  // namespace rn::distributed

// Planning an ensemble's rank groups, and splitting a communicator by the plan.
#include "distributed/rank_groups.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"

namespace rn::distributed {
namespace {

// Group sizes for one group per member: each starts at one rank, and every further rank goes
// to the group with the most work per rank (the D'Hondt apportionment), so sizes end up as
// close to proportional to `weights` as whole ranks allow. Ties go to the costlier member,
// then to the first.
std::vector<int> apportion(int world, const std::vector<double>& weights,
                           const std::vector<double>& costs) {
  std::vector<int> sizes(weights.size(), 1);
  for (int extra = world - static_cast<int>(weights.size()); extra > 0; --extra) {
    size_t best = 0;
    for (size_t g = 1; g < sizes.size(); ++g) {
      const double a = weights[g] / sizes[g], b = weights[best] / sizes[best];
      if (a > b || (a == b && costs[g] > costs[best])) best = g;
    }
    ++sizes[best];
  }
  return sizes;
}

}  // namespace

int RankGroups::group_of_rank(int rank) const {
  for (int g = 0; g < num_groups(); ++g)
    if (rank >= first_rank[g] && rank < first_rank[g] + size[g]) return g;
  RN_FAIL("rank " << rank << " is in no rank group");
}

std::string RankGroups::describe_ranks(int g) const {
  if (size[g] == 1) return str_cat("rank ", first_rank[g]);
  return str_cat("ranks ", first_rank[g], "-", first_rank[g] + size[g] - 1);
}

RankGroups plan_rank_groups(int world, const std::vector<double>& costs, GroupSplit split,
                            const std::vector<int>& fixed_sizes) {
  const int members = static_cast<int>(costs.size());
  RN_CHECK(world >= 1, "rank groups of " << world << " ranks");
  if (members == 0) RN_FAIL("an ensemble needs at least one member");
  for (double c : costs)
    RN_CHECK(std::isfinite(c) && c > 0, "a member's cost must be positive, got " << c);
  RankGroups plan;
  plan.group_of_member.resize(members);
  if (!fixed_sizes.empty()) {
    if (static_cast<int>(fixed_sizes.size()) != members)
      RN_FAIL("rank counts are given for " << fixed_sizes.size() << " of " << members
                                           << " members: give one for every member or none");
    for (int m = 0; m < members; ++m)
      if (fixed_sizes[m] < 1)
        RN_FAIL("member " << m + 1 << " is given " << fixed_sizes[m]
                          << " ranks: every member needs at least one");
    const int sum = std::accumulate(fixed_sizes.begin(), fixed_sizes.end(), 0);
    if (sum != world)
      RN_FAIL("the members' rank counts add up to " << sum << ", but the job has " << world
                                                    << " rank(s)");
    plan.size = fixed_sizes;
  } else if (members <= world) {
    plan.size = split == GroupSplit::proportional
                    ? apportion(world, costs, costs)
                    : apportion(world, std::vector<double>(members, 1.0), costs);
  } else {
    // More members than ranks: one rank a group; the costliest member first, onto the group
    // with the least work so far.
    plan.size.assign(world, 1);
    std::vector<int> order(members);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return costs[a] > costs[b]; });
    std::vector<double> load(world, 0);
    for (int m : order) {
      const int g = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      load[g] += costs[m];
      plan.group_of_member[m] = g;
    }
  }
  if (members <= world || !fixed_sizes.empty())
    std::iota(plan.group_of_member.begin(), plan.group_of_member.end(), 0);
  plan.first_rank.resize(plan.size.size());
  plan.members_of_group.resize(plan.size.size());
  for (size_t g = 0, next = 0; g < plan.size.size(); next += plan.size[g], ++g)
    plan.first_rank[g] = static_cast<int>(next);
  for (int m = 0; m < members; ++m) plan.members_of_group[plan.group_of_member[m]].push_back(m);
  return plan;
}

std::unique_ptr<Communicator> split_into_group(Communicator& comm, const RankGroups& groups) {
  RN_CHECK(std::accumulate(groups.size.begin(), groups.size.end(), 0) == comm.size(),
           "rank groups of " << comm.size() << " ranks expected");
  return comm.split(groups.group_of_rank(comm.rank()), comm.rank());
}

}  // namespace rn::distributed

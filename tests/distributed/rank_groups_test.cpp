// Rank groups: the plan (sizes, proportional split, every rank in one group, members taking turns,
// bad plans refused) and the split communicators, with messages between ranks beside them.
#include "distributed/rank_groups.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

namespace rn::distributed {
namespace {

// Every rank of `world` is in exactly one group, groups are consecutive, and each member is in
// the list of its group.
void expect_consistent(const RankGroups& p, int world, int members) {
  ASSERT_EQ(p.first_rank.size(), p.size.size());
  EXPECT_EQ(std::accumulate(p.size.begin(), p.size.end(), 0), world);
  for (int r = 0; r < world; ++r) {
    int groups = 0;
    for (int g = 0; g < p.num_groups(); ++g)
      groups += r >= p.first_rank[g] && r < p.first_rank[g] + p.size[g];
    EXPECT_EQ(groups, 1) << "rank " << r;
  }
  ASSERT_EQ(static_cast<int>(p.group_of_member.size()), members);
  std::set<int> listed;
  for (int g = 0; g < p.num_groups(); ++g) {
    EXPECT_GE(p.size[g], 1);
    for (int m : p.members_of_group[g]) {
      EXPECT_EQ(p.group_of_member[m], g);
      EXPECT_TRUE(listed.insert(m).second) << "member " << m << " listed twice";
    }
  }
  EXPECT_EQ(static_cast<int>(listed.size()), members);
}

TEST(RankGroups, EqualSplitGivesTheRestToTheCostliest) {
  const auto p = plan_rank_groups(8, {1, 1, 1, 1}, GroupSplit::equal);
  expect_consistent(p, 8, 4);
  EXPECT_EQ(p.size, (std::vector<int>{2, 2, 2, 2}));
  EXPECT_EQ(p.first_rank, (std::vector<int>{0, 2, 4, 6}));
  const auto q = plan_rank_groups(7, {1, 3, 2}, GroupSplit::equal);
  expect_consistent(q, 7, 3);
  EXPECT_EQ(q.size, (std::vector<int>{2, 3, 2}));  // 7 = 2+2+2, the extra rank to the costliest
  EXPECT_EQ(q.group_of_rank(4), 1);
  EXPECT_EQ(q.describe_ranks(1), "ranks 2-4");
}

TEST(RankGroups, ProportionalSplitFollowsTheCosts) {
  // ResNet-20 / -56 / -110 multiply-adds on CIFAR (41, 126, 253 M) on 16 ranks.
  const auto p = plan_rank_groups(16, {41, 126, 253}, GroupSplit::proportional);
  expect_consistent(p, 16, 3);
  EXPECT_EQ(p.size, (std::vector<int>{2, 5, 9}));
  // Every group keeps one rank however small its member.
  const auto q = plan_rank_groups(4, {1, 1000, 1000}, GroupSplit::proportional);
  expect_consistent(q, 4, 3);
  EXPECT_EQ(q.size, (std::vector<int>{1, 2, 1}));
  EXPECT_EQ(q.describe_ranks(0), "rank 0");
}

TEST(RankGroups, MoreMembersThanRanksTakeTurnsCostliestFirst) {
  const auto p = plan_rank_groups(2, {1, 1.6, 2.2}, GroupSplit::equal);
  expect_consistent(p, 2, 3);
  EXPECT_EQ(p.size, (std::vector<int>{1, 1}));
  EXPECT_EQ(p.group_of_member, (std::vector<int>{1, 1, 0}));   // 2.2 | 1.6 then 1
  EXPECT_EQ(p.members_of_group[1], (std::vector<int>{0, 1}));  // config order within a group
  const auto one = plan_rank_groups(1, {5, 1, 3}, GroupSplit::proportional);
  expect_consistent(one, 1, 3);
  EXPECT_EQ(one.members_of_group[0], (std::vector<int>{0, 1, 2}));
}

TEST(RankGroups, FixedSizesAreKeptOrRefused) {
  const auto p = plan_rank_groups(4, {1, 1}, GroupSplit::equal, {3, 1});
  expect_consistent(p, 4, 2);
  EXPECT_EQ(p.size, (std::vector<int>{3, 1}));
  const auto refused = [](int world, std::vector<int> sizes, const char* what) {
    try {
      plan_rank_groups(world, std::vector<double>(sizes.size() == 1 ? 2 : sizes.size(), 1.0),
                       GroupSplit::equal, sizes);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  refused(4, {2, 1}, "add up to 3, but the job has 4 rank(s)");
  refused(4, {4, 0}, "member 2 is given 0 ranks");
  refused(4, {4}, "given for 1 of 2 members");
  refused(2, {1, 1, 1}, "add up to 3, but the job has 2");
  EXPECT_THROW(plan_rank_groups(2, {}, GroupSplit::equal), Error);
  EXPECT_THROW(plan_rank_groups(2, {1, 0}, GroupSplit::equal), Error);
}

// The split communicators on this job's ranks: sizes, ranks, collectives within a group only.
TEST(RankGroups, SplitCommunicatorsSumWithinTheirGroup) {
  auto world = make_communicator();
  const int n = world->size();
  const auto plan = plan_rank_groups(n, {1, 2}, GroupSplit::proportional);
  auto group = split_into_group(*world, plan);
  const int g = plan.group_of_rank(world->rank());
  EXPECT_EQ(group->size(), plan.size[g]);
  EXPECT_EQ(group->rank(), world->rank() - plan.first_rank[g]);
  // Each group sums its members' world ranks.
  const double sum = group->all_reduce_sum(static_cast<double>(world->rank()));
  double want = 0;
  for (int r = plan.first_rank[g]; r < plan.first_rank[g] + plan.size[g]; ++r) want += r;
  EXPECT_EQ(sum, want);
  world->barrier();
}

TEST(RankGroups, PostedMessagesReachRankZeroInOrder) {
  auto world = make_communicator();
  for (int i = 0; i < 3; ++i)
    world->post(0, "m " + std::to_string(world->rank()) + " " + std::to_string(i));
  if (world->rank() == 0) {
    std::vector<int> next(world->size(), 0);
    for (int got = 0; got < 3 * world->size();) {
      auto msg = world->poll();
      if (!msg) continue;
      int from = -1, i = -1;
      ASSERT_EQ(std::sscanf(msg->c_str(), "m %d %d", &from, &i), 2) << *msg;
      ASSERT_GE(from, 0);
      ASSERT_LT(from, world->size());
      EXPECT_EQ(i, next[from]++) << "from rank " << from;
      ++got;
    }
  }
  EXPECT_FALSE(world->rank() != 0 && world->poll().has_value());
  world->barrier();
}

TEST(RankGroups, OneProcessSplitsIntoItselfAndPostsToItself) {
  SingleProcessCommunicator one;
  one.set_timeout(7);
  auto group = one.split(3, 0);
  EXPECT_EQ(group->size(), 1);
  EXPECT_EQ(group->rank(), 0);
  EXPECT_EQ(group->timeout_s(), 7);
  EXPECT_FALSE(one.poll().has_value());
  one.post(0, "first");
  one.post(0, "second");
  EXPECT_EQ(one.poll().value_or(""), "first");
  EXPECT_EQ(one.poll().value_or(""), "second");
  EXPECT_FALSE(one.poll().has_value());
  EXPECT_THROW(one.post(1, "nobody"), Error);
}

}  // namespace
}  // namespace rn::distributed

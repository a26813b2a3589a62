// RankEnvironment: the facts about a rank found once after MPI starts (its place on its node,
// its CPUs and threads, its GPU, the job's nodes), and the node layout of any group of ranks.
// The MPI runs are on one machine: every rank shares one node.
#include "distributed/rank_environment.h"

#include <gtest/gtest.h>

#include "core/backend/backend.h"
#include "core/check.h"
#include "distributed/rank_groups.h"

namespace rn::distributed {
namespace {

TEST(RankEnvironment, OneMachineIsOneNodeWhoseRanksAreTheJobs) {
  auto comm = make_communicator();
  const RankEnvironment env = make_rank_environment(*comm);
  EXPECT_EQ(env.rank, comm->rank());
  EXPECT_EQ(env.size, comm->size());
  EXPECT_EQ(env.local_rank, comm->rank());
  EXPECT_EQ(env.ranks_on_node, comm->size());
  EXPECT_EQ(env.gpu_index, env.local_rank);
  EXPECT_EQ(env.nodes.nodes, 1);
  EXPECT_EQ(env.nodes.ranks_per_node, std::vector<int>{comm->size()});
  EXPECT_EQ(env.node_of_rank, std::vector<int>(comm->size(), 0));
  EXPECT_GE(env.threads, 1);
  EXPECT_LE(env.threads, env.cpus);
  EXPECT_FALSE(env.cpu_isa.empty());
  EXPECT_EQ(env.device(DeviceKind::cuda), (Device{DeviceKind::cuda, env.local_rank}));
  EXPECT_EQ(env.device(DeviceKind::cpu), Device{});
  EXPECT_EQ(env.threads_or(3), 3);
  EXPECT_EQ(env.threads_or(0), env.threads);
}

// What `auto` device and precision stand for, agreed by every rank: on one machine, each rank's
// GPU is its own only where the node has one per rank; every rank's CPU is this one.
TEST(RankEnvironment, AutoDeviceAndPrecisionFactsAreTheJobsAgreement) {
  auto comm = make_communicator();
  const RankEnvironment env = make_rank_environment(*comm);
  EXPECT_EQ(env.gpu, cuda_gpu_of(env.gpu_index));
  // Every rank runs on this CPU: bf16 is faster on all or on none, said the same way.
  const Bf16Verdict here = cpu_bf16_verdict();
  EXPECT_EQ(env.cpu_bf16_everywhere, here.faster) << here.why;
  EXPECT_FALSE(env.cpu_bf16_why.empty());
  EXPECT_EQ(env.gpus_everywhere, env.why_no_gpu.empty());
  if (env.gpu.empty()) {
    EXPECT_FALSE(env.gpus_everywhere);
    EXPECT_EQ(env.why_no_gpu, comm->size() == 1 ? "this rank sees no GPU" : "rank 0 sees no GPU");
  }
  // The same answer on every rank.
  const double agreeing = comm->all_reduce_sum(env.gpus_everywhere ? 1.0 : 0.0);
  EXPECT_TRUE(agreeing == 0 || agreeing == comm->size());
  const double bf16 = comm->all_reduce_sum(env.cpu_bf16_everywhere ? 1.0 : 0.0);
  EXPECT_TRUE(bf16 == 0 || bf16 == comm->size());
}

// A rank group knows the job ranks it holds, from which its layout follows without asking MPI.
TEST(RankEnvironment, AGroupsLayoutFollowsFromItsJobRanks) {
  auto comm = make_communicator();
  const RankEnvironment env = make_rank_environment(*comm);
  EXPECT_EQ(comm->world_ranks().size(), static_cast<size_t>(comm->size()));
  // Two groups of consecutive ranks, as an ensemble plans them.
  const int first = comm->size() / 2;
  const int color = comm->rank() < first ? 0 : 1;
  auto group = comm->split(color, comm->rank());
  std::vector<int> want;
  for (int r = 0; r < comm->size(); ++r)
    if ((r < first ? 0 : 1) == color) want.push_back(r);
  EXPECT_EQ(group->world_ranks(), want);
  EXPECT_EQ(env.layout_of(group->world_ranks()).ranks_per_node, std::vector<int>{group->size()});
}

TEST(RankEnvironment, LayoutsOfRanksOnSeveralNodes) {
  RankEnvironment env;
  env.node_of_rank = {0, 0, 1, 1, 2};  // nodes numbered by their lowest rank
  NodeLayout all = env.layout_of({0, 1, 2, 3, 4});
  EXPECT_EQ(all.nodes, 3);
  EXPECT_EQ(all.ranks_per_node, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(all.describe(), "3 nodes (2 + 2 + 1 ranks)");
  EXPECT_EQ(env.layout_of({3, 4}).describe(), "2 nodes (1 + 1 ranks)");
  EXPECT_EQ(env.layout_of({2, 3}).describe(), "1 node");
  EXPECT_THROW(env.layout_of({5}), Error);
}

}  // namespace
}  // namespace rn::distributed

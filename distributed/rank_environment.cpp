// The rank environment: this rank's place on its node, its CPUs and the job's nodes, found once
// with MPI_Comm_split_type and sched_getaffinity, whichever launcher started the ranks.
#include "distributed/rank_environment.h"

#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <limits>
#include <map>
#include <thread>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"
#include "distributed/mpi_comm.h"

namespace rn::distributed {

namespace {

// The ranks of `comm` on this node: ranks that can share memory, whatever the launcher said.
class NodeComm {
 public:
  explicit NodeComm(MPI_Comm comm) {
    RN_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &comm_));
  }
  ~NodeComm() { MPI_Comm_free(&comm_); }
  NodeComm(const NodeComm&) = delete;
  NodeComm& operator=(const NodeComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// The CPUs this process may run on (what taskset, cgroups, Slurm or mpirun's binding left it).
cpu_set_t own_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    // No CPU set to read: every CPU the system reports.
    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned c = 0; c < n && c < CPU_SETSIZE; ++c) CPU_SET(c, &set);
  }
  return set;
}

// This rank's CPUs shared among the ranks of its node whose CPU sets overlap them.
int threads_on_node(const cpu_set_t& mine, MPI_Comm node, int ranks_on_node) {
  std::vector<cpu_set_t> all(static_cast<size_t>(ranks_on_node));
  RN_MPI_CHECK(
      MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, node));
  int sharing = 0;
  for (cpu_set_t& other : all) {
    cpu_set_t both;
    CPU_AND(&both, &mine, &other);
    sharing += CPU_COUNT(&both) > 0;
  }
  return std::max(1, CPU_COUNT(&mine) / std::max(1, sharing));
}

// Whether this rank's GPU (`gpu`, "" for none) is its own on the node, as a reason code: 0 its
// own, 1 none, 2 shared with another rank of the node.
int own_gpu_code(const std::string& gpu, MPI_Comm node, int ranks_on_node) {
  if (gpu.empty()) return 1;
  constexpr size_t kIdBytes = 64;
  std::vector<char> mine(kIdBytes, 0), all(kIdBytes * static_cast<size_t>(ranks_on_node));
  std::copy_n(gpu.begin(), std::min(gpu.size(), kIdBytes - 1), mine.begin());
  RN_MPI_CHECK(
      MPI_Allgather(mine.data(), kIdBytes, MPI_CHAR, all.data(), kIdBytes, MPI_CHAR, node));
  int holders = 0;
  for (int r = 0; r < ranks_on_node; ++r)
    holders += std::string(all.data() + r * kIdBytes) == std::string(mine.data());
  return holders > 1 ? 2 : 0;
}

// The job's agreement on GPUs and CPU bf16, from each rank's own facts.
void agree_on_devices(RankEnvironment& env, int own_gpu_code, const Bf16Verdict& bf16,
                      MPI_Comm comm) {
  constexpr int kNone = std::numeric_limits<int>::max();
  // The first rank without a GPU of its own, and why: rank * 4 + code, the smallest such; the
  // first rank where bf16 is not faster.
  int first[2] = {own_gpu_code == 0 ? kNone : env.rank * 4 + own_gpu_code,
                  bf16.faster ? kNone : env.rank};
  if (comm != MPI_COMM_NULL)
    RN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, first, 2, MPI_INT, MPI_MIN, comm));
  env.gpus_everywhere = first[0] == kNone;
  env.cpu_bf16_everywhere = first[1] == kNone;
  // Each rank's own reason where it decides, else the rank that decided.
  env.cpu_bf16_why = bf16.faster == env.cpu_bf16_everywhere
                         ? bf16.why
                         : "rank " + std::to_string(first[1]) + "'s CPU does not run it faster";
  if (env.gpus_everywhere) return;
  const std::string who = env.size == 1 ? "this rank" : "rank " + std::to_string(first[0] / 4);
  env.why_no_gpu = who + (first[0] % 4 == 1 ? " sees no GPU" : " shares its GPU with another rank");
}

}  // namespace

RankEnvironment make_rank_environment(const Communicator& world) {
  RankEnvironment env;
  env.rank = world.rank();
  env.size = world.size();
  env.cpu_isa = cpu_isa_name();
  const cpu_set_t mine = own_cpus();
  env.cpus = env.threads = std::max(1, CPU_COUNT(&mine));
  const Bf16Verdict cpu_bf16 = cpu_bf16_verdict();
  const MPI_Comm comm = mpi_comm(world);
  if (comm == MPI_COMM_NULL) {  // one process without MPI: one node, every CPU
    env.gpu = cuda_gpu_of(0);
    agree_on_devices(env, env.gpu.empty() ? 1 : 0, cpu_bf16, comm);
    return env;
  }

  const NodeComm node(comm);
  RN_MPI_CHECK(MPI_Comm_rank(node.get(), &env.local_rank));
  RN_MPI_CHECK(MPI_Comm_size(node.get(), &env.ranks_on_node));
  env.gpu_index = env.local_rank;
  env.gpu = cuda_gpu_of(env.gpu_index);
  agree_on_devices(env, own_gpu_code(env.gpu, node.get(), env.ranks_on_node), cpu_bf16, comm);
  env.threads = threads_on_node(mine, node.get(), env.ranks_on_node);
  // Each rank's node, named by the lowest job rank on it; nodes numbered in that order.
  int leader = env.rank;
  RN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &leader, 1, MPI_INT, MPI_MIN, node.get()));
  std::vector<int> leaders(static_cast<size_t>(env.size));
  RN_MPI_CHECK(MPI_Allgather(&leader, 1, MPI_INT, leaders.data(), 1, MPI_INT, comm));
  std::map<int, int> index;  // leader -> node, in order of the leaders
  for (int l : leaders) index.emplace(l, 0);
  int n = 0;
  for (auto& [l, i] : index) i = n++;
  env.node_of_rank.clear();
  for (int l : leaders) env.node_of_rank.push_back(index[l]);
  std::vector<int> all(static_cast<size_t>(env.size));
  for (int r = 0; r < env.size; ++r) all[r] = r;
  env.nodes = env.layout_of(all);
  return env;
}

NodeLayout RankEnvironment::layout_of(const std::vector<int>& world_ranks) const {
  // Nodes in the order of their lowest rank among `world_ranks`.
  std::vector<int> order, count;
  for (int r : world_ranks) {
    RN_CHECK(r >= 0 && r < static_cast<int>(node_of_rank.size()),
             "[environment] rank " << r << " is not a rank of this job of " << node_of_rank.size());
    const int node = node_of_rank[r];
    const auto it = std::find(order.begin(), order.end(), node);
    if (it == order.end()) {
      order.push_back(node);
      count.push_back(1);
    } else {
      ++count[it - order.begin()];
    }
  }
  NodeLayout layout;
  layout.nodes = static_cast<int>(order.size());
  layout.ranks_per_node = count;
  return layout;
}

std::string NodeLayout::describe() const {
  if (nodes == 1) return "1 node";
  std::string counts;
  for (size_t i = 0; i < ranks_per_node.size(); ++i)
    counts += (i ? " + " : "") + std::to_string(ranks_per_node[i]);
  return std::to_string(nodes) + " nodes (" + counts + " ranks)";
}

}  // namespace rn::distributed

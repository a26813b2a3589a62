// This process's place on its node: its rank among the node's ranks (one GPU per rank is chosen
// by it), the CPU threads it should run (its CPU set shared with the node's ranks whose sets
// overlap it), and the job's nodes, whichever launcher started the ranks.
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "core/check.h"
#include "distributed/mpi_comm.h"
#include "distributed/nccl_communicator.h"

namespace rn::distributed {

namespace {

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// The ranks of this node: ranks that can share memory, whatever the launcher's variables.
class NodeComm {
 public:
  NodeComm() {
    RN_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &comm_));
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

}  // namespace

int local_rank() {
  if (!mpi_running()) return 0;
  NodeComm node;
  int rank = 0;
  RN_MPI_CHECK(MPI_Comm_rank(node.get(), &rank));
  return rank;
}

int cpu_threads_per_rank() {
  cpu_set_t mine = own_cpus();
  const int cpus = std::max(1, CPU_COUNT(&mine));
  if (!mpi_running()) return cpus;
  // Every rank's CPU set on this node; the ranks whose sets overlap this one share its CPUs.
  NodeComm node;
  int size = 1;
  RN_MPI_CHECK(MPI_Comm_size(node.get(), &size));
  std::vector<cpu_set_t> all(static_cast<size_t>(size));
  RN_MPI_CHECK(
      MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, node.get()));
  int sharing = 0;
  for (cpu_set_t& other : all) {
    cpu_set_t both;
    CPU_AND(&both, &mine, &other);
    sharing += CPU_COUNT(&both) > 0;
  }
  return std::max(1, cpus / std::max(1, sharing));
}

NodeLayout node_layout(const Communicator& comm) {
  NodeLayout layout;
  const MPI_Comm c = mpi_comm(comm);
  if (!mpi_running() || c == MPI_COMM_NULL) return layout;
  MPI_Comm node = MPI_COMM_NULL;
  RN_MPI_CHECK(MPI_Comm_split_type(c, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int local = 0, local_size = 1, size = 1;
  MPI_Comm_rank(node, &local);
  MPI_Comm_size(node, &local_size);
  MPI_Comm_free(&node);
  MPI_Comm_size(c, &size);
  // Each rank's (local rank, node size); the nodes are the ranks with local rank 0.
  std::vector<int> mine{local, local_size}, all(2 * static_cast<size_t>(size));
  RN_MPI_CHECK(MPI_Allgather(mine.data(), 2, MPI_INT, all.data(), 2, MPI_INT, c));
  layout.ranks_per_node.clear();
  for (int r = 0; r < size; ++r)
    if (all[2 * r] == 0) layout.ranks_per_node.push_back(all[2 * r + 1]);
  layout.nodes = static_cast<int>(layout.ranks_per_node.size());
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

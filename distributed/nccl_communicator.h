// NCCL collectives on GPU buffers for data-parallel training on CUDA; MPI bootstraps NCCL and
// still carries the host-side collectives (config check, metrics, barriers).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "distributed/communicator.h"

namespace rn::distributed {

// This process's rank among the ranks on its node (MPI_Comm_split_type, shared memory), which
// picks its GPU; 0 when MPI is not running. Collective: every rank calls it at the same point.
int local_rank();
// CPU threads for this rank: the CPUs of its CPU set (sched_getaffinity: what taskset, cgroups,
// Slurm or mpirun's binding left it) divided among the ranks of its node whose CPU sets overlap
// it, at least 1; the whole set without MPI. Collective as local_rank().
int cpu_threads_per_rank();

// Where the ranks of a communicator run: its nodes (ranks that share memory), and the ranks on
// each, nodes in the order of their lowest rank. Collective over `comm`; a communicator without
// MPI (a single process) is one node of one rank.
struct NodeLayout {
  int nodes = 1;
  std::vector<int> ranks_per_node{1};
  std::string describe() const;  // "2 nodes (2 + 2 ranks)", "1 node"
};
NodeLayout node_layout(const Communicator& comm);

// A communicator whose all-reduce and broadcast run NCCL on device buffers of `backend` (a CUDA
// backend), ordered after the work already queued on the backend's stream, on a stream of its
// own; host buffers and the other collectives go to `host`, which must outlive it. Throws where
// the project was built without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, Backend& backend);
// The NCCL this process loaded ("2.28.3"), or why there is none.
std::string nccl_runtime_version();

}  // namespace rn::distributed

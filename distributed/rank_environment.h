// The facts about this rank that every command needs, decided once after MPI starts, from the
// communicator and the operating system alone (MPI_Comm_split_type, sched_getaffinity, oneDNN's
// ISA query), whichever launcher started the ranks: its place in the job and on its node, the
// job's nodes, its CPUs and threads, its GPU and the CPU's instruction set. `main` builds it;
// every command and the training engine receive it; nothing else finds any of it again.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "distributed/communicator.h"

namespace rn::distributed {

// Where ranks run: their nodes (ranks that share memory) and the ranks on each, nodes in the
// order of their lowest rank.
struct NodeLayout {
  int nodes = 1;
  std::vector<int> ranks_per_node{1};
  std::string describe() const;  // "2 nodes (2 + 2 ranks)", "1 node"
};

struct RankEnvironment {
  int rank = 0, size = 1;  // in the job
  int local_rank = 0;      // among the ranks of its node
  int ranks_on_node = 1;
  NodeLayout nodes;                  // the job's
  std::vector<int> node_of_rank{0};  // each job rank's node, as an index into the layout's
  int cpus = 1;                      // the CPUs of this rank's CPU set (taskset, cgroups, binding)
  // CPU threads it runs by default (train.threads 0, --threads absent): its CPUs shared among
  // the ranks of its node whose CPU sets overlap it, at least 1. oneDNN runs OpenMP, and
  // oversubscribed OpenMP threads slow everything down many times.
  int threads = 1;
  std::string cpu_isa;  // the instruction set oneDNN runs ("avx512_core_bf16", ...)
  // The GPU a CUDA backend takes: the rank's place on its node (the backend maps it onto the
  // GPUs it sees, one per rank).
  int gpu_index = 0;
  // That GPU's PCI bus id ("" where this rank sees none).
  std::string gpu;
  // Agreed by every rank of the job, for train.device and train.precision `auto`: whether each
  // rank has a GPU of its own (NCCL cannot run two ranks on one GPU), and where not, the first
  // rank without and why; whether bf16 is faster than fp32 on each rank's CPU
  // (cpu_bf16_verdict), and why or why not.
  bool gpus_everywhere = false;
  std::string why_no_gpu;
  bool cpu_bf16_everywhere = false;
  std::string cpu_bf16_why;

  // The device of `kind` for this rank (its GPU for CUDA).
  Device device(DeviceKind kind) const {
    return Device{kind, kind == DeviceKind::cuda ? gpu_index : 0};
  }
  // `requested` threads where it is positive, else this rank's default.
  int threads_or(int requested) const { return requested > 0 ? requested : threads; }
  // Where the job ranks `world_ranks` run (a rank group's: Communicator::world_ranks()).
  NodeLayout layout_of(const std::vector<int>& world_ranks) const;
};

// The environment of this rank in the job `world` (MPI's world; a single-process communicator
// without MPI). Collective over `world`: every rank calls it once, at the same point.
RankEnvironment make_rank_environment(const Communicator& world);

}  // namespace rn::distributed

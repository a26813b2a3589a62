// The rank of this process among the ranks of its node: one GPU per rank is chosen by it.
#include <mpi.h>

#include <utility>

#include "core/check.h"
#include "distributed/nccl_communicator.h"

namespace rn::distributed {

namespace {

// This rank's place on its node and the node's rank count; {0, 1} without MPI.
std::pair<int, int> node_position() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return {0, 1};
  // Ranks that can share memory are the ranks of one node, whatever the launcher's variables.
  MPI_Comm node = MPI_COMM_NULL;
  RN_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int rank = 0, size = 1;
  int rc = MPI_Comm_rank(node, &rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node, &size);
  MPI_Comm_free(&node);
  RN_MPI_CHECK(rc);
  return {rank, size};
}

}  // namespace

int local_rank() {
  return node_position().first;
}

int local_size() {
  return node_position().second;
}

}  // namespace rn::distributed

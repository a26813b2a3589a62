// The MPI communicator under a Communicator, for libraries that take one (parallel HDF5).
#pragma once

#include <mpi.h>

#include "distributed/communicator.h"

namespace rn::distributed {

// The communicator's own MPI_Comm (a duplicate of MPI_COMM_WORLD), or MPI_COMM_NULL for a
// single-process communicator. Collective calls on it must follow the same order on every rank.
MPI_Comm mpi_comm(const Communicator& comm);

}  // namespace rn::distributed

// The MPI communicator under a Collective (Collective::mpi_handle), for code that calls MPI
// itself: the rank environment's node queries.
#pragma once

#include <mpi.h>

#include "core/collective.h"

namespace rn::distributed {

// The communicator's own MPI_Comm (a duplicate of MPI_COMM_WORLD, or a rank group's), or
// MPI_COMM_NULL for a single-process communicator. Collective calls on it must follow the same
// order on every rank.
MPI_Comm mpi_comm(const Collective& comm);

}  // namespace rn::distributed

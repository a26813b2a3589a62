// NCCL collectives on GPU buffers for data-parallel training on CUDA; MPI bootstraps NCCL and
// still carries the host-side collectives (config check, metrics, barriers).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "distributed/communicator.h"

namespace rn::distributed {

// A communicator whose all-reduce and broadcast run NCCL on device buffers of `backend` (a CUDA
// backend), ordered after the work already queued on the backend's stream, on a stream of its
// own; host buffers and the other collectives go to `host`, which must outlive it. Throws where
// the project was built without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, Backend& backend);
// The NCCL this process loaded ("2.28.3"), or why there is none.
std::string nccl_runtime_version();

}  // namespace rn::distributed

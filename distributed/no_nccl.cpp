// The NCCL entry point of a build without CUDA: it says so.
#include "core/check.h"
#include "distributed/nccl_communicator.h"

namespace rn::distributed {

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, Backend&) {
  RN_FAIL(
      "train.device 'cuda': this resnet was built without NCCL (CUDA toolkit, cuDNN and NCCL "
      "were not found at configure time)");
}

std::string nccl_runtime_version() {
  return "built without NCCL";
}

}  // namespace rn::distributed

// The CUDA entry points of a build without the CUDA toolkit: they say so.
#include "core/backend/backend.h"
#include "core/check.h"

namespace rn {

std::unique_ptr<Backend> make_cuda_backend(int, MathMode) {
  RN_FAIL(
      "train.device 'cuda': this resnet was built without CUDA (CUDA toolkit, cuDNN and NCCL "
      "were not found at configure time)");
}

bool cuda_available() {
  return false;
}

std::string cuda_gpu_of(int) {
  return "";
}

std::vector<std::pair<std::string, std::string>> cuda_runtime_report() {
  return {{"cuda", "built without CUDA"}};
}

}  // namespace rn

// Backend selection by device.
#include "core/backend/backend.h"

namespace rn {

std::unique_ptr<Backend> make_backend(Device device, int threads) {
  if (device.kind == DeviceKind::cuda) return make_cuda_backend(device.index);
  return make_cpu_backend(threads);
}

}  // namespace rn

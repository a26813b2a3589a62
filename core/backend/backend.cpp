// Backend selection by device, and the shape arithmetic both backends share.
#include "core/backend/backend.h"

#include "core/check.h"

namespace rn {

Shape conv_output_shape(const ConvParams& p, const Shape& x) {
  const int64_t c = x[1], h = x[2], w = x[3];
  RN_CHECK(p.groups >= 1 && c % p.groups == 0 && p.out_channels % p.groups == 0,
           "[conv] channels " << c << " -> " << p.out_channels << " not divisible by groups "
                              << p.groups);
  const int64_t span = static_cast<int64_t>(p.dilation) * (p.kernel - 1) + 1;
  const int64_t oh = (h + 2 * p.pad - span) / p.stride + 1;
  const int64_t ow = (w + 2 * p.pad - span) / p.stride + 1;
  RN_CHECK(oh > 0 && ow > 0, "[conv] input " << x.str() << " too small for kernel " << p.kernel
                                             << " stride " << p.stride);
  return Shape{x[0], p.out_channels, oh, ow};
}

std::unique_ptr<Backend> make_backend(Device device, int threads) {
  if (device.kind == DeviceKind::cuda) return make_cuda_backend(device.index);
  return make_cpu_backend(threads);
}

}  // namespace rn

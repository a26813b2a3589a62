// Per-channel count, mean and sum of squared deviations (M2), accumulated one value at a time
// (Welford) and merged across any grouping (Chan et al.): the statistics of the CUDA backend's
// own batch norm, where each thread, then each block, then each channel's row parts merge in a
// fixed order. Callable on the host and the device, so that the arithmetic is tested without a
// GPU. Unlike sum(x^2) - sum(x)^2 / n, M2 loses nothing to a mean that is large beside the
// spread.
#pragma once

#include "core/backend/host_device.h"

namespace rn {

template <typename F>
struct Moments {
  F n = 0, mean = 0, m2 = 0;
};

template <typename F>
RN_HOST_DEVICE inline void moments_add(Moments<F>& a, F x) {
  a.n += 1;
  const F d = x - a.mean;
  a.mean += d / a.n;
  a.m2 += d * (x - a.mean);
}

template <typename F>
RN_HOST_DEVICE inline Moments<F> moments_merge(const Moments<F>& a, const Moments<F>& b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  const F n = a.n + b.n, d = b.mean - a.mean, wb = b.n / n;
  return Moments<F>{n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb};
}

}  // namespace rn

// Bodies of the pooling kernels (pool.cu): max, average and global-average pooling on NHWC,
// forward and backward. Max pooling keeps the position of each window's maximum (one byte per
// output) for its backward, which the op interface hands only the output gradient.
#pragma once

#include <cfloat>

#include "core/backend/cuda/kernels/kernel_thread.h"
#include "core/backend/ops.h"
#include "core/check.h"

namespace rn::cuda {

struct PoolGeometry {
  int64_t n, c, h, w, oh, ow;
  int kh, kw, s, pad;
  bool max;
  // PyTorch's count_include_pad divisor: the window clipped to the padded input.
  RN_KERNEL_FN int divisor(int64_t y, int64_t x) const {
    const int64_t h0 = y * s - pad, w0 = x * s - pad;
    const int64_t h1 = kmin(h0 + kh, h + pad), w1 = kmin(w0 + kw, w + pad);
    return static_cast<int>((h1 - h0) * (w1 - w0));
  }
};

// The geometry of pooling an N x C x H x W input (host side; global pooling is one window of the
// whole input).
inline PoolGeometry pool_geometry(const PoolParams& p, const Shape& x) {
  RN_CHECK(x.rank() == 4, "[pool] input must be N x C x H x W, got " << x.str());
  PoolGeometry g{};
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.kh = g.kw = p.kernel, g.s = p.stride, g.pad = p.pad;
  if (p.global) g.kh = static_cast<int>(g.h), g.kw = static_cast<int>(g.w), g.s = 1, g.pad = 0;
  g.max = p.kind == PoolKind::max;
  RN_CHECK(!g.max || g.kh * g.kw <= 256,
           "[pool] max pooling windows hold at most 256 elements, got " << g.kh << "x" << g.kw);
  g.oh = (g.h + 2 * g.pad - g.kh) / g.s + 1;
  g.ow = (g.w + 2 * g.pad - g.kw) / g.s + 1;
  RN_CHECK(g.oh > 0 && g.ow > 0, "[pool] input " << x.str() << " too small for kernel " << g.kh);
  return g;
}

// One thread per output element in NHWC order: neighbouring threads take neighbouring channels,
// so every read of the window is coalesced.
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void pool_forward_body(const Th& th, const PoolGeometry& g, P<const T> x, P<T> y,
                                    P<uint8_t> argmax) {
  const Dims4 out{g.n, g.c, g.oh, g.ow};
  const int64_t total = out.numel();
  for (int64_t i = th.global_x(); i < total; i += th.stride_x()) {
    const Coords4 k = nhwc_coords(i, out);
    const int64_t n = k.n, c = k.c, oy = k.h, ox = k.w;
    const int64_t h0 = oy * g.s - g.pad, w0 = ox * g.s - g.pad;
    float best = -FLT_MAX, sum = 0.f;
    int arg = 0;
    for (int ky = 0; ky < g.kh; ++ky) {
      const int64_t hy = h0 + ky;
      if (hy < 0 || hy >= g.h) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const int64_t wx = w0 + kx;
        if (wx < 0 || wx >= g.w) continue;
        const float v = to_f(x[((n * g.h + hy) * g.w + wx) * g.c + c]);
        sum += v;
        if (v > best) best = v, arg = ky * g.kw + kx;
      }
    }
    if (g.max) {
      y[i] = from_f<T>(best);
      if (argmax) argmax[i] = static_cast<uint8_t>(arg);
    } else {
      y[i] = from_f<T>(sum / g.divisor(oy, ox));
    }
  }
}

RN_KERNEL_FN int64_t clamp_index(int64_t i, int64_t n) {
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

// One thread per input element, gathering from every window that covers it: no atomics, and
// the sum is deterministic.
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void pool_backward_body(const Th& th, const PoolGeometry& g, P<const T> dy,
                                     P<const uint8_t> argmax, P<T> dx) {
  const Dims4 in{g.n, g.c, g.h, g.w};
  const int64_t total = in.numel();
  for (int64_t i = th.global_x(); i < total; i += th.stride_x()) {
    const Coords4 k = nhwc_coords(i, in);
    const int64_t n = k.n, c = k.c, y = k.h, x = k.w;
    // Windows oy with oy*s - pad <= y < oy*s - pad + kh.
    const int64_t oy0 = clamp_index((y + g.pad - g.kh + g.s) / g.s, g.oh);
    const int64_t oy1 = clamp_index((y + g.pad) / g.s, g.oh);
    const int64_t ox0 = clamp_index((x + g.pad - g.kw + g.s) / g.s, g.ow);
    const int64_t ox1 = clamp_index((x + g.pad) / g.s, g.ow);
    float sum = 0.f;
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      const int64_t ky = y - (oy * g.s - g.pad);
      if (ky < 0 || ky >= g.kh) continue;
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t kx = x - (ox * g.s - g.pad);
        if (kx < 0 || kx >= g.kw) continue;
        const int64_t o = ((n * g.oh + oy) * g.ow + ox) * g.c + c;
        if (g.max)
          sum += argmax[o] == ky * g.kw + kx ? to_f(dy[o]) : 0.f;
        else
          sum += to_f(dy[o]) / g.divisor(oy, ox);
      }
    }
    dx[i] = from_f<T>(sum);
  }
}

}  // namespace rn::cuda

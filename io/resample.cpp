// Separable antialiased bilinear resampling, fused with flip and normalisation.
#include "io/resample.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace rn::io {

void make_filter_taps(double start, double size, int in_size, int out_size, bool mirror,
                      FilterTaps& t) {
  RN_CHECK(in_size > 0 && out_size > 0 && size > 0,
           "[resample] " << size << " of " << in_size << " pixels to " << out_size);
  const double scale = size / out_size;
  // The triangle's half-width in input pixels: one pixel when enlarging, the scale when
  // shrinking (so every input pixel contributes: no aliasing).
  const double support = std::max(scale, 1.0);
  const int taps = std::min(static_cast<int>(std::ceil(support)) * 2 + 1, in_size);
  t.taps = taps;
  t.first.resize(static_cast<size_t>(out_size));
  t.weights.assign(static_cast<size_t>(out_size) * taps, 0.0f);
  for (int i = 0; i < out_size; ++i) {
    const int o = mirror ? out_size - 1 - i : i;
    const double center = start + (o + 0.5) * scale;
    // Input pixels whose centres lie within the support: j + 0.5 in (center - s, center + s).
    int lo = static_cast<int>(std::floor(center - support - 0.5)) + 1;
    int hi = static_cast<int>(std::ceil(center + support - 0.5));  // exclusive
    lo = std::clamp(lo, 0, in_size - 1);
    hi = std::clamp(hi, lo + 1, in_size);
    if (hi - lo > taps) {  // rounding at the edges: keep the window centred in `taps`
      const int mid = std::clamp(static_cast<int>(std::floor(center)), 0, in_size - 1);
      lo = std::clamp(mid - taps / 2, 0, in_size - taps);
      hi = lo + taps;
    }
    const int first = std::min(lo, in_size - taps);
    t.first[static_cast<size_t>(i)] = first;
    float* w = t.weights.data() + static_cast<size_t>(i) * taps;
    double sum = 0;
    for (int j = lo; j < hi; ++j) {
      const double v = std::max(0.0, 1.0 - std::abs(j + 0.5 - center) / support);
      w[j - first] = static_cast<float>(v);
      sum += v;
    }
    if (sum <= 0) {  // a box outside the image: the nearest pixel
      const int j = std::clamp(static_cast<int>(std::floor(center)), 0, in_size - 1);
      std::fill(w, w + taps, 0.0f);
      t.first[static_cast<size_t>(i)] = std::min(j, in_size - taps);
      w[j - t.first[static_cast<size_t>(i)]] = 1.0f;
      continue;
    }
    for (int k = 0; k < taps; ++k) w[k] = static_cast<float>(w[k] / sum);
  }
}

void resample_box(const uint8_t* image, int width, int height, int channels, size_t stride,
                  double bx, double by, double bw, double bh, const ResampleOut& out,
                  ResampleScratch& s) {
  RN_CHECK(channels == 1 || channels == 3, "[resample] " << channels << " channels");
  const int ow = out.width, oh = out.height;
  make_filter_taps(bx, bw, width, ow, out.flip, s.x);
  make_filter_taps(by, bh, height, oh, /*mirror=*/false, s.y);
  // Only the rows the vertical filter reads are resampled horizontally.
  const int y_lo = s.y.first.front();
  const int y_hi = s.y.first.back() + s.y.taps;
  const int rows = y_hi - y_lo;
  const size_t plane = static_cast<size_t>(rows) * ow;
  s.rows.resize(plane * channels);
  const int tx = s.x.taps;
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = image + static_cast<size_t>(y_lo + r) * stride;
    if (channels == 1) {
      float* dst = s.rows.data() + static_cast<size_t>(r) * ow;
      for (int i = 0; i < ow; ++i) {
        const uint8_t* p = src + s.x.first[static_cast<size_t>(i)];
        const float* w = s.x.weights.data() + static_cast<size_t>(i) * tx;
        float acc = 0;
        for (int k = 0; k < tx; ++k) acc += w[k] * p[k];
        dst[i] = acc;
      }
    } else {
      float* d0 = s.rows.data() + static_cast<size_t>(r) * ow;
      float* d1 = d0 + plane;
      float* d2 = d1 + plane;
      for (int i = 0; i < ow; ++i) {
        const uint8_t* p = src + static_cast<size_t>(s.x.first[static_cast<size_t>(i)]) * 3;
        const float* w = s.x.weights.data() + static_cast<size_t>(i) * tx;
        float a0 = 0, a1 = 0, a2 = 0;
        for (int k = 0; k < tx; ++k) {
          a0 += w[k] * p[3 * k];
          a1 += w[k] * p[3 * k + 1];
          a2 += w[k] * p[3 * k + 2];
        }
        d0[i] = a0, d1[i] = a1, d2[i] = a2;
      }
    }
  }
  const int ty = s.y.taps;
  const size_t out_plane = static_cast<size_t>(oh) * ow;
  for (int c = 0; c < 3; ++c) {
    const float* src_plane = s.rows.data() + (channels == 1 ? 0 : c * plane);
    const float mul = out.mul[c], add = out.add[c];
    for (int y = 0; y < oh; ++y) {
      float* dst = out.planes + c * out_plane + static_cast<size_t>(y) * ow;
      const float* w = s.y.weights.data() + static_cast<size_t>(y) * ty;
      const float* base = src_plane + static_cast<size_t>(s.y.first[static_cast<size_t>(y)] - y_lo) * ow;
      // Weights folded with the normalisation's scale: one multiply-add per tap, vectorised
      // over the row.
      for (int x = 0; x < ow; ++x) dst[x] = add;
      for (int k = 0; k < ty; ++k) {
        const float wk = w[k] * mul;
        const float* row = base + static_cast<size_t>(k) * ow;
        for (int x = 0; x < ow; ++x) dst[x] += wk * row[x];
      }
    }
  }
}

}  // namespace rn::io

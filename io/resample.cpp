// Separable antialiased bilinear resampling, fused with flip and normalisation.
#include "io/resample.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace rn::io {

namespace {

// The windows of make_filter_taps are sized for the widest case; trims them to the taps that
// carry weight (a bilinear enlargement reads 2 pixels, not 3), so that the passes do no dead
// work.
void trim_taps(FilterTaps& t, int in_size, int out_size) {
  const int taps = t.taps;
  int width = 0;
  for (int i = 0; i < out_size; ++i) {
    const float* w = t.weights.data() + static_cast<size_t>(i) * taps;
    int a = 0, b = taps - 1;
    while (a < b && w[a] == 0.0f) ++a;
    while (b > a && w[b] == 0.0f) --b;
    width = std::max(width, b - a + 1);
  }
  if (width == taps) return;
  // Compacted in place, front to back: output i's trimmed taps land at i * width, never after
  // the untrimmed ones they come from (i * taps + shift, shift >= 0), so nothing is read after
  // it was overwritten, and the buffer keeps its capacity from sample to sample.
  float* weights = t.weights.data();
  for (int i = 0; i < out_size; ++i) {
    const float* w = weights + static_cast<size_t>(i) * taps;
    int a = 0;
    while (a < taps - 1 && w[a] == 0.0f) ++a;
    // The window starts at the first weighted pixel unless that runs past the axis's end.
    const int first = std::min(t.first[static_cast<size_t>(i)] + a, in_size - width);
    const int shift = first - t.first[static_cast<size_t>(i)];
    float* to = weights + static_cast<size_t>(i) * width;
    for (int k = 0; k < width; ++k) to[k] = k + shift < taps ? w[k + shift] : 0.0f;
    t.first[static_cast<size_t>(i)] = first;
  }
  t.taps = width;
  t.weights.resize(static_cast<size_t>(out_size) * width);
}

}  // namespace

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
  trim_taps(t, in_size, out_size);
}

namespace {

// Four floats, one pixel's R, G, B and a pad lane: one horizontal tap is one vector multiply-add.
typedef float v4f __attribute__((vector_size(16)));

inline v4f load4(const float* p) {
  v4f v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// out[i] = sum_k w[i][k] * line[first[i] + k] for the three channels, written to three planes;
// `Taps` fixed at compile time unrolls the tap loop (0: the run-time count).
template <int Taps>
void filter_row(const float* line, const FilterTaps& t, int x_lo, int out_width, float* d0,
                float* d1, float* d2) {
  const int taps = Taps > 0 ? Taps : t.taps;
  for (int i = 0; i < out_width; ++i) {
    const float* p = line + static_cast<size_t>(t.first[static_cast<size_t>(i)] - x_lo) * 4;
    const float* w = t.weights.data() + static_cast<size_t>(i) * taps;
    v4f acc = {0, 0, 0, 0};
    for (int k = 0; k < taps; ++k) acc += w[k] * load4(p + 4 * k);
    d0[i] = acc[0], d1[i] = acc[1], d2[i] = acc[2];
  }
}

using FilterRow = void (*)(const float*, const FilterTaps&, int, int, float*, float*, float*);

FilterRow filter_for(int taps) {
  switch (taps) {
    case 1:
      return filter_row<1>;
    case 2:
      return filter_row<2>;
    case 3:
      return filter_row<3>;
    case 4:
      return filter_row<4>;
    case 5:
      return filter_row<5>;
    case 6:
      return filter_row<6>;
    default:
      return filter_row<0>;
  }
}

}  // namespace

void resample_box(const uint8_t* image, int width, int height, int channels, size_t stride,
                  double bx, double by, double bw, double bh, const ResampleOut& out,
                  ResampleScratch& s) {
  RN_CHECK(channels == 1 || channels == 3, "[resample] " << channels << " channels");
  const int ow = out.width, oh = out.height;
  make_filter_taps(bx, bw, width, ow, out.flip, s.x);
  make_filter_taps(by, bh, height, oh, /*mirror=*/false, s.y);
  // Only the rows the vertical filter reads are resampled horizontally, and of each row only
  // the columns the horizontal filter reads are widened to float.
  const int y_lo = s.y.first.front();
  const int y_hi = s.y.first.back() + s.y.taps;
  const int rows = y_hi - y_lo;
  const auto [x_min, x_max] = std::minmax_element(s.x.first.begin(), s.x.first.end());
  const int x_lo = *x_min, x_hi = *x_max + s.x.taps;
  const size_t plane = static_cast<size_t>(rows) * ow;
  s.rows.resize(plane * 3);
  s.line.resize(static_cast<size_t>(x_hi - x_lo) * 4);
  const FilterRow filter = filter_for(s.x.taps);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = image + static_cast<size_t>(y_lo + r) * stride;
    float* line = s.line.data();
    if (channels == 1) {
      for (int j = x_lo; j < x_hi; ++j, line += 4)
        line[0] = line[1] = line[2] = src[j], line[3] = 0;
    } else {
      for (int j = x_lo; j < x_hi; ++j, line += 4) {
        const uint8_t* p = src + static_cast<size_t>(j) * 3;
        line[0] = p[0], line[1] = p[1], line[2] = p[2], line[3] = 0;
      }
    }
    float* d0 = s.rows.data() + static_cast<size_t>(r) * ow;
    filter(s.line.data(), s.x, x_lo, ow, d0, d0 + plane, d0 + 2 * plane);
  }
  const int ty = s.y.taps;
  const size_t out_plane = static_cast<size_t>(oh) * ow;
  for (int c = 0; c < 3; ++c) {
    const float* src_plane = s.rows.data() + c * plane;
    const float mul = out.mul[c], add = out.add[c];
    for (int y = 0; y < oh; ++y) {
      float* dst = out.planes + c * out_plane + static_cast<size_t>(y) * ow;
      const float* w = s.y.weights.data() + static_cast<size_t>(y) * ty;
      const float* base =
          src_plane + static_cast<size_t>(s.y.first[static_cast<size_t>(y)] - y_lo) * ow;
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

// Resampling a box of an 8-bit image straight into a network's input: antialiased bilinear
// (a triangle filter widened by the downscaling factor, as PIL's BILINEAR), horizontal flip and
// per-channel normalisation in the same two passes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rn::io {

// One axis's filter: output i reads `taps` inputs from first[i], weighted weights[i * taps + k].
struct FilterTaps {
  int taps = 0;
  std::vector<int> first;
  std::vector<float> weights;
};

// Taps for resampling [start, start + size) of an axis of `in_size` pixels to `out_size`;
// pixel j covers [j, j + 1). `mirror`: output i takes what output out_size - 1 - i would.
void make_filter_taps(double start, double size, int in_size, int out_size, bool mirror,
                      FilterTaps& taps);

// Buffers reused across calls, so that steady-state resampling does not allocate.
struct ResampleScratch {
  FilterTaps x, y;
  std::vector<float> rows;  // the horizontally resampled rows, one plane per channel
  std::vector<float> line;  // one source row's columns as float R, G, B, pad
};

struct ResampleOut {
  int width = 0, height = 0;
  bool flip = false;
  // out = pixel * mul[c] + add[c], channel c of 3. A one-channel source fills all three.
  const float* mul = nullptr;
  const float* add = nullptr;
  float* planes = nullptr;  // 3 x height x width
};

// Resamples the box (bx, by, bw, bh), in the pixel coordinates of `image` (width x height,
// `channels` 1 or 3 interleaved, rows `stride` bytes apart), into `out`.
void resample_box(const uint8_t* image, int width, int height, int channels, size_t stride,
                  double bx, double by, double bw, double bh, const ResampleOut& out,
                  ResampleScratch& scratch);

}  // namespace rn::io

// Per-sample preprocessing shared by every data set: normalisation statistics, random crop
// and flip, and the conversion of one uint8 sample into normalised floats.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "io/image_set.h"

namespace rn::io {

// Per-channel statistics of pixels/255; the loader computes (pixel/255 - mean) / std.
struct Normalization {
  std::vector<float> mean, std;
};

// Mean and population standard deviation of each channel of pixels/255 over the whole set.
Normalization compute_normalization(const ImageSet& data);

// `crop_pad` > 0: pad by that many zero pixels on each side (zero before normalisation, as in
// the ResNet paper's CIFAR recipe) and cut a random window of the original size;
// `hflip`: mirror left-right with probability 1/2.
struct AugmentOptions {
  int crop_pad = 0;
  bool hflip = false;
};

// One sample's random choices, a pure function of (seed, epoch, sample index).
struct AugmentDraw {
  int dy = 0, dx = 0;  // window origin in the padded image, each in [0, 2 * crop_pad]
  bool flip = false;
};

// Random pixels and labels from `seed`: a stand-in data set of `count` samples for smoke tests
// and benchmarks (the same on every machine).
ImageSet synthetic_set(int channels, int height, int width, int classes, int64_t count,
                       uint64_t seed);

// Keeps only the first `limit` samples (0 or more than the set keeps all). `num_classes` stays
// the full set's, so that a quick run on a few samples still sizes its classifier for every class.
void keep_first(ImageSet& data, int64_t limit);

// Turns uint8 samples into augmented, normalised floats. Holds a 256-entry lookup table per
// channel, so each output pixel costs one load; thread-safe once built.
class SampleTransform {
 public:
  // An empty `norm` means pixels/255 with no further shift or scale.
  SampleTransform(const ImageSet& data, AugmentOptions augment, const Normalization& norm,
                  uint64_t seed);

  AugmentDraw draw(int64_t epoch, int64_t index) const;

  // Writes channels * height * width floats for sample `index` as seen in `epoch`.
  void apply(int64_t epoch, int64_t index, float* out) const;

  // Writes sample `index` at full size, shifted so that output pixel (y, x) reads source pixel
  // (y + oy, x + ox), zero padding outside, mirrored after the shift when `flip`: one view of
  // pad + crop + flip (what apply() draws at random).
  void apply_shifted(int64_t index, int oy, int ox, bool flip, float* out) const;

  // Writes the window (y, x, height, width) of sample `index`, normalised and optionally
  // mirrored, without augmentation: the views of 10-crop evaluation without padding.
  void apply_window(int64_t index, int y, int x, int height, int width, bool flip,
                    float* out) const;

 private:
  const ImageSet& data_;
  AugmentOptions augment_;
  uint64_t seed_;
  std::vector<std::array<float, 256>> lut_;  // per channel: byte -> normalised value
};

}  // namespace rn::io

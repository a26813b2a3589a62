// Normalisation statistics, the synthetic set, truncation, and the per-sample crop / flip /
// normalise transform.
#include "io/dataset.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/nn/init.h"
#include "io/counter_rng.h"

namespace rn::io {

ImageSet synthetic_set(int channels, int height, int width, int classes, int64_t count,
                       uint64_t seed) {
  ImageSet s;
  s.count = count;
  s.channels = channels, s.height = height, s.width = width;
  s.num_classes = classes;
  nn::InitRng rng(seed);
  s.pixels.resize(static_cast<size_t>(count) * s.sample_size());
  for (auto& p : s.pixels) p = static_cast<uint8_t>(rng.next_u64() & 0xFF);
  s.labels.resize(count);
  for (auto& l : s.labels) l = static_cast<int32_t>(rng.next_u64() % classes);
  return s;
}

Normalization compute_normalization(const ImageSet& data) {
  RN_CHECK(data.count > 0 && data.channels > 0, "[normalization] empty data set");
  RN_CHECK(data.pixels.size() == static_cast<size_t>(data.count) * data.sample_size(),
           "[normalization] " << data.pixels.size() << " pixels for " << data.count
                              << " samples of " << data.sample_size());
  // A histogram per channel makes the sums exact integers, whatever the set's size.
  std::vector<std::array<uint64_t, 256>> hist(static_cast<size_t>(data.channels));
  for (auto& h : hist) h.fill(0);
  const size_t plane = static_cast<size_t>(data.height) * static_cast<size_t>(data.width);
  for (int64_t i = 0; i < data.count; ++i) {
    const uint8_t* s = data.sample(i);
    for (int c = 0; c < data.channels; ++c) {
      auto& h = hist[static_cast<size_t>(c)];
      const uint8_t* p = s + static_cast<size_t>(c) * plane;
      for (size_t k = 0; k < plane; ++k) ++h[p[k]];
    }
  }
  Normalization norm;
  for (const auto& h : hist) {
    double n = 0, sum = 0, sum_sq = 0;
    for (int v = 0; v < 256; ++v) {
      const double count = static_cast<double>(h[static_cast<size_t>(v)]);
      const double x = v / 255.0;
      n += count;
      sum += count * x;
      sum_sq += count * x * x;
    }
    const double mean = sum / n;
    const double var = std::max(0.0, sum_sq / n - mean * mean);
    norm.mean.push_back(static_cast<float>(mean));
    norm.std.push_back(static_cast<float>(std::sqrt(var)));
  }
  return norm;
}

void keep_first(ImageSet& data, int64_t limit) {
  RN_CHECK(limit >= 0, "[keep_first] negative limit " << limit);
  if (limit == 0 || limit >= data.count) return;
  data.count = limit;
  data.pixels.resize(static_cast<size_t>(limit) * data.sample_size());
  data.pixels.shrink_to_fit();
  data.labels.resize(static_cast<size_t>(limit));
  data.labels.shrink_to_fit();
}

SampleTransform::SampleTransform(const ImageSet& data, AugmentOptions augment,
                                 const Normalization& norm, uint64_t seed)
    : data_(data), augment_(augment), seed_(seed) {
  RN_CHECK(augment.crop_pad >= 0, "[augment] negative crop_pad " << augment.crop_pad);
  RN_CHECK(norm.mean.size() == norm.std.size(), "[augment] normalization has "
                                                    << norm.mean.size() << " means and "
                                                    << norm.std.size() << " standard deviations");
  RN_CHECK(norm.mean.empty() || norm.mean.size() == static_cast<size_t>(data.channels),
           "[augment] normalization has " << norm.mean.size() << " channels, the data "
                                          << data.channels);
  lut_.resize(static_cast<size_t>(data.channels));
  for (size_t c = 0; c < lut_.size(); ++c) {
    const float mean = norm.mean.empty() ? 0.0f : norm.mean[c];
    const float sd = norm.std.empty() ? 1.0f : norm.std[c];
    RN_CHECK(sd > 0.0f, "[augment] standard deviation of channel " << c << " is " << sd);
    for (int v = 0; v < 256; ++v) lut_[c][static_cast<size_t>(v)] = (v / 255.0f - mean) / sd;
  }
}

AugmentDraw SampleTransform::draw(int64_t epoch, int64_t index) const {
  AugmentDraw d;
  if (augment_.crop_pad == 0 && !augment_.hflip) return d;
  CounterRng rng(counter_hash(seed_, RngStream::augment, static_cast<uint64_t>(epoch),
                              static_cast<uint64_t>(index)));
  if (augment_.crop_pad > 0) {
    const uint64_t span = 2 * static_cast<uint64_t>(augment_.crop_pad) + 1;
    d.dy = static_cast<int>(rng.below(span));
    d.dx = static_cast<int>(rng.below(span));
  }
  if (augment_.hflip) d.flip = (rng.next() >> 63) != 0;
  return d;
}

void SampleTransform::apply(int64_t epoch, int64_t index, float* out) const {
  const AugmentDraw d = draw(epoch, index);
  apply_shifted(index, d.dy - augment_.crop_pad, d.dx - augment_.crop_pad, d.flip, out);
}

void SampleTransform::apply_shifted(int64_t index, int oy, int ox, bool flip, float* out) const {
  const int H = data_.height, W = data_.width;
  const uint8_t* src = data_.sample(index);
  for (int c = 0; c < data_.channels; ++c) {
    const float* lut = lut_[static_cast<size_t>(c)].data();
    const float zero = lut[0];
    const uint8_t* plane = src + static_cast<size_t>(c) * H * W;
    float* dst = out + static_cast<size_t>(c) * H * W;
    // Columns of the output that read inside the source: [x_lo, x_hi).
    const int x_lo = std::clamp(-ox, 0, W), x_hi = std::clamp(W - ox, 0, W);
    for (int y = 0; y < H; ++y, dst += W) {
      const int sy = y + oy;
      if (sy < 0 || sy >= H) {
        std::fill(dst, dst + W, zero);
        continue;
      }
      const uint8_t* row = plane + static_cast<size_t>(sy) * W;
      if (!flip) {
        std::fill(dst, dst + x_lo, zero);
        std::fill(dst + x_hi, dst + W, zero);
        for (int x = x_lo; x < x_hi; ++x) dst[x] = lut[row[x + ox]];
      } else {
        // Flipping after cropping: cropped column x lands in output column W-1-x.
        std::fill(dst, dst + (W - x_hi), zero);
        std::fill(dst + (W - x_lo), dst + W, zero);
        for (int x = x_lo; x < x_hi; ++x) dst[W - 1 - x] = lut[row[x + ox]];
      }
    }
  }
}

void SampleTransform::apply_window(int64_t index, int y0, int x0, int height, int width, bool flip,
                                   float* out) const {
  const int H = data_.height, W = data_.width;
  RN_CHECK(y0 >= 0 && x0 >= 0 && y0 + height <= H && x0 + width <= W,
           "[augment] window " << height << "x" << width << " at (" << y0 << ", " << x0 << ") of a "
                               << H << "x" << W << " image");
  const uint8_t* src = data_.sample(index);
  for (int c = 0; c < data_.channels; ++c) {
    const float* lut = lut_[static_cast<size_t>(c)].data();
    const uint8_t* plane = src + static_cast<size_t>(c) * H * W;
    for (int y = 0; y < height; ++y, out += width) {
      const uint8_t* row = plane + static_cast<size_t>(y0 + y) * W + x0;
      for (int x = 0; x < width; ++x) out[x] = lut[row[flip ? width - 1 - x : x]];
    }
  }
}

}  // namespace rn::io

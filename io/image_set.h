// ImageSet: a whole decoded data set held in memory as uint8 NCHW pixels plus labels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rn::io {

// Kept as bytes rather than floats: Fashion-MNIST is 47 MB as uint8 and four times that as
// float, and the loader converts each sample once anyway while it augments and normalises.
struct ImageSet {
  int64_t count = 0;
  int channels = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // count * channels * height * width, NCHW
  std::vector<int32_t> labels;  // count
  int num_classes = 0;          // max label + 1

  size_t sample_size() const {
    return static_cast<size_t>(channels) * static_cast<size_t>(height) * static_cast<size_t>(width);
  }
  const uint8_t* sample(int64_t i) const {
    return pixels.data() + static_cast<size_t>(i) * sample_size();
  }
};

}  // namespace rn::io

// The array files of `resnet infer` and `resnet step`: /images checked as the network's input
// (1 or 3 channels, by the input's last byte) and /labels as its targets.
#include <string>

#include "launch/train/checkpoint_network.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = rn::fuzz::scratch_path("array.h5");
  rn::fuzz::write_file(path, data, size);
  const int channels = size > 0 && (data[size - 1] & 1) ? 3 : 1;
  rn::fuzz::expect_errors_only([&] {
    const rn::io::ArrayReader in(path);
    const rn::Tensor images = rn::launch::read_images(in, path, channels);
    (void)rn::launch::read_labels(in, path, images.shape()[0], 10);
  });
  return 0;
}

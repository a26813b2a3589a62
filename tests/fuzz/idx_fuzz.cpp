// The idx reader (MNIST / Fashion-MNIST), gzipped or plain: the input is the file; it is read as
// an image file and as a label file.
#include <string>

#include "io/idx_reader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = rn::fuzz::scratch_path("idx");
  rn::fuzz::write_file(path, data, size);
  rn::fuzz::expect_errors_only([&] {
    const std::vector<uint8_t> bytes = rn::io::read_file_maybe_gz(path);
    rn::fuzz::expect_errors_only([&] { rn::io::parse_idx_header(bytes, 1, path, "labels"); });
    rn::io::parse_idx_header(bytes, 3, path, "pixels");
  });
  return 0;
}

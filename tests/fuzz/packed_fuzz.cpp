// The packed data file (`resnet data pack`): opened, summarised, and every sample read (one by
// one and in one batch).
#include <numeric>
#include <string>
#include <vector>

#include "io/packed.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = rn::fuzz::scratch_path("packed.h5");
  rn::fuzz::write_file(path, data, size);
  rn::fuzz::expect_errors_only([&] {
    rn::io::PackedSource src(path);
    std::vector<uint8_t> bytes;
    const int64_t n = std::min<int64_t>(src.size(), 64);
    for (int64_t i = 0; i < n; ++i) {
      (void)src.label(i), (void)src.path(i);
      src.read(i, bytes);
    }
    std::vector<int64_t> indices(static_cast<size_t>(n));
    std::iota(indices.begin(), indices.end(), 0);
    std::vector<std::vector<uint8_t>> out;
    std::vector<std::string> errors;
    src.read_many(indices.data(), indices.size(), out, errors);
  });
  rn::fuzz::expect_errors_only([&] { (void)rn::io::describe_packed(path); });
  return 0;
}

// The CIFAR readers: the input's first byte picks CIFAR-10, CIFAR-100 fine or coarse, the rest is
// the test split's file.
#include <filesystem>
#include <string>

#include "io/cifar.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const std::string root = [] {
    const std::string r = rn::fuzz::scratch_path("cifar");
    std::filesystem::create_directories(r);
    return r;
  }();
  const auto kind = static_cast<rn::io::CifarKind>(data[0] % 3);
  const std::string file =
      root + (kind == rn::io::CifarKind::cifar10 ? "/test_batch.bin" : "/test.bin");
  std::filesystem::remove(root + "/test_batch.bin");
  std::filesystem::remove(root + "/test.bin");
  rn::fuzz::write_file(file, data + 1, size - 1);
  rn::fuzz::expect_errors_only([&] {
    const rn::io::ImageSet set = rn::io::load_cifar(root, kind, rn::io::Split::test, 0);
    (void)set;
  });
  return 0;
}

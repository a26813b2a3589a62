// The checkpoint reader's validation: the summary (attributes, dataset list), the checksum
// verdict of `ckpt inspect`, and the verified full read that `train --resume` does.
#include <string>

#include "io/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = rn::fuzz::scratch_path("ckpt.h5");
  rn::fuzz::write_file(path, data, size);
  rn::fuzz::expect_errors_only([&] { (void)rn::io::read_checkpoint_summary(path); });
  rn::fuzz::expect_errors_only([&] { (void)rn::io::verify_checkpoint(path); });
  rn::OneProcess one;
  rn::fuzz::expect_errors_only([&] { (void)rn::io::read_checkpoint(path, one); });
  return 0;
}

// What the fuzz targets share: the input written to a file of this process (for the readers that
// take a path), and the rule that a reader answers bad input with rn::Error and nothing else.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/check.h"

namespace rn::fuzz {

// A path of this process under /dev/shm (or TMPDIR), the same on every call.
inline std::string scratch_path(const char* name) {
  const char* dir = std::getenv("RN_FUZZ_DIR");
  if (!dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/rn-fuzz-" + std::to_string(getpid()) + "-" + name;
}

// Writes `size` bytes to `path` (replacing it); aborts if it cannot, which is no finding.
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

// Runs `body`; rn::Error is the expected answer to a bad input, and must carry a message. Any
// other exception escapes to libFuzzer, which reports it as a crash with the input.
template <typename F>
void expect_errors_only(F&& body) {
  try {
    body();
  } catch (const rn::Error& e) {
    if (e.what()[0] == '\0') std::abort();  // an error line must say something
  }
}

}  // namespace rn::fuzz

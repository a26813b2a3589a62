// The YAML config with --set overrides: the input is the YAML text, then optionally a NUL byte
// and overrides, one per line ("key=value").
#include <cstring>
#include <string>
#include <vector>

#include "launch/train/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  const char* nul = static_cast<const char*>(std::memchr(text, '\0', size));
  const std::string yaml(text, nul ? nul : text + size);
  std::vector<std::string> overrides;
  if (nul) {
    std::string rest(nul + 1, text + size);
    size_t start = 0;
    while (start <= rest.size()) {
      const size_t end = std::min(rest.find('\n', start), rest.size());
      overrides.push_back(rest.substr(start, end - start));
      start = end + 1;
    }
  }
  rn::fuzz::expect_errors_only([&] {
    const rn::launch::Config c = rn::launch::parse_config(yaml, "fuzz.yaml", overrides);
    (void)rn::launch::member_configs(c);
  });
  return 0;
}

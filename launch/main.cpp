// The `resnet` executable: dispatches to a subcommand; every error is caught here and printed once.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "core/check.h"
#include "launch/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: resnet <command> [flags]\n"
    "  train  --config FILE [--set key=value ...]   train a network\n"
    "  info   --model NAME [--input CxHxW] [--classes N] [--json]\n"
    "  bench  --model NAME [--input CxHxW] [--batch B] [--threads T] [--device cpu|cuda] [--json]\n"
    "  --version\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version") {
    std::cout << "resnet " << RESNET_VERSION << "\n";
    return 0;
  }
  std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    if (cmd == "info") return rn::launch::run_info(rest);
    if (cmd == "bench") return rn::launch::run_bench(rest);
    if (cmd == "train") return rn::launch::run_train(rest);
    std::cerr << "resnet: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "resnet " << cmd << ": error: " << e.what() << "\n";
    return 1;
  }
}

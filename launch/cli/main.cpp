// The `resnet` executable: dispatches to a subcommand; every error is caught here and printed once.
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "launch/cli/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: resnet <command> [flags]\n"
    "  train  --config FILE [--set key=value ...] [--resume auto|FILE]   train a network or\n"
    "         an ensemble (the config's ensemble: section)\n"
    "  eval   --config FILE [--checkpoint FILE ...] [--crops 1|10|1,10] [--weights W1,W2,...]\n"
    "         [--precision fp32|bf16] [--json]   (no --checkpoint: the config's ensemble)\n"
    "  ckpt   inspect FILE [--json] | init --model NAME [--classes N] [--in-channels C] --seed S\n"
    "         --output FILE | bench [--model NAME] [--dir DIR] [--repeat N] [--drop-caches]\n"
    "  infer  --checkpoint FILE --input X.h5 --output Y.h5 [--batch B] [--threads T]\n"
    "         [--precision fp32|bf16]\n"
    "  step   --checkpoint FILE --input X.h5 --output Y.h5 [--lr LR] [--momentum M]\n"
    "         [--weight-decay WD] [--nesterov] [--label-smoothing S] [--threads T]\n"
    "         [--precision fp32|bf16] [--relu-outputs]\n"
    "  info   --model NAME [--input CxHxW] [--classes N] [--json] | --devices [--json]\n"
    "  bench  --model NAME [--input CxHxW] [--batch B] [--threads T] [--device cpu|cuda]\n"
    "         [--precision fp32|bf16|fp16] [--data-parallel] [--json]\n"
    "  bench  --allreduce [--model NAME]   (under mpirun) gradient all-reduce bandwidth\n"
    "  bench  --peak [--threads T] [--json]   convolution GFLOP/s in fp32 and bf16\n"
    "  data   pack --from DIR --to FILE.h5 [--resize-shorter N] [--quality Q] [--threads T]\n"
    "         [--stop-on-bad] | inspect FILE.h5 | bench --from DIR|FILE.h5 [--transform\n"
    "         torchvision|resnet|eval|eval10|read] [--threads T] [--seconds S] [--drop-caches]\n"
    "         | list --from DIR|FILE.h5 | dump --from DIR|FILE.h5 --to OUT.h5 [--transform T]\n"
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
  rn::distributed::set_error_prefix("resnet " + cmd + ": error: ");
  std::vector<std::string> rest(argv + 2, argv + argc);
  // Declared outside the try: MPI must still be running when the error is handled.
  std::unique_ptr<rn::distributed::Communicator> comm;
  try {
    using Command = int (*)(const std::vector<std::string>&, const rn::launch::Job&);
    const std::vector<std::pair<std::string, Command>> commands{
        {"train", rn::launch::run_train}, {"eval", rn::launch::run_eval},
        {"info", rn::launch::run_info},   {"bench", rn::launch::run_bench},
        {"ckpt", rn::launch::run_ckpt},   {"infer", rn::launch::run_infer},
        {"step", rn::launch::run_step},   {"data", rn::launch::run_data}};
    for (const auto& [name, run] : commands) {
      if (name != cmd) continue;
      // MPI when a launcher started this process; then the facts about this rank, once.
      comm = rn::distributed::make_communicator();
      const rn::distributed::RankEnvironment env = rn::distributed::make_rank_environment(*comm);
      const rn::launch::TestHooks hooks = rn::launch::test_hooks_from_environment();
      return run(rest, rn::launch::Job{*comm, env, hooks});
    }
    std::cerr << "resnet: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    // An error every rank meets (a bad config) is printed once: rank 0 prints and ends the job
    // while the others wait a moment. An error of one rank alone is printed by that rank.
    rn::distributed::report_error(e.what());
    return 1;
  }
}

// The `resnet` executable: dispatches to a subcommand; every error is caught here and printed once.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "launch/cli/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "help" && args[1] == "--markdown") {
    std::cout << rn::launch::command_reference_markdown();
    return 0;
  }
  // `resnet help CMD [SUB]` is `resnet CMD [SUB] --help`.
  if (!args.empty() && args[0] == "help") {
    args.erase(args.begin());
    if (!args.empty()) args.push_back("--help");
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << rn::launch::usage_text();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = args[0];
  if (cmd == "--version") {
    std::cout << "resnet " << RESNET_VERSION << "\n";
    return 0;
  }
  rn::distributed::set_error_prefix("resnet " + cmd + ": error: ");
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  // Declared outside the try: MPI must still be running when the error is handled.
  std::unique_ptr<rn::distributed::Communicator> comm;
  try {
    for (const auto& c : rn::launch::commands()) {
      if (c.name != cmd) continue;
      // MPI when a launcher started this process; then the facts about this rank, once.
      comm = rn::distributed::make_communicator();
      const rn::distributed::RankEnvironment env = rn::distributed::make_rank_environment(*comm);
      const rn::launch::TestHooks hooks = rn::launch::test_hooks_from_environment();
      return c.run(rest, rn::launch::Job{*comm, env, hooks});
    }
    std::cerr << "resnet: unknown command '" << cmd << "'\n" << rn::launch::usage_text();
    return 2;
  } catch (const rn::launch::HelpRequested& help) {
    if (!comm || comm->rank() == 0) std::cout << help.text;
    return 0;
  } catch (const std::exception& e) {
    // An error every rank meets (a bad config) is printed once: rank 0 prints and ends the job
    // while the others wait a moment. An error of one rank alone is printed by that rank.
    rn::distributed::report_error(e.what());
    return 1;
  }
}

// The table of commands behind main's dispatch, its usage text, and `--help`.
#include "launch/cli/commands.h"

namespace rn::launch {

const std::vector<Command>& commands() {
  static const std::vector<Command> c{
      {"train", run_train, &train_command(), nullptr},
      {"eval", run_eval, &eval_command(), nullptr},
      {"infer", run_infer, &infer_command(), nullptr},
      {"step", run_step, &step_command(), nullptr},
      {"ckpt", run_ckpt, nullptr, &ckpt_commands()},
      {"data", run_data, nullptr, &data_commands()},
      {"info", run_info, &info_command(), nullptr},
      {"bench", run_bench, &bench_command(), nullptr},
  };
  return c;
}

std::vector<const CommandSpec*> all_command_specs() {
  std::vector<const CommandSpec*> out;
  for (const auto& c : commands()) {
    if (c.spec) out.push_back(c.spec);
    if (c.group) out.insert(out.end(), c.group->commands.begin(), c.group->commands.end());
  }
  return out;
}

std::string usage_text() {
  std::string out = "usage: resnet <command> [flags]\n\n";
  for (const auto& c : commands()) {
    const std::string name = c.group ? c.name + " " + subcommand_names(*c.group) : c.name;
    out += "  " + name + "\n      " + wrap_text(c.summary(), 100, 6, 6) + "\n";
  }
  return out +
         "  --version\n\n"
         "resnet <command> --help (or resnet help <command>) gives a command's flags.\n";
}

}  // namespace rn::launch

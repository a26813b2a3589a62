// The table of commands behind main's dispatch, its usage text, and `--help`.
#include "launch/cli/commands.h"

#include "core/check.h"

namespace rn::launch {

const std::vector<Command>& commands() {
  static const std::vector<Command> c{
      {"train", run_train, &train_command(), nullptr},
      {"eval", run_eval, &eval_command(), nullptr},
      {"infer", run_infer, &infer_command(), nullptr},
      {"predict", run_predict, &predict_command(), nullptr},
      {"export", run_export, &export_command(), nullptr},
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
         "resnet <command> --help (or resnet help <command>) gives a command's flags;\n"
         "resnet help --markdown prints them all as one page (launch/commands.md).\n";
}

std::string command_reference_markdown() {
  const auto block = [](const std::string& title, const std::string& text) {
    return "## " + title + "\n\n```\n" + text + "```\n\n";
  };
  std::string out =
      "# resnet commands\n\n"
      "Every command's `--help`, generated from the tables its parser reads by `build/resnet "
      "help --markdown > launch/commands.md`; the test `CommandReference.IsCurrent` fails when "
      "this file and the executable disagree. How the commands fit together: "
      "[README.md](README.md).\n\n";
  out += block("resnet", usage_text());
  for (const auto& c : commands()) {
    if (c.spec) out += block("resnet " + c.name, help_text(*c.spec));
    if (!c.group) continue;
    out += block("resnet " + c.name, help_text(*c.group));
    for (const CommandSpec* sub : c.group->commands)
      out += block("resnet " + sub->name, help_text(*sub));
  }
  out.pop_back();  // one newline at the end
  return out;
}

Device device_flag(const Args& args, const distributed::RankEnvironment& env) {
  const std::string dev = args.get("device", "cpu");
  if (dev != "cpu" && dev != "cuda") RN_FAIL("--device must be cpu or cuda, got '" << dev << "'");
  return env.device(dev == "cuda" ? DeviceKind::cuda : DeviceKind::cpu);
}

}  // namespace rn::launch

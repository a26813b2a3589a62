// `--help` on every command and subcommand, and `resnet help CMD`: exit 0, the usage, every flag
// the command's parser accepts (both come from one CommandSpec, and the test holds them to it).
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "launch/cli/commands.h"
#include "tests/error_of.h"
#include "tests/launch/cli/run_command.h"

namespace rn::launch {
namespace {

using test::CommandResult;

// `resnet WORDS...` (words without quotes or spaces).
CommandResult run(const std::string& words) {
  return test::run_resnet(words);
}

std::vector<std::string> words_of(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The flags an unknown-flag error of the parser lists ("...; flags: --a, --b").
std::set<std::string> flags_in_error(const std::string& err) {
  std::set<std::string> out;
  const size_t at = err.find("flags: ");
  if (at == std::string::npos) return out;
  std::istringstream in(err.substr(at + 7, err.find('\n', at) - at - 7));
  for (std::string f; std::getline(in, f, ',');) out.insert(f.substr(f.find("--")));
  return out;
}

class HelpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(test::resnet_binary()))
      GTEST_SKIP() << test::resnet_binary() << " is not built";
  }
};

TEST_F(HelpTest, EveryCommandsHelpNamesEachFlagItsParserAccepts) {
  for (const CommandSpec* c : all_command_specs()) {
    SCOPED_TRACE(c->name);
    const CommandResult help = run(c->name + " --help");
    ASSERT_EQ(help.exit_code, 0) << help.err;
    EXPECT_EQ(help.out.rfind("usage: resnet " + c->name, 0), 0u) << help.out;
    EXPECT_NE(help.out.find(c->summary.substr(0, 30)), std::string::npos) << help.out;
    std::set<std::string> documented;
    for (const auto& f : c->flags) {
      EXPECT_NE(help.out.find("\n  --" + f.name + " "), std::string::npos)
          << "--" << f.name << " has no line in:\n"
          << help.out;
      documented.insert("--" + f.name);
    }
    EXPECT_EQ(run("help " + c->name).out, help.out) << "resnet help " << c->name;
    EXPECT_EQ(run(c->name + " -h").out, help.out);
    // The parser refuses a flag it does not know and lists the ones it takes: the same.
    const std::string pos = c->positional.empty() ? "" : " x";
    const CommandResult bad = run(c->name + pos + " --no-such-flag 1");
    EXPECT_NE(bad.exit_code, 0);
    if (!c->flags.empty()) {
      EXPECT_EQ(flags_in_error(bad.err), documented) << bad.err;
    }
  }
}

TEST_F(HelpTest, GroupsListTheirCommandsAndTheTopLevelListsEveryCommand) {
  const CommandResult top = run("--help");
  ASSERT_EQ(top.exit_code, 0);
  EXPECT_EQ(run("help").out, top.out);
  for (const auto& c : commands()) {
    SCOPED_TRACE(c.name);
    EXPECT_NE(top.out.find("\n  " + c.name), std::string::npos) << top.out;
    if (!c.group) continue;
    const CommandResult g = run(c.name + " --help");
    ASSERT_EQ(g.exit_code, 0) << g.err;
    for (const CommandSpec* s : c.group->commands)
      EXPECT_NE(g.out.find("\n  " + words_of(s->name).back() + " "), std::string::npos) << g.out;
    const CommandResult none = run(c.name);
    EXPECT_NE(none.exit_code, 0);
    EXPECT_NE(none.err.find("usage: resnet " + c.name), std::string::npos) << none.err;
    const CommandResult unknown = run(c.name + " frobnicate");
    EXPECT_NE(unknown.err.find("unknown " + c.name + " command 'frobnicate'"), std::string::npos)
        << unknown.err;
  }
  const CommandResult nosuch = run("help frobnicate");
  EXPECT_NE(nosuch.exit_code, 0);
  EXPECT_NE(nosuch.err.find("unknown command 'frobnicate'"), std::string::npos) << nosuch.err;
}

TEST(ArgsTest, HelpIsAskedForAnywhereAndTheTextComesFromTheSpec) {
  const CommandSpec spec{"demo",
                         "",
                         "Does a demo.",
                         {{"in", Flag::Takes::value, "FILE", "the input", true},
                          {"tag", Flag::Takes::values, "T", "a tag (repeatable)"},
                          {"fast", Flag::Takes::nothing, "", "go fast"}}};
  try {
    Args({"--in", "x", "-h"}, spec);
    FAIL() << "no HelpRequested";
  } catch (const HelpRequested& h) {
    EXPECT_EQ(h.text,
              "usage: resnet demo --in FILE [--tag T]... [--fast]\n\nDoes a demo.\n\n"
              "  --in FILE   the input (required)\n"
              "  --tag T     a tag (repeatable)\n"
              "  --fast      go fast\n"
              "  -h, --help  this help\n");
  }
  const Args a({"--in", "x", "--tag", "a", "--tag=b", "--fast"}, spec);
  EXPECT_EQ(a.all("tag"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(a.flag("fast"));
  EXPECT_EQ(test::error_of([&] { Args({"--in", "x", "--in", "y"}, spec); }), "--in given twice");
  EXPECT_EQ(test::error_of([&] {
              Args({"--out", "y"}, spec);
            }),
            "unknown flag --out; flags: --in, --tag, --fast");
}

}  // namespace
}  // namespace rn::launch

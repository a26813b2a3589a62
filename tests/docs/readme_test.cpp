// The README's quick starts and the command reference stay true: every command line of a quick
// start parses with the flags its command accepts and names a config that loads (a `train` line
// is run with --dry-run, which checks the networks and the data too); the default job runs, made
// tiny by --set; launch/commands.md is what `resnet help --markdown` prints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "io/image_decode.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/config.h"
#include "tests/error_of.h"
#include "tests/launch/cli/run_command.h"
#include "tests/scratch_dir.h"

namespace fs = std::filesystem;
using rn::test::read_text;
using rn::test::run_resnet;

namespace rn::launch {
namespace {

const fs::path kSource = RN_SOURCE_DIR;

// A command line of a quick start: where it is, and its words.
struct QuickStartLine {
  std::string where;  // "README.md:41"
  std::string text;
  std::vector<std::string> words;
};

std::vector<std::string> split_words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The command lines (starting with mpirun, srun or build/resnet) of the shell blocks under the
// README's "## Quick start" headings.
std::vector<QuickStartLine> quick_start_lines(const std::string& readme_text) {
  std::vector<QuickStartLine> lines;
  std::istringstream in(readme_text);
  bool in_quick_start = false, in_shell = false;
  int number = 0;
  for (std::string l; std::getline(in, l);) {
    ++number;
    if (l.rfind("## ", 0) == 0) in_quick_start = l.rfind("## Quick start", 0) == 0;
    if (l.rfind("```", 0) == 0) {
      in_shell = !in_shell && l == "```sh";
      continue;
    }
    if (!in_quick_start || !in_shell) continue;
    const std::vector<std::string> words = split_words(l);
    if (words.empty() || (words[0] != "mpirun" && words[0] != "srun" && words[0] != "build/resnet"))
      continue;
    lines.push_back({"README.md:" + std::to_string(number), l, words});
  }
  return lines;
}

// The words after build/resnet: the command (and subcommand) and its arguments.
std::vector<std::string> resnet_words(const QuickStartLine& line) {
  const auto it = std::find(line.words.begin(), line.words.end(), "build/resnet");
  if (it == line.words.end()) return {};
  return {it + 1, line.words.end()};
}

// The spec of the command `words` start with, and the arguments after its name.
const CommandSpec* find_spec(const std::vector<std::string>& words,
                             std::vector<std::string>& rest) {
  if (words.empty()) return nullptr;
  for (const CommandSpec* spec : all_command_specs()) {
    const std::vector<std::string> name = split_words(spec->name);
    if (words.size() < name.size() || !std::equal(name.begin(), name.end(), words.begin()))
      continue;
    rest.assign(words.begin() + static_cast<long>(name.size()), words.end());
    return spec;
  }
  return nullptr;
}

// Parses the arguments the way the command does; "" when they parse, else the error.
std::string parse_error(const CommandSpec& spec, std::vector<std::string> args) {
  try {
    if (!spec.positional.empty()) {
      positional(args, spec);
      args.erase(args.begin());
    }
    Args parsed(args, spec);
    if (parsed.has("config")) load_config(kSource / parsed.get("config"), parsed.all("set"));
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string readme() {
  return read_text(kSource / "README.md");
}

TEST(ReadmeQuickStarts, HaveTheirCommands) {
  const auto lines = quick_start_lines(readme());
  // Default job 1; own images: train, srun, resume, eval; ensemble: train, eval.
  ASSERT_GE(lines.size(), 7u) << "the README's quick starts lost their command lines";
  std::string all;
  for (const auto& l : lines) all += l.text + "\n";
  for (const char* needed :
       {"--config configs/fashion_mnist_resnet20.yaml",
        "--config configs/imagenet_resnet50_torchvision.yaml --set data.root=", "srun ",
        "--resume auto", "--crops 1,10", "--config configs/fashion_mnist_ensemble.yaml"})
    EXPECT_NE(all.find(needed), std::string::npos) << "no quick start line has '" << needed << "'";
}

TEST(ReadmeQuickStarts, EveryCommandLineParsesAndItsConfigLoads) {
  for (const auto& line : quick_start_lines(readme())) {
    std::vector<std::string> args;
    const CommandSpec* spec = find_spec(resnet_words(line), args);
    ASSERT_NE(spec, nullptr) << line.where << ": no resnet command in: " << line.text;
    EXPECT_EQ(parse_error(*spec, args), "") << line.where << ": " << line.text;
  }
}

// A data.root= of the README stands for the user's folder: the test makes a small one.
void make_image_folder(const fs::path& root) {
  for (const std::string split : {"train", "val"})
    for (int c = 0; c < 2; ++c)
      for (int i = 0; i < 4; ++i) {
        std::vector<uint8_t> pixels(40 * 32 * 3, static_cast<uint8_t>(60 + 100 * c + i));
        const std::vector<uint8_t> jpeg = io::encode_jpeg(pixels.data(), 40, 32, 3, 90);
        const fs::path dir = root / split / ("class" + std::to_string(c));
        fs::create_directories(dir);
        std::ofstream(dir / (std::to_string(i) + ".jpg"), std::ios::binary)
            .write(reinterpret_cast<const char*>(jpeg.data()),
                   static_cast<std::streamsize>(jpeg.size()));
      }
}

// Each quick start's `train` line, run as written but with --dry-run (the data root replaced by
// a folder the test makes, the batch fitted to it): the config, networks, device, precision and
// data all check out.
TEST(ReadmeQuickStarts, EveryTrainLineDryRuns) {
  if (!fs::exists(test::resnet_binary())) GTEST_SKIP() << "resnet binary not built";
  test::ScratchDir scratch;
  make_image_folder(scratch.dir() / "images");
  int runs = 0;
  for (const auto& line : quick_start_lines(readme())) {
    std::vector<std::string> words = resnet_words(line);
    if (words.empty() || words[0] != "train") continue;
    const std::string images = (scratch.dir() / "images").string();
    std::string args;
    for (const std::string& w : words) {
      args.append(" ");
      if (w.rfind("data.root=", 0) == 0)
        args.append("data.root=")
            .append(images)
            .append(" --set data.batch_size=2 --set data.test_batch_size=2");
      else if (w.rfind("configs/", 0) == 0)
        args.append((kSource / w).string());
      else
        args.append(w);
    }
    args.append(" --set run_dir=").append(scratch.file("run")).append(" --dry-run");
    const auto r = run_resnet(args);
    EXPECT_EQ(r.exit_code, 0) << line.where << ": " << line.text << "\n" << r.err;
    EXPECT_NE(r.out.find("dry run: nothing trained"), std::string::npos) << line.where;
    // A folder of 2 classes under a 1000-class recipe: the dry run says how to fit the classifier.
    if (line.text.find("data.root=") != std::string::npos) {
      EXPECT_NE(r.out.find("has 2 classes: 998 outputs of the classifier no label uses "
                           "(--set model.num_classes=2"),
                std::string::npos)
          << line.where << "\n"
          << r.out;
    }
    ++runs;
  }
  EXPECT_GE(runs, 4);
}

// Quick start 1 as written, made tiny: two ranks train and print the final line.
TEST(ReadmeQuickStarts, DefaultJobRuns) {
  if (!fs::exists(test::resnet_binary())) GTEST_SKIP() << "resnet binary not built";
  if (!test::have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "no Fashion-MNIST";
  const auto lines = quick_start_lines(readme());
  ASSERT_FALSE(lines.empty());
  const std::vector<std::string>& w = lines.front().words;
  ASSERT_GE(w.size(), 4u);
  ASSERT_EQ(w[0], "mpirun") << lines.front().where << ": quick start 1 is not an mpirun line";
  std::string args;
  for (size_t i = 4; i < w.size(); ++i)  // after "mpirun -np 2 build/resnet"
    args += " " + (w[i].rfind("configs/", 0) == 0 ? (kSource / w[i]).string() : w[i]);
  test::ScratchDir scratch;
  args.append(" --set train.epochs=1 --set data.train_limit=256 --set data.test_limit=200")
      .append(" --set run_dir=")
      .append(scratch.file("run"));
  const auto r = run_resnet(args, test::mpirun_prefix(std::stoi(w[2])));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(
      r.out,
      std::regex(R"(final: resnet20 after 1 epoch\(s\), .* test top-1 0\.\d+, top-5 0\.\d+)")))
      << r.out;
}

TEST(CommandReference, IsCurrent) {
  const std::string file = read_text(kSource / "launch/commands.md");
  const std::string now = command_reference_markdown();
  if (file == now) return;
  std::istringstream a(file), b(now);
  std::string la, lb;
  int line = 0;
  while (true) {
    ++line;
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) break;
    if (la != lb || more_a != more_b) break;
  }
  FAIL() << "launch/commands.md:" << line << " differs from `resnet help --markdown` ('" << la
         << "' against '" << lb
         << "'): regenerate it with build/resnet help --markdown > launch/commands.md";
}

}  // namespace
}  // namespace rn::launch

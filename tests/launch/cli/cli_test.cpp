// Tests of the `resnet` executable as a user runs it: `info` and `bench` output, and the one-line
// message and non-zero exit for every kind of bad command line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/launch/cli/run_command.h"
#include "tests/scratch_dir.h"

namespace rn::launch {
namespace {

using test::CommandResult;
using test::json_number;

// Arguments for the shell, each single-quoted.
std::string shell_args(const std::vector<std::string>& args) {
  std::string text;
  for (const auto& a : args) {
    text.append(text.empty() ? "'" : " '");
    for (char c : a) text.append(c == '\'' ? "'\\''" : std::string(1, c));
    text.append("'");
  }
  return text;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(test::resnet_binary()))
      GTEST_SKIP() << test::resnet_binary() << " is not built";
  }
  static CommandResult run(const std::vector<std::string>& args) {
    return test::run_resnet(shell_args(args));
  }
};

std::string json_string(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\": \"";
  const size_t at = json.find(k);
  if (at == std::string::npos) return "";
  const size_t end = json.find('"', at + k.size());
  return json.substr(at + k.size(), end - at - k.size());
}

// A failure: a non-zero exit, nothing on stdout, exactly one line on stderr containing every one
// of `needles`.
void expect_one_line_error(const CommandResult& r, const std::vector<std::string>& needles) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n') << r.err;
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  for (const auto& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << n << " not in: " << r.err;
}

TEST_F(CliTest, InfoJsonGivesTorchvisionCounts) {
  const CommandResult r = run({"info", "--model", "resnet50", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(json_string(r.out, "model"), "resnet50");
  EXPECT_EQ(json_number(r.out, "params"), 25557032);
  EXPECT_NEAR(json_number(r.out, "macs"), 4.089e9, 0.005 * 4.089e9);
  EXPECT_EQ(json_number(r.out, "depth"), 50);
  EXPECT_EQ(r.out.front(), '{');
  EXPECT_EQ(r.out.substr(r.out.size() - 2), "}\n");
}

TEST_F(CliTest, InfoTakesInputAndClasses) {
  // Fashion-MNIST's shape.
  const CommandResult r =
      run({"info", "--model", "resnet20", "--input", "1x28x28", "--classes", "10", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_number(r.out, "params"), 269434);
  EXPECT_NEAR(json_number(r.out, "macs"), 30.82e6, 0.005 * 30.82e6);
  // The CIFAR default is 3 x 32 x 32 with 10 classes; the text form names the count too.
  const CommandResult text = run({"info", "--model", "resnet20"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("269722"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("3x32x32"), std::string::npos) << text.out;
}

TEST_F(CliTest, InfoReadsTheNetworkFromAConfig) {
  test::ScratchDir dir;
  const std::string config = dir.file("gated.yaml");
  std::ofstream(config) << "model: {name: resnet20, in_channels: 1, num_classes: 10,\n"
                           "        shortcut: shortcut_gate, gate_bias: -6}\n";
  const CommandResult r = run({"info", "--config", config, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_string(r.out, "model"), "resnet20{shortcut=shortcut_gate gate_bias=-6}");
  // resnet20 on 1x28x28 (269434, above) plus nine gates of in*out + out parameters.
  EXPECT_EQ(json_number(r.out, "params"), 269434 + 3 * (16 * 16 + 16) + (16 * 32 + 32) +
                                              2 * (32 * 32 + 32) + (32 * 64 + 64) +
                                              2 * (64 * 64 + 64));
  EXPECT_EQ(json_number(r.out, "depth"), 20);
  EXPECT_NE(r.out.find("\"unit\": \"original\""), std::string::npos) << r.out;
  const CommandResult text = run({"info", "--config", config, "--set", "model.unit=full_preact"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("unit=full_preact"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("1x28x28"), std::string::npos) << text.out;
  expect_one_line_error(run({"info", "--config", config, "--set", "model.blocks=[3,x]"}),
                        {"--set model.blocks=[3,x]", "'model.blocks[1]'"});
  expect_one_line_error(run({"info", "--config", config, "--set", "model.shortcut=gate"}),
                        {"--set model.shortcut=gate", "'model.shortcut' must be one of"});
  expect_one_line_error(run({"info", "--config", config, "--model", "resnet20"}),
                        {"--model", "--config"});
}

// `info --devices`: the CPU's ISA and what the process loads of CUDA, cuDNN, cuBLAS and NCCL at
// run time, or why there is none; never a crash where no GPU or driver is present.
TEST_F(CliTest, InfoDevicesNamesTheRuntimeLibraries) {
  const CommandResult r = run({"info", "--devices", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(json_string(r.out, "cpu_isa").empty()) << r.out;
  // What train.device and train.precision `auto` would take here, and why.
  EXPECT_NE(json_string(r.out, "cpu_bf16").find("faster than fp32: "), std::string::npos) << r.out;
  const std::string device = json_string(r.out, "auto_device");
  EXPECT_TRUE(device == "cuda" || device == "cpu (this rank sees no GPU)" ||
              device == "cpu (this rank shares its GPU with another rank)")
      << r.out;
  if (r.out.find("\"cuda\": \"built without CUDA\"") == std::string::npos) {
    for (const char* key : {"cuda_runtime", "cudnn", "cublas", "gpus"})
      EXPECT_FALSE(json_string(r.out, key).empty()) << key << ": " << r.out;
    EXPECT_NE(json_string(r.out, "nccl").find("built with"), std::string::npos) << r.out;
  } else {
    EXPECT_EQ(json_string(r.out, "nccl"), "built without NCCL") << r.out;
  }
  const CommandResult text = run({"info", "--devices"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("cpu_isa ", 0), 0u) << text.out;
  expect_one_line_error(run({"info", "--devices", "--model", "resnet20"}),
                        {"--devices", "--model"});
}

// bench --conv-algorithm: what the CPU's convolutions ran is reported; another name is refused.
TEST_F(CliTest, BenchReportsTheConvolutionAlgorithms) {
  const CommandResult r =
      run({"bench", "--model", "resnet20", "--input", "1x12x12", "--batch", "4", "--iters", "1",
           "--warmup", "0", "--train-only", "--conv-algorithm", "direct", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_string(r.out, "conv_algorithm"), "direct") << r.out;
  EXPECT_EQ(json_string(r.out, "conv_algorithms"),
            "Winograd in forward 0 of 19, backward-data 0 of 18, backward-weights 0 of 19 "
            "convolutions")
      << r.out;
  expect_one_line_error(run({"bench", "--model", "resnet20", "--conv-algorithm", "fft"}),
                        {"--conv-algorithm must be auto, direct or winograd", "fft"});
}

// bench --profile: the timed steps again with each call timed, by kind and by layer, for
// training and inference; in the JSON form as two objects.
TEST_F(CliTest, BenchProfileSaysWhereTheStepGoes) {
  const std::vector<std::string> args = {"bench",   "--model",  "resnet20", "--input",
                                         "1x12x12", "--batch",  "4",        "--iters",
                                         "2",       "--warmup", "0",        "--profile"};
  const CommandResult r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const size_t train = r.out.find("training step profile:\n  2 steps of ");
  const size_t infer = r.out.find("inference profile:\n  2 steps of ");
  ASSERT_NE(train, std::string::npos) << r.out;
  ASSERT_NE(infer, std::string::npos) << r.out;
  const std::string train_part = r.out.substr(train, infer - train);
  for (const char* kind : {"conv forward", "conv backward-data", "conv backward-weights",
                           "batch norm", "element-wise", "loss", "optimizer"})
    EXPECT_NE(train_part.find(std::string("\n  ") + kind + " "), std::string::npos) << kind;
  EXPECT_NE(train_part.find("the 15 slowest of 40 layers"), std::string::npos) << train_part;
  EXPECT_EQ(r.out.substr(infer).find("conv backward"), std::string::npos) << r.out;
  std::vector<std::string> json_args = args;
  json_args.push_back("--json");
  const CommandResult j = run(json_args);
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(std::count(j.out.begin(), j.out.end(), '\n'), 1) << j.out;
  EXPECT_NE(j.out.find("\"profile_train\": {\"steps\": 2, "), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("\"profile_infer\": {\"steps\": 2, "), std::string::npos) << j.out;
}

TEST_F(CliTest, UnknownModelListsKnownModels) {
  const CommandResult r = run({"info", "--model", "resnet19"});
  expect_one_line_error(r, {"resnet19", "resnet18", "resnet50", "wide_resnet101_2",
                            "preact_resnet164", "resnext29_8x64d", "plain20"});
  expect_one_line_error(run({"bench", "--model", "resnet19", "--iters", "1"}),
                        {"resnet19", "resnet20"});
}

TEST_F(CliTest, BadInputShapesAreNamed) {
  for (const std::string bad :
       {"3x224", "3xax224", "0x32x32", "3x32x32x1", "3x32x", "-3x32x32", ""}) {
    SCOPED_TRACE("--input '" + bad + "'");
    expect_one_line_error(run({"info", "--model", "resnet20", "--input", bad}), {"--input"});
  }
  expect_one_line_error(run({"bench", "--model", "resnet20", "--input", "1x16"}),
                        {"--input", "1x16"});
}

TEST_F(CliTest, UnknownFlagListsValidFlags) {
  expect_one_line_error(run({"info", "--model", "resnet20", "--bogus", "1"}),
                        {"--bogus", "--model", "--input", "--classes", "--json"});
  expect_one_line_error(run({"bench", "--model", "resnet20", "--epochs", "3"}),
                        {"--epochs", "--batch", "--threads"});
  expect_one_line_error(run({"info", "resnet20"}), {"resnet20"});
}

TEST_F(CliTest, BadFlagValuesAreNamed) {
  expect_one_line_error(run({"info"}), {"--model"});
  expect_one_line_error(run({"info", "--model"}), {"--model"});
  expect_one_line_error(run({"info", "--model", "resnet20", "--classes", "ten"}),
                        {"--classes", "ten"});
  expect_one_line_error(run({"info", "--model", "resnet20", "--classes", "0"}), {"--classes"});
  expect_one_line_error(run({"info", "--model", "resnet20", "--model", "resnet32"}), {"--model"});
  expect_one_line_error(run({"info", "--model", "resnet20", "--json=yes"}), {"--json"});
  expect_one_line_error(run({"bench", "--model", "resnet20", "--batch", "0"}), {"--batch"});
  expect_one_line_error(run({"bench", "--model", "resnet20", "--device", "tpu"}),
                        {"--device", "tpu"});
}

TEST_F(CliTest, UsageVersionAndUnknownCommand) {
  const CommandResult none = run({});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.out.find("usage"), std::string::npos) << none.out;
  const CommandResult help = run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("info"), std::string::npos) << help.out;
  const CommandResult version = run({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("resnet ", 0), 0u) << version.out;
  const CommandResult unknown = run({"frobnicate"});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.err.find("frobnicate"), std::string::npos) << unknown.err;
}

TEST_F(CliTest, BenchJsonReportsThroughput) {
  const CommandResult r = run({"bench", "--model", "resnet20", "--input", "1x16x16", "--batch", "4",
                               "--iters", "2", "--warmup", "1", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_string(r.out, "model"), "resnet20");
  EXPECT_EQ(json_number(r.out, "batch"), 4);
  EXPECT_GT(json_number(r.out, "train_img_per_s"), 0) << r.out;
  EXPECT_GT(json_number(r.out, "infer_img_per_s"), 0) << r.out;
  EXPECT_EQ(r.out.front(), '{');
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "not one line: " << r.out;
}

TEST_F(CliTest, BenchTrainOnlySkipsInference) {
  const CommandResult r =
      run({"bench", "--model", "resnet20", "--input", "1x8x8", "--batch", "2", "--iters", "1",
           "--warmup", "0", "--threads", "1", "--train-only", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(json_number(r.out, "train_img_per_s"), 0) << r.out;
  EXPECT_EQ(json_number(r.out, "infer_img_per_s"), 0) << r.out;
}

}  // namespace
}  // namespace rn::launch

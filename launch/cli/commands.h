// The subcommands of the `resnet` executable; each returns the process exit code.
#pragma once

#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/rank_environment.h"
#include "launch/cli/args.h"
#include "launch/train/json_text.h"
#include "launch/train/test_hooks.h"

namespace rn::launch {

// What every command receives from main: the job's communicator (MPI's world under a launcher,
// a single process otherwise; it outlives the command, so that an error can still end every
// rank in main), this rank's environment, both built once after MPI starts, and the test hooks.
struct Job {
  distributed::Communicator& comm;
  const distributed::RankEnvironment& env;
  const TestHooks& hooks;
};

// The test hooks, from the environment: the one place that reads RESNET_TEST_* variables.
TestHooks test_hooks_from_environment();

// Every command of `resnet`, in the order its usage lists them: the name, what it does, how it
// runs, and its flags (a command with subcommands has a group instead).
struct Command {
  std::string name;
  int (*run)(const std::vector<std::string>& argv, const Job& job);
  const CommandSpec* spec;    // null for a group
  const CommandGroup* group;  // null for a single command
  const std::string& summary() const { return spec ? spec->summary : group->summary; }
};
const std::vector<Command>& commands();
// Every command and subcommand's spec: what `--help` prints and the parser accepts.
std::vector<const CommandSpec*> all_command_specs();
// `resnet` alone or `resnet --help`: the commands, one line each.
std::string usage_text();
// `resnet help --markdown`: the usage and every command's --help as one Markdown page, the
// command reference launch/commands.md.
std::string command_reference_markdown();

const CommandSpec& train_command();
const CommandSpec& eval_command();
const CommandSpec& infer_command();
const CommandSpec& predict_command();
const CommandSpec& export_command();
const CommandSpec& step_command();
const CommandSpec& info_command();
const CommandSpec& bench_command();
const CommandSpec& ckpt_bench_command();
const CommandGroup& ckpt_commands();
const CommandGroup& data_commands();

int run_info(const std::vector<std::string>& argv, const Job& job);
// Under mpirun, bench times data-parallel steps (with and without communication) and
// `bench --allreduce` the gradient all-reduce.
int run_bench(const std::vector<std::string>& argv, const Job& job);
int run_train(const std::vector<std::string>& argv, const Job& job);
int run_eval(const std::vector<std::string>& argv, const Job& job);
int run_ckpt(const std::vector<std::string>& argv, const Job& job);
int run_ckpt_bench(const std::vector<std::string>& argv, const Job& job);
int run_infer(const std::vector<std::string>& argv, const Job& job);
// `resnet predict`: image files' classes by name (launch/cli/cmd_predict.cpp).
int run_predict(const std::vector<std::string>& argv, const Job& job);
// `resnet export`: the network as an ONNX model (launch/cli/cmd_export.cpp).
int run_export(const std::vector<std::string>& argv, const Job& job);
int run_step(const std::vector<std::string>& argv, const Job& job);
// `resnet data pack | inspect | bench`: packed data sets and the decoding benchmark.
int run_data(const std::vector<std::string>& argv, const Job& job);
// Empties the page cache (root only), so that a read comes from the disk; false where it cannot.
bool drop_caches();

// Default input C x H x W and classes of a named network: ImageNet sizes for the ImageNet
// networks, CIFAR's for the CIFAR ones.
struct DefaultInput {
  int channels, height, width, classes;
};
DefaultInput default_input(const std::string& model);
class Args;
// --device cpu|cuda (default cpu) as this rank's device; anything else is an error naming it.
Device device_flag(const Args& args, const distributed::RankEnvironment& env);
// default_input overridden by --input CxHxW and --classes N.
DefaultInput input_from_args(const Args& args, const std::string& model);
int run_allreduce_bench(const Args& args, const Job& job);
// `bench --peak`: convolution GFLOP/s in fp32 and (where the CPU has it) bf16.
int run_peak_bench(const Args& args, const Job& job);
// The median of timed iterations (the benchmarks' statistic).
double median(std::vector<double> v);

}  // namespace rn::launch

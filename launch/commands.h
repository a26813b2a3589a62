// The subcommands of the `resnet` executable; each returns the process exit code.
#pragma once

#include <string>
#include <vector>

#include "distributed/communicator.h"

namespace rn::launch {

int run_info(const std::vector<std::string>& argv);
// `comm`: under mpirun, bench times data-parallel steps (with and without communication) and
// `bench --allreduce` the gradient all-reduce.
int run_bench(const std::vector<std::string>& argv, distributed::Communicator& comm);
// `comm` outlives the call, so that an error can still end every rank (MPI_Abort) in main.
int run_train(const std::vector<std::string>& argv, distributed::Communicator& comm);
int run_eval(const std::vector<std::string>& argv, distributed::Communicator& comm);
int run_ckpt(const std::vector<std::string>& argv, distributed::Communicator& comm);
int run_ckpt_bench(const std::vector<std::string>& argv, distributed::Communicator& comm);
int run_infer(const std::vector<std::string>& argv, distributed::Communicator& comm);
int run_step(const std::vector<std::string>& argv, distributed::Communicator& comm);
// `resnet data pack | inspect | bench`: packed data sets and the decoding benchmark.
int run_data(const std::vector<std::string>& argv);
// Empties the page cache (root only), so that a read comes from the disk; false where it cannot.
bool drop_caches();

// Default input C x H x W and classes of a named network: ImageNet sizes for the ImageNet
// networks, CIFAR's for the CIFAR ones.
struct DefaultInput {
  int channels, height, width, classes;
};
DefaultInput default_input(const std::string& model);
class Args;
// default_input overridden by --input CxHxW and --classes N.
DefaultInput input_from_args(const Args& args, const std::string& model);
int run_allreduce_bench(const Args& args, distributed::Communicator& comm);
// `bench --peak`: convolution GFLOP/s in fp32 and (where the CPU has it) bf16.
int run_peak_bench(const Args& args);
// `s` as the inside of a JSON string (quotes, backslashes and control characters escaped).
std::string json_escape(const std::string& s);
// The median of timed iterations (the benchmarks' statistic).
double median(std::vector<double> v);

// CPU threads for one rank: the CPUs of its CPU set divided among the ranks of its node that
// share them (oversubscribed OpenMP threads slow everything down many times). Collective.
int default_threads_per_rank();

}  // namespace rn::launch

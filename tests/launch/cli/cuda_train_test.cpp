// `train.device: cuda` and `bench --device cuda` end to end. With a GPU: a short synthetic run
// in fp32 and bf16 learns and the benchmark reports; without one (or without CUDA in the build):
// one clear error line and a non-zero exit, the GPU runs skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/backend/backend.h"
#include "run_command.h"
#include "tests/scratch_dir.h"

namespace fs = std::filesystem;
using rn::test::json_number;
using rn::test::read_text;
using rn::test::run_resnet;

namespace {

class CudaTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(rn::test::resnet_binary())) GTEST_SKIP() << "resnet binary not built";
    dir_ = scratch_.dir();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_config(const std::string& precision) {
    const fs::path p = dir_ / "config.yaml";
    std::ofstream(p) << "run_dir: " << (dir_ / "run").string()
                     << "\nmodel: {name: resnet20, in_channels: 3, num_classes: 10}\n"
                        "data: {kind: synthetic, synthetic_size: 128, height: 16, width: 16, "
                        "batch_size: 32, test_batch_size: 64, workers: 1}\n"
                        "optim: {lr: 0.05, momentum: 0.9, weight_decay: 0, schedule: constant}\n"
                        "train: {epochs: 6, seed: 1, threads: 2, log_every: 4, device: cuda, "
                        "precision: "
                     << precision << "}\n";
    return p.string();
  }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
};

TEST_F(CudaTrainTest, WithoutAGpuCudaIsOneClearError) {
  if (rn::cuda_available()) GTEST_SKIP() << "a GPU is usable here";
  for (const std::string& args : {"train --config " + write_config("fp32"),
                                  std::string("bench --model resnet20 --device cuda")}) {
    const auto r = run_resnet(args);
    EXPECT_NE(r.exit_code, 0) << args;
    const auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_NE(lines[0].find("'cuda'"), std::string::npos) << lines[0];
  }
}

// The driver library comes with the NVIDIA driver; linking it would stop the binary from starting
// (even for CPU work) on machines without one. The CUDA runtime loads it itself when needed.
TEST_F(CudaTrainTest, BinaryDoesNotLinkTheDriver) {
  FILE* p = ::popen(("ldd " + rn::test::resnet_binary() + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  ::pclose(p);
  EXPECT_EQ(out.find("libcuda.so"), std::string::npos) << out;
  EXPECT_EQ(out.find("not found"), std::string::npos) << out;
}

class CudaTrainPrecisionTest : public CudaTrainTest,
                               public ::testing::WithParamInterface<const char*> {};

TEST_P(CudaTrainPrecisionTest, SyntheticRunLearns) {
  if (!rn::cuda_available()) GTEST_SKIP() << "no usable CUDA GPU";
  const auto r = run_resnet("train --config " + write_config(GetParam()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream metrics(read_text(dir_ / "run" / "metrics.jsonl"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(metrics, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 6u);
  // Random labels on 128 samples seen six times: the network starts to memorise them, so the
  // training loss falls.
  EXPECT_LT(json_number(lines[5], "train_loss"), json_number(lines[0], "train_loss"));
  EXPECT_GT(json_number(lines[5], "img_per_s"), 0);
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaTrainPrecisionTest, ::testing::Values("fp32", "bf16", "fp16"));

TEST_F(CudaTrainTest, BenchReportsOnTheGpu) {
  if (!rn::cuda_available()) GTEST_SKIP() << "no usable CUDA GPU";
  const auto r = run_resnet(
      "bench --model resnet20 --input 3x32x32 --batch 64 --device cuda --precision bf16 "
      "--warmup 2 --iters 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(json_number(r.out, "train_img_per_s"), 0) << r.out;
  EXPECT_GT(json_number(r.out, "infer_img_per_s"), 0) << r.out;
  EXPECT_NE(r.out.find("\"precision\": \"bf16\""), std::string::npos) << r.out;
  // The step reads a resident batch; the upload is timed on its own.
  EXPECT_GT(json_number(r.out, "upload_s_pinned"), 0) << r.out;
  EXPECT_GT(json_number(r.out, "train_iter_s_upload_overlapped"), 0) << r.out;
}

// Ten classes put fc.weight 40 bytes into its gradient bucket when slices were packed tight: the
// batched SGD and cast kernels, which read 16-byte vectors, then faulted on the first step. The
// data-parallel step of every CIFAR / Fashion-MNIST network goes through exactly that.
TEST_F(CudaTrainTest, DataParallelStepsOfATenClassNetworkRun) {
  if (!rn::cuda_available()) GTEST_SKIP() << "no usable CUDA GPU";
  for (const char* precision : {"fp32", "bf16"}) {
    const auto r = run_resnet(std::string("bench --model resnet20 --input 1x28x28 --classes 10 "
                                          "--batch 32 --device cuda --data-parallel --train-only "
                                          "--warmup 1 --iters 3 --json --precision ") +
                              precision);
    ASSERT_EQ(r.exit_code, 0) << precision << ": " << r.err;
    EXPECT_GT(json_number(r.out, "train_img_per_s"), 0) << r.out;
    EXPECT_NE(r.out.find("\"allreduce\": \"nccl\""), std::string::npos) << r.out;
  }
}

}  // namespace

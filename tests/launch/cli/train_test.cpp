// `resnet train` end to end: a CI-sized run on a Fashion-MNIST subset learns, and every bad input
// (data files, config keys and values, model names) gives one clear line and a non-zero exit.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "core/backend/backend.h"
#include "run_command.h"
#include "tests/scratch_dir.h"

namespace fs = std::filesystem;
using rn::test::have_mpirun;
using rn::test::json_number;
using rn::test::mpirun_prefix;
using rn::test::read_text;
using rn::test::run_resnet;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist";

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(rn::test::resnet_binary())) GTEST_SKIP() << "resnet binary not built";
    dir_ = scratch_.dir();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A small config in the test's directory; `extra` is appended YAML.
  std::string write_config(const std::string& body) {
    const fs::path p = dir_ / "config.yaml";
    std::ofstream(p) << body;
    return p.string();
  }
  std::string base_config(const std::string& root = kData) {
    return "run_dir: " + (dir_ / "run").string() +
           "\nmodel: {name: resnet20, in_channels: 1, num_classes: 10}\n"
           "data: {kind: fashion_mnist, root: " +
           root +
           ", batch_size: 64, test_batch_size: 250, train_limit: 3200, test_limit: 1000, workers: "
           "1}\n"
           "optim: {lr: 0.1, momentum: 0.9, weight_decay: 1.0e-4, schedule: cosine}\n"
           "train: {epochs: 2, seed: 1, threads: 2, log_every: 25}\n";
  }
  // Copies of the four data files, plain (uncompressed), for corrupting.
  void write_idx(const fs::path& p, uint32_t magic, const std::vector<uint32_t>& dims,
                 size_t payload) {
    std::ofstream f(p, std::ios::binary);
    auto be32 = [&](uint32_t v) {
      const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
      f.write(b, 4);
    };
    be32(magic);
    for (auto d : dims) be32(d);
    std::string data(payload, '\0');
    for (size_t i = 0; i < payload; ++i) data[i] = static_cast<char>(i % 10);
    f.write(data.data(), static_cast<std::streamsize>(payload));
  }
  fs::path make_data(uint32_t image_magic = 0x803, size_t train_images = 100,
                     size_t train_labels = 100, size_t pixel_bytes = 100 * 784) {
    const fs::path root = dir_ / "data";
    fs::create_directories(root);
    write_idx(root / "train-images-idx3-ubyte", image_magic, {uint32_t(train_images), 28, 28},
              pixel_bytes);
    write_idx(root / "train-labels-idx1-ubyte", 0x801, {uint32_t(train_labels)}, train_labels);
    write_idx(root / "t10k-images-idx3-ubyte", 0x803, {50, 28, 28}, 50 * 784);
    write_idx(root / "t10k-labels-idx1-ubyte", 0x801, {50}, 50);
    return root;
  }
  // Expects a failure whose stderr is exactly one line containing every one of `needles`.
  void expect_one_line_error(const std::string& args, const std::vector<std::string>& needles) {
    const auto r = run_resnet(args);
    EXPECT_NE(r.exit_code, 0) << r.err;
    const auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << r.err;
    for (const auto& n : needles) EXPECT_NE(lines[0].find(n), std::string::npos) << lines[0];
  }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
};

TEST_F(TrainTest, SubsetTrainingLearns) {
  if (!fs::exists(kData)) GTEST_SKIP() << "Fashion-MNIST not installed";
  const auto r = run_resnet("train --config " + write_config(base_config()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("final: resnet20"), std::string::npos) << r.out;
  std::istringstream metrics(read_text(dir_ / "run" / "metrics.jsonl"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(metrics, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u);
  for (const char* key : {"epoch", "step", "train_loss", "train_top1", "test_top1", "test_top5",
                          "lr", "img_per_s", "wall_s"})
    EXPECT_FALSE(std::isnan(json_number(lines[0], key))) << key << " missing in " << lines[0];
  EXPECT_EQ(json_number(lines[1], "step"), 100);  // 3200 / 64 * 2
  // The loss falls from the first epoch to the second and from chance level (ln 10 = 2.30).
  EXPECT_LT(json_number(lines[1], "train_loss"), json_number(lines[0], "train_loss"));
  EXPECT_LT(json_number(lines[1], "train_loss"), 1.2);
  // Chance is 0.1 top-1 and 0.5 top-5.
  EXPECT_GT(json_number(lines[1], "test_top1"), 0.6);
  EXPECT_GT(json_number(lines[1], "test_top5"), 0.95);
  EXPECT_TRUE(fs::exists(dir_ / "run" / "config.yaml"));
}

// --dry-run checks what the job would check first (config, network, device, data) and stops
// without writing anything: no run_dir appears.
TEST_F(TrainTest, DryRunChecksAndWritesNothing) {
  const std::string cfg = write_config(base_config());
  const auto r = run_resnet("train --config " + cfg + " --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("network resnet20: 269434 parameters"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3200 train and 1000 test samples, 10 classes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("run_dir " + (dir_ / "run").string() + ": new"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "run"));
  const auto bad_root =
      run_resnet("train --config " + write_config(base_config("/nonexistent")) + " --dry-run");
  EXPECT_NE(bad_root.exit_code, 0);
  EXPECT_EQ(bad_root.err_lines_with("/nonexistent"), 1) << bad_root.err;
  const auto on_gpu = run_resnet("train --config " + cfg + " --dry-run --set train.device=cuda");
  if (on_gpu.exit_code != 0) {
    EXPECT_EQ(on_gpu.err_lines_with("train.device"), 1);
  }
}

// `auto` device and precision: the first lines say what this job chose and why, and the job runs
// with it (here on 2 ranks: the choice is the job's, the same on every rank).
TEST_F(TrainTest, AutoDeviceAndPrecisionAreSaidFirst) {
  const std::string cfg = write_config(base_config());
  const std::string autos = " --set train.device=auto --set train.precision=auto";
  const bool gpu = !rn::cuda_gpu_of(0).empty();
  const bool bf16 = gpu || rn::cpu_bf16_verdict().faster;
  const auto dry = run_resnet("train --config " + cfg + autos + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find(gpu ? "train.device auto: cuda"
                             : "train.device auto: cpu, this rank sees no GPU"),
            std::string::npos)
      << dry.out;
  EXPECT_NE(dry.out.find(bf16 ? "train.precision auto: bf16" : "train.precision auto: fp32"),
            std::string::npos)
      << dry.out;
  EXPECT_NE(dry.out.find(bf16 ? " in bf16" : " in fp32"), std::string::npos) << dry.out;
  if (gpu || !have_mpirun()) return;
  const auto r =
      run_resnet("train --config " + cfg + autos + " --set train.max_steps=2", mpirun_prefix(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = r.err_lines();
  ASSERT_GE(lines.size(), 2u) << r.err;
  EXPECT_NE(lines[0].find("train.device auto: cpu, rank 0 sees no GPU"), std::string::npos)
      << r.err;
  EXPECT_NE(lines[1].find("train.precision auto: "), std::string::npos) << r.err;
  EXPECT_NE(read_text(dir_ / "run" / "train.log")
                .find(bf16 ? ", bf16 (train.precision auto)" : ", fp32 (train.precision auto)"),
            std::string::npos);
}

TEST_F(TrainTest, MissingDataDirectory) {
  expect_one_line_error("train --config " + write_config(base_config("/nonexistent/fmnist")),
                        {"data.root", "/nonexistent/fmnist", "no such directory"});
}

TEST_F(TrainTest, TruncatedIdxFile) {
  const auto root = make_data(0x803, 100, 100, 100 * 784 - 500);
  expect_one_line_error("train --config " + write_config(base_config(root.string())),
                        {"train-images-idx3-ubyte", "truncated"});
}

TEST_F(TrainTest, WrongMagicNumber) {
  const auto root = make_data(0x804);
  expect_one_line_error("train --config " + write_config(base_config(root.string())),
                        {"train-images-idx3-ubyte", "magic"});
}

TEST_F(TrainTest, LabelCountMismatch) {
  const auto root = make_data(0x803, 100, 90);
  expect_one_line_error("train --config " + write_config(base_config(root.string())),
                        {"train-labels-idx1-ubyte", "100", "90"});
}

TEST_F(TrainTest, UnknownConfigKey) {
  expect_one_line_error("train --config " + write_config(base_config() + "extra_key: 1\n"),
                        {"config.yaml", "unknown key 'extra_key'"});
  expect_one_line_error("train --config " + write_config(base_config()) + " --set optim.lrr=0.1",
                        {"optim.lrr", "lr"});
}

TEST_F(TrainTest, WrongType) {
  expect_one_line_error(
      "train --config " + write_config(base_config()) + " --set train.epochs=many",
      {"train.epochs", "many"});
}

TEST_F(TrainTest, NegativeLearningRate) {
  expect_one_line_error("train --config " + write_config(base_config()) + " --set optim.lr=-0.1",
                        {"optim.lr", "-0.1"});
}

TEST_F(TrainTest, UnknownModelName) {
  expect_one_line_error(
      "train --config " + write_config(base_config()) + " --set model.name=resnet21",
      {"model.name", "resnet21", "resnet20", "resnext50_32x4d"});
}

TEST_F(TrainTest, MissingConfigFile) {
  expect_one_line_error("train --config " + (dir_ / "absent.yaml").string(), {"absent.yaml"});
}

TEST_F(TrainTest, TwoRanksTrainOneModel) {
  if (!fs::exists(kData)) GTEST_SKIP() << "Fashion-MNIST not installed";
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const auto r =
      run_resnet("train --config " + write_config(base_config()) + " --set train.threads=1",
                 rn::test::mpirun_prefix(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Rank 0 alone prints the result and writes the metrics.
  EXPECT_EQ(r.out.find("final: resnet20"), r.out.rfind("final: resnet20")) << r.out;
  std::istringstream metrics(read_text(dir_ / "run" / "metrics.jsonl"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(metrics, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u);
  // 3200 samples, 2 ranks x 64 per step: 25 steps an epoch.
  EXPECT_EQ(json_number(lines[1], "step"), 50);
  EXPECT_LT(json_number(lines[1], "train_loss"), json_number(lines[0], "train_loss"));
  EXPECT_GT(json_number(lines[1], "test_top1"), 0.3);
  EXPECT_NE(r.out.find("(1000 test samples)"), std::string::npos) << r.out;
}

// train --profile N: N steps after the first 10 profiled on two ranks (the loader's and the
// all-reduce's waits among the kinds), in the log and profile.json; the run trains exactly as
// without it; a bad count or an ensemble is one line.
TEST_F(TrainTest, ProfileOfStepsLeavesTheRunUnchanged) {
  if (!fs::exists(kData)) GTEST_SKIP() << "Fashion-MNIST not installed";
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const std::string cfg = write_config(base_config());
  const std::string args =
      "train --config " + cfg + " --set train.threads=1 --set train.max_steps=16";
  const auto plain = run_resnet(args, mpirun_prefix(2));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const std::string plain_metrics = read_text(dir_ / "run" / "metrics.jsonl");
  fs::remove_all(dir_ / "run");
  const auto r = run_resnet(args + " --profile 4", mpirun_prefix(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err_lines_with("profile of steps 11-14 (rank 0; also in profile.json)"), 1) << r.err;
  for (const char* kind :
       {"conv forward", "conv backward-weights", "batch norm", "element-wise", "optimizer",
        "loader wait", "all-reduce wait", "other (host between calls)"})
    EXPECT_EQ(r.err_lines_with(std::string("]   ") + kind + " "), 1) << kind << "\n" << r.err;
  const std::string json = read_text(dir_ / "run" / "profile.json");
  EXPECT_EQ(json_number(json, "steps"), 4) << json;
  EXPECT_GT(json_number(json, "step_s"), 0) << json;
  EXPECT_NE(json.find("\"kind\": \"loader wait\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"what\": \"conv 3x3/1 16->16 at 28x28\""), std::string::npos) << json;
  // The same losses and accuracies, to the last digit printed.
  const auto numbers = [](const std::string& line) {
    std::string kept;
    for (const char* key : {"train_loss", "train_top1", "test_loss", "test_top1"})
      kept += std::to_string(json_number(line, key)) + " ";
    return kept;
  };
  EXPECT_EQ(numbers(read_text(dir_ / "run" / "metrics.jsonl")), numbers(plain_metrics));
  expect_one_line_error("train --config " + cfg + " --profile 0",
                        {"--profile must be a number of steps >= 1"});
}

TEST_F(TrainTest, ErrorOnEveryRankIsPrintedOnceAndEndsTheJob) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const auto r = run_resnet("train --config " + write_config(base_config()) + " --set optim.lr=-1",
                            rn::test::mpirun_prefix(2));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err_lines_with("resnet train: error:"), 1) << r.err;
  EXPECT_NE(r.err.find("'optim.lr' must be a positive number"), std::string::npos) << r.err;
}

TEST_F(TrainTest, DifferentConfigsOnTwoRanksAreAnError) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Rank 1 gets one more --set than rank 0.
  const fs::path wrapper = dir_ / "rank1_differs.sh";
  std::ofstream(wrapper)
      << "#!/bin/sh\nif [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then exec \"$@\" --set "
         "train.seed=5; else exec \"$@\"; fi\n";
  fs::permissions(wrapper, fs::perms::owner_all);
  const auto r = run_resnet("train --config " + write_config(base_config()),
                            rn::test::mpirun_prefix(2) + wrapper.string() + " ");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err_lines_with("resnet train: error:"), 1) << r.err;
  EXPECT_NE(r.err.find("rank 1's resolved config differs from rank 0's"), std::string::npos)
      << r.err;
}

// Runs `args` under mpirun -np 2 with each rank started through `wrapper` (a shell script), and
// times it.
struct TimedResult {
  rn::test::CommandResult r;
  double seconds = 0;
};
TimedResult run_two_ranks_wrapped(const fs::path& wrapper, const std::string& script,
                                  const std::string& args) {
  std::ofstream(wrapper) << "#!/bin/sh\n" << script;
  fs::permissions(wrapper, fs::perms::owner_all);
  const auto t0 = std::chrono::steady_clock::now();
  TimedResult t{run_resnet(args, rn::test::mpirun_prefix(2) + wrapper.string() + " ")};
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

// A wrapper script body in which rank 1 stops itself (SIGSTOP, as a hung node) once the shell
// test `condition` holds, polled every 0.1 s for at most a minute, after the `setup` lines.
std::string stop_rank1_once(const std::string& condition, const std::string& setup = "") {
  return setup + "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (for i in $(seq 600); do " +
         condition + " && break; sleep 0.1; done; kill -STOP $$) & fi\nexec \"$@\"\n";
}

TEST_F(TrainTest, OneRankFailingAloneEndsEveryRankWithin30Seconds) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Each rank runs in its own directory with a relative data root (as on two nodes): rank 1's
  // images file is truncated, so rank 1 alone fails while rank 0 waits for it in a collective.
  for (int rank : {0, 1}) fs::create_directories(dir_ / ("r" + std::to_string(rank)));
  const fs::path good = make_data();
  fs::rename(good, dir_ / "r0" / "data");
  const fs::path bad = make_data(0x803, 100, 100, 1000);
  fs::rename(bad, dir_ / "r1" / "data");
  std::string cfg = base_config("data");
  const auto t = run_two_ranks_wrapped(
      dir_ / "cd_rank.sh", "cd " + dir_.string() + "/r$OMPI_COMM_WORLD_RANK && exec \"$@\"\n",
      "train --config " + write_config(cfg) + " --set train.threads=1");
  EXPECT_NE(t.r.exit_code, 0);
  EXPECT_LT(t.seconds, 30.0);
  EXPECT_EQ(t.r.err_lines_with("resnet train: error:"), 1) << t.r.err;
  EXPECT_NE(t.r.err.find("train-images-idx3-ubyte"), std::string::npos) << t.r.err;
}

TEST_F(TrainTest, StalledRankTripsTheWatchdogNamingStepAndBucket) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Rank 1 stops itself (SIGSTOP, as a hung node) once training runs; rank 0 waits on its
  // gradient all-reduce for distributed.timeout_s, reports what it waits on, and ends the job.
  // No checkpoints: their watchdog is tested below.
  // Epochs long enough (20,000 samples) that the stop lands inside one, not in its evaluation.
  const fs::path root = make_data(0x803, 20000, 20000, 20000 * 784);
  const auto t = run_two_ranks_wrapped(
      dir_ / "stop_rank1.sh",
      // Once rank 0 has logged training progress, not while starting up.
      stop_rank1_once("grep -q ' step ' " + (dir_ / "run" / "train.log").string() + " 2>/dev/null"),
      "train --config " + write_config(base_config(root.string())) +
          " --set train.threads=1 --set train.epochs=1000 --set data.batch_size=16"
          " --set distributed.timeout_s=3 --set checkpoint.every_epochs=0");
  EXPECT_NE(t.r.exit_code, 0);
  EXPECT_LT(t.seconds, 30.0);
  EXPECT_EQ(t.r.err_lines_with("resnet train: error:"), 1) << t.r.err;
  // Rank 0 waits either on a gradient bucket or on the per-step stop-signal check that follows.
  const bool bucket = t.r.err.find("[watchdog] rank 0: gradient bucket") != std::string::npos &&
                      t.r.err.find("waiting at step") != std::string::npos;
  const bool stop_check = t.r.err.find("[watchdog] rank 0: all-reduce") != std::string::npos &&
                          t.r.err.find("in the stop-signal check after step") != std::string::npos;
  EXPECT_TRUE(bucket || stop_check) << t.r.err;
  EXPECT_NE(t.r.err.find("distributed.timeout_s"), std::string::npos) << t.r.err;
}

TEST_F(TrainTest, RankStalledInACheckpointWriteTripsTheWatchdogNamingTheFile) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // HDF5's MPI-IO collectives cannot time their own waits: the write as a whole has the
  // deadline. Every rank holds the file half-written for 1.5 s (the test hook), and rank 1 stops
  // itself (SIGSTOP) once the temporary file exists; rank 0 then waits inside the write past
  // distributed.timeout_s, reports the file it was writing, and ends the job.
  const fs::path root = make_data(0x803, 200, 200, 200 * 784);
  const fs::path ckpt_dir = dir_ / "run" / "checkpoints";
  const auto t = run_two_ranks_wrapped(
      dir_ / "stop_rank1_in_write.sh",
      stop_rank1_once("ls " + ckpt_dir.string() + "/*.tmp >/dev/null 2>&1",
                      "export RESNET_TEST_CHECKPOINT_PAUSE_MS=1500\n"),
      "train --config " + write_config(base_config(root.string())) +
          " --set train.threads=1 --set data.batch_size=16 --set distributed.timeout_s=4"
          " --set checkpoint.every_epochs=1");
  EXPECT_NE(t.r.exit_code, 0);
  EXPECT_LT(t.seconds, 40.0);
  EXPECT_EQ(t.r.err_lines_with("resnet train: error:"), 1) << t.r.err;
  EXPECT_NE(t.r.err.find("resnet train: error: [watchdog] rank 0: checkpoint write of '" +
                         ckpt_dir.string()),
            std::string::npos)
      << t.r.err;
  EXPECT_NE(t.r.err.find("not complete after 4 s (distributed.timeout_s)"), std::string::npos)
      << t.r.err;
}

TEST_F(TrainTest, LinearLrScalingMultipliesByTheRanks) {
  if (!fs::exists(kData)) GTEST_SKIP() << "Fashion-MNIST not installed";
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const auto r =
      run_resnet("train --config " + write_config(base_config()) +
                     " --set train.threads=1 --set train.epochs=1 --set train.max_steps=2"
                     " --set optim.schedule=constant --set optim.scale_lr=true",
                 rn::test::mpirun_prefix(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string line = read_text(dir_ / "run" / "metrics.jsonl");
  EXPECT_DOUBLE_EQ(json_number(line, "lr"), 0.2) << line;  // 0.1 x 2 ranks
}

}  // namespace

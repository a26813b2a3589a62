// Shared set-up of the checkpoint tests: a tiny synthetic run, background jobs whose ranks'
// process ids are known (to kill or signal one), and byte comparisons of checkpoint tensors.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <thread>

#include "io/checkpoint.h"
#include "run_command.h"
#include "tests/scratch_dir.h"

namespace rn::test {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(resnet_binary())) GTEST_SKIP() << "resnet binary not built";
    dir_ = scratch_.dir();
  }
  void TearDown() override {
    for (const auto& m : mounts_) std::system(("umount " + m + " 2>/dev/null").c_str());
    fs::remove_all(dir_);
  }

  // resnet20 on 256 synthetic 1x12x12 images, 32 per rank: 8 steps per epoch on one rank,
  // 4 on two. `extra` is appended to the train section's flags as --set pairs.
  std::string config(const std::string& run = "run") {
    const fs::path p = dir_ / "config.yaml";
    std::ofstream(p) << config_text(run);
    return "--config " + p.string() + " --set run_dir=" + (dir_ / run).string();
  }
  std::string config_text(const std::string& run) const {
    return "run_dir: " + (dir_ / run).string() +
           "\nmodel: {name: resnet20, in_channels: 1, num_classes: 10}\n"
           "data: {kind: synthetic, synthetic_size: 256, height: 12, width: 12, "
           "batch_size: 32, test_batch_size: 64, test_limit: 64, workers: 1}\n"
           "optim: {lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4, schedule: cosine}\n"
           "train: {epochs: 3, seed: 5, threads: 1, log_every: 1}\n"
           "checkpoint: {every_epochs: 1, keep_last: 50}\n";
  }
  fs::path ckpt(const std::string& run, int64_t step) const {
    char name[32];
    std::snprintf(name, sizeof(name), "ckpt-s%010lld.h5", static_cast<long long>(step));
    return dir_ / run / "checkpoints" / name;
  }
  static std::string ranks(int n) { return n > 1 ? mpirun_prefix(n) : ""; }

  // Starts `resnet args` on `n` ranks in the background; each rank writes its pid to
  // dir_/pid.<rank> and the job's exit code lands in dir_/rc.
  void start(const std::string& args, int n, const std::string& env = "") {
    fs::remove(dir_ / "rc");
    for (int r = 0; r < 4; ++r) fs::remove(dir_ / ("pid." + std::to_string(r)));
    const std::string inner = "echo $$ > " + dir_.string() +
                              "/pid.${OMPI_COMM_WORLD_RANK:-0}; exec " + resnet_binary() + " " +
                              args;
    const std::string cmd = "(" + env + " " + ranks(n) + "sh -c '" + inner + "' > " +
                            (dir_ / "bg.out").string() + " 2> " + (dir_ / "bg.err").string() +
                            "; echo $? > " + (dir_ / "rc").string() + ") &";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  // Waits (up to `seconds`) for `p` to exist.
  static bool wait_for(const fs::path& p, double seconds = 120) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (fs::exists(p)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  int wait_exit() {
    EXPECT_TRUE(wait_for(dir_ / "rc")) << "job did not end";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return std::stoi(read_text(dir_ / "rc"));
  }
  int pid_of(int rank) {
    EXPECT_TRUE(wait_for(dir_ / ("pid." + std::to_string(rank)), 30));
    return std::stoi(read_text(dir_ / ("pid." + std::to_string(rank))));
  }

  // Mounts a tmpfs of `size` at `where` (for a full or read-only disk); false where not allowed.
  bool mount_tmpfs(const fs::path& where, const std::string& options) {
    fs::create_directories(where);
    const std::string cmd =
        "mount -t tmpfs -o " + options + " tmpfs " + where.string() + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) return false;
    mounts_.push_back(where.string());
    return true;
  }

  // The /model and /optimizer tensors of a checkpoint.
  static std::map<std::string, io::Bytes> tensors(const fs::path& p) {
    OneProcess one;
    auto all = io::read_checkpoint(p.string(), one);
    std::map<std::string, io::Bytes> out;
    for (auto& [k, v] : all)
      if (k.rfind("model/", 0) == 0 || k.rfind("optimizer/", 0) == 0) out[k] = std::move(v);
    return out;
  }

  // metrics.jsonl lines without the timing fields, keyed by epoch.
  std::map<int, std::string> metrics(const std::string& run) {
    std::map<int, std::string> out;
    std::istringstream in(read_text(dir_ / run / "metrics.jsonl"));
    const std::regex timing(R"re(, "(img_per_s|epoch_train_s|eval_s|wall_s)": [-0-9.eE+]+)re");
    for (std::string l; std::getline(in, l);) {
      std::smatch m;
      if (!std::regex_search(l, m, std::regex(R"("epoch": (\d+))"))) continue;
      out[std::stoi(m[1])] = std::regex_replace(l, timing, "");
    }
    return out;
  }

  // The one "resnet <cmd>: error: ..." line of `text`, and how many there are.
  static std::string error_line(const std::string& text, int* count = nullptr) {
    std::istringstream in(text);
    std::string found;
    int n = 0;
    for (std::string l; std::getline(in, l);)
      if (l.find(": error: ") != std::string::npos) found = found.empty() ? l : found, ++n;
    if (count) *count = n;
    return found;
  }

  // Flips one bit inside `dataset` of checkpoint `p` (found by its first 64 bytes).
  void flip_byte_of(const fs::path& p, const std::string& dataset) {
    OneProcess one;
    const auto data = io::read_checkpoint(p.string(), one);
    const auto& want = data.at(dataset);
    std::string bytes = read_text(p);
    const size_t at = bytes.find(std::string(want.data(), 64));
    ASSERT_NE(at, std::string::npos);
    bytes[at + 17] ^= 0x20;
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
  std::vector<std::string> mounts_;
};

}  // namespace rn::test

// `resnet ckpt init / inspect`, `resnet eval` of checkpoints, the files read by plain h5py and
// torchvision, and every bad input: another model, truncated, flipped byte, not HDF5, an
// unwritable folder, a full disk.
#include "checkpoint_fixture.h"

namespace rn::test {
namespace {

class CkptCliTest : public CheckpointTest {
 protected:
  // A trained checkpoint (3 epochs on one rank); returns its path.
  fs::path trained(const std::string& run = "run") {
    auto r = run_resnet("train " + config(run));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ckpt(run, 24);
  }
  // Expects `resnet args` to fail with one error line naming every needle.
  void expect_error(const std::string& args, const std::vector<std::string>& needles,
                    int ranks_n = 1) {
    const auto r = run_resnet(args, ranks(ranks_n));
    EXPECT_NE(r.exit_code, 0) << r.err;
    int count = 0;
    const std::string line = error_line(r.err, &count);
    EXPECT_EQ(count, 1) << r.err;
    for (const auto& n : needles) EXPECT_NE(line.find(n), std::string::npos) << n << " in " << line;
  }
};

TEST_F(CkptCliTest, InitInspectTrainAndEval) {
  const fs::path init = dir_ / "init.h5";
  auto r =
      run_resnet("ckpt init --model resnet20 --in-channels 1 --seed 7 --output " + init.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_resnet("ckpt inspect " + init.string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* want : {"\"model\": \"resnet20\"", "\"epoch\": 0", "\"step\": 0",
                           "\"world_size\": 1", "\"tensors\": 175", "\"checksums\": \"ok\""})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " in " << r.out;
  // The same seed gives the same file contents.
  const fs::path again = dir_ / "again.h5";
  ASSERT_EQ(
      run_resnet("ckpt init --model resnet20 --in-channels 1 --seed 7 --output " + again.string())
          .exit_code,
      0);
  EXPECT_TRUE(tensors(init) == tensors(again));
  // train --resume takes it; eval of the result equals the run's own last evaluation.
  r = run_resnet("train " + config() + " --resume " + init.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_resnet("eval --checkpoint " + ckpt("run", 24).string() + " --config " +
                 (dir_ / "config.yaml").string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"("top1": ([0-9.]+))"))) << r.out;
  const std::string last = metrics("run").rbegin()->second;
  std::smatch t;
  ASSERT_TRUE(std::regex_search(last, t, std::regex(R"("test_top1": ([0-9.]+))")));
  EXPECT_NEAR(std::stod(m[1]), std::stod(t[1]), 1e-6);
  // Without --checkpoint: the newest checkpoint of the config's run_dir, the same one here.
  const std::string top1 = m[0];
  r = run_resnet("eval --config " + (dir_ / "config.yaml").string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(top1), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(ckpt("run", 24).filename().string()), std::string::npos) << r.out;
  expect_error("eval --config " + (dir_ / "config.yaml").string() +
                   " --set run_dir=" + (dir_ / "none").string(),
               {"no checkpoint in", "train first, or name one with --checkpoint"});
}

TEST_F(CkptCliTest, EnsembleOfTwoWithTenCropsOnTwoRanks) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const fs::path a = trained("a"), b = dir_ / "b.h5";
  ASSERT_EQ(run_resnet("ckpt init --model resnet32 --in-channels 1 --seed 2 --output " + b.string())
                .exit_code,
            0);
  auto r = run_resnet("eval --checkpoint " + a.string() + " --checkpoint " + b.string() +
                          " --config " + (dir_ / "config.yaml").string() + " --crops 10 --json",
                      ranks(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"models\": 2, \"crops\": 10, \"samples\": 64"), std::string::npos)
      << r.out;
  expect_error("eval --checkpoint " + a.string() + " --config " + (dir_ / "config.yaml").string() +
                   " --crops 5",
               {"--crops must be 1 or 10"});
}

TEST_F(CkptCliTest, H5pyReadsEveryTensorWithTorchvisionNames) {
  if (std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0)
    GTEST_SKIP() << "python3-h5py not installed";
  const fs::path p = dir_ / "r50.h5";
  ASSERT_EQ(run_resnet("ckpt init --model resnet50 --seed 1 --output " + p.string()).exit_code, 0);
  const std::string script =
      std::string(RN_SOURCE_DIR) + "/tests/launch/cli/check_checkpoint_h5py.py";
  const std::string cmd = "/usr/bin/python3 " + script + " " + p.string() + " > " +
                          (dir_ / "py.out").string() + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_text(dir_ / "py.out");
  const std::string out = read_text(dir_ / "py.out");
  EXPECT_NE(out.find("601 datasets read, 0 failing"), std::string::npos) << out;
  if (out.find("not installed") == std::string::npos) {
    EXPECT_NE(out.find("320 names and shapes equal"), std::string::npos) << out;
  }
}

TEST_F(CkptCliTest, AnotherModelListsMissingUnexpectedAndMisshapedTensors) {
  const fs::path r20 = dir_ / "r20.h5", r32 = dir_ / "r32.h5";
  ASSERT_EQ(run_resnet("ckpt init --model resnet20 --in-channels 1 --classes 7 --seed 1 --output " +
                       r20.string())
                .exit_code,
            0);
  ASSERT_EQ(
      run_resnet("ckpt init --model resnet32 --in-channels 1 --seed 1 --output " + r32.string())
          .exit_code,
      0);
  expect_error("train " + config() + " --set model.name=resnet32 --resume " + r20.string(),
               {r20.string(), "(model resnet20) does not fit model resnet32", "missing",
                "model/layer1.3.conv1.weight", "wrongly shaped",
                "model/fc.weight (model 10x64, file 7x64)"});
  expect_error("train " + config() + " --resume " + r32.string(),
               {"(model resnet32) does not fit model resnet20", "unexpected", "model/layer1.3."});
}

TEST_F(CkptCliTest, DamagedAndForeignFilesAreRefused) {
  const fs::path good = trained();
  const fs::path cut = dir_ / "cut.h5", flipped = dir_ / "flipped.h5", text = dir_ / "text.h5";
  fs::copy_file(good, cut), fs::copy_file(good, flipped);
  fs::resize_file(cut, fs::file_size(cut) * 2 / 3);
  flip_byte_of(flipped, "model/layer2.0.conv1.weight");
  std::ofstream(text) << "run_dir: x\n";
  expect_error("train " + config("r1") + " --resume " + cut.string(), {cut.string(), "truncated"});
  expect_error("train " + config("r2") + " --resume " + flipped.string(),
               {flipped.string(), "'/model/layer2.0.conv1.weight' fails its checksum"});
  expect_error(
      "eval --checkpoint " + text.string() + " --config " + (dir_ / "config.yaml").string(),
      {text.string(), "not an HDF5 file"});
  auto r = run_resnet("ckpt inspect " + flipped.string() + " --json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(
      r.out.find("\"checksums\": \"bad\", \"bad_datasets\": [\"/model/layer2.0.conv1.weight\"]"),
      std::string::npos)
      << r.out;
  EXPECT_EQ(run_resnet("ckpt inspect " + good.string()).exit_code, 0);  // the original is intact
  if (have_mpirun())  // on two ranks, one line too
    expect_error("train " + config("r3") + " --resume " + flipped.string(), {"fails its checksum"},
                 2);
}

TEST_F(CkptCliTest, UnwritableCheckpointFolderFailsBeforeTraining) {
  if (!mount_tmpfs(dir_ / "run" / "checkpoints", "ro,size=1m"))
    GTEST_SKIP() << "cannot mount a read-only tmpfs here (needs root)";
  expect_error("train " + config(), {"checkpoint folder", "is not writable"});
}

TEST_F(CkptCliTest, FullDiskKeepsTheOlderCheckpoint) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // 5 MiB: the first checkpoint (2.2 MB of tensors, 2 MiB asked for beside them) fits, the
  // second does not.
  if (!mount_tmpfs(dir_ / "disk", "size=5m")) GTEST_SKIP() << "cannot mount a tmpfs here";
  const std::string run = "disk/run";
  expect_error("train " + config(run) + " --set checkpoint.every_steps=2",
               {ckpt(run, 4).string(), "MiB free"}, 2);
  EXPECT_EQ(tensors(ckpt(run, 2)).size(), 175u);
  EXPECT_FALSE(fs::exists(ckpt(run, 4)));
  EXPECT_FALSE(fs::exists(ckpt(run, 4).string() + ".tmp"));
}

}  // namespace
}  // namespace rn::test

// Resuming training from checkpoints: bit-identical on the same number of ranks, continuing on
// another number, surviving a rank killed mid-write, stopping cleanly on SIGUSR1 / SIGTERM.
#include <csignal>

#include "checkpoint_fixture.h"

namespace rn::test {
namespace {

class ResumeTest : public CheckpointTest {};

TEST_F(ResumeTest, ResumeOnTwoRanksIsBitIdentical) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Two ranks: 4 steps per epoch, 12 in all; step 6 is in the middle of the second epoch.
  auto a = run_resnet("train " + config("a") + " --set checkpoint.every_steps=3", ranks(2));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_TRUE(fs::exists(ckpt("a", 6)));
  auto b = run_resnet("train " + config("b") + " --resume " + ckpt("a", 6).string(), ranks(2));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.err.find("resumed from " + ckpt("a", 6).string() + " at epoch 2, step 6"),
            std::string::npos)
      << b.err;
  const auto ta = tensors(ckpt("a", 12)), tb = tensors(ckpt("b", 12));
  ASSERT_EQ(ta.size(), 116u + 59u);  // weights + BN statistics + num_batches_tracked, momentum
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, bytes] : ta) EXPECT_TRUE(bytes == tb.at(name)) << name << " differs";
  // The resumed run's metrics of the epochs it ran equal the uninterrupted run's.
  const auto ma = metrics("a"), mb = metrics("b");
  ASSERT_EQ(ma.size(), 3u);
  ASSERT_EQ(mb.size(), 2u);
  EXPECT_EQ(mb.at(2), ma.at(2));
  EXPECT_EQ(mb.at(3), ma.at(3));
  // And the test itself can tell runs apart: the checkpoint of step 6 is not the final one.
  EXPECT_FALSE(tensors(ckpt("a", 6)) == ta);
}

// Dropout masks are drawn from (seed, step, rank): a run resumed in the middle draws the masks
// the uninterrupted run drew. The network comes from spec fields, which the checkpoint keeps.
TEST_F(ResumeTest, ResumeWithShortcutDropoutIsBitIdentical) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const std::string variant =
      " --set model.shortcut=dropout --set model.shortcut_dropout=0.3 --set model.unit=relu_preact";
  auto a =
      run_resnet("train " + config("a") + variant + " --set checkpoint.every_steps=3", ranks(2));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto b =
      run_resnet("train " + config("b") + variant + " --resume " + ckpt("a", 6).string(), ranks(2));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto ta = tensors(ckpt("a", 12)), tb = tensors(ckpt("b", 12));
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, bytes] : ta) EXPECT_TRUE(bytes == tb.at(name)) << name << " differs";
  EXPECT_EQ(metrics("b").at(3), metrics("a").at(3));
  // The masks matter: without dropout the weights differ.
  auto c = run_resnet("train " + config("c") + " --set model.unit=relu_preact", ranks(2));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_FALSE(tensors(ckpt("c", 12)) == ta);
  // The checkpoint names its network with the fields, and `ckpt inspect` shows them.
  auto inspect = run_resnet("ckpt inspect " + ckpt("a", 12).string(), "");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("resnet20{unit=relu_preact shortcut=dropout shortcut_dropout=0.3}"),
            std::string::npos)
      << inspect.out;
}

// Ranks on several machines read their shares of a checkpoint and broadcast them (a test hook
// makes these ranks do so); the continuation is the same as the one-machine reading's.
TEST_F(ResumeTest, BroadcastReadingResumesTheSame) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  auto a = run_resnet("train " + config("a") + " --set checkpoint.every_steps=3", ranks(2));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const std::string hook = "RESNET_TEST_CHECKPOINT_BROADCAST=1 ";
  auto b =
      run_resnet("train " + config("b") + " --resume " + ckpt("a", 6).string(), hook + ranks(2));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto ta = tensors(ckpt("a", 12)), tb = tensors(ckpt("b", 12));
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, bytes] : ta) EXPECT_TRUE(bytes == tb.at(name)) << name << " differs";
  auto four =
      run_resnet("train " + config("four") + " --resume " + ckpt("a", 6).string(), hook + ranks(4));
  ASSERT_EQ(four.exit_code, 0) << four.err;
  EXPECT_NE(four.err.find("at epoch 2, step 3 (batch 1"), std::string::npos) << four.err;
  // A damaged tensor is found by the rank that reads it, and every rank stops with its message.
  const std::string bad = (dir_ / "bad.h5").string();
  fs::copy_file(ckpt("a", 6), bad);
  flip_byte_of(bad, "model/layer2.0.conv1.weight");
  auto c = run_resnet("train " + config("c") + " --resume " + bad, hook + ranks(2));
  EXPECT_NE(c.exit_code, 0);
  EXPECT_NE(c.err.find("fails its checksum"), std::string::npos) << c.err;
}

TEST_F(ResumeTest, TwoRankCheckpointContinuesOnOneAndFourRanks) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  auto a = run_resnet("train " + config("a") + " --set checkpoint.every_steps=3", ranks(2));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  // Step 6 of 2 ranks took 2 of the second epoch's batches, 128 samples: one rank continues at
  // its batch 4 of 8 (step 12 of 24), four ranks at batch 1 of 2 (step 3 of 6).
  auto one = run_resnet("train " + config("one") + " --resume " + ckpt("a", 6).string(), ranks(1));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.err.find("at epoch 2, step 12 (batch 4"), std::string::npos) << one.err;
  EXPECT_TRUE(fs::exists(ckpt("one", 24)));
  auto four =
      run_resnet("train " + config("four") + " --resume " + ckpt("a", 6).string(), ranks(4));
  ASSERT_EQ(four.exit_code, 0) << four.err;
  EXPECT_NE(four.err.find("at epoch 2, step 3 (batch 1"), std::string::npos) << four.err;
  ASSERT_TRUE(fs::exists(ckpt("four", 6)));
  EXPECT_EQ(io::read_checkpoint_summary(ckpt("four", 6).string()).header.world_size, 4);
  EXPECT_EQ(metrics("four").size(), 2u);
}

TEST_F(ResumeTest, KillDuringWriteLeavesThePreviousCheckpoint) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Every write holds its file half-done for 3 s (a test hook): rank 1 is killed inside the
  // second one, after step 4.
  start("train " + config() + " --set checkpoint.every_steps=2 --set train.epochs=20", 2,
        "RESNET_TEST_CHECKPOINT_PAUSE_MS=3000");
  ASSERT_TRUE(wait_for(ckpt("run", 2)));
  ASSERT_TRUE(wait_for(ckpt("run", 4).string() + ".tmp"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid_of(1), SIGKILL);
  EXPECT_NE(wait_exit(), 0);
  EXPECT_FALSE(fs::exists(ckpt("run", 4)));
  EXPECT_EQ(tensors(ckpt("run", 2)).size(), 175u);  // still complete and verified
  auto r = run_resnet("train " + config() + " --set train.epochs=1 --resume auto", ranks(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed from " + ckpt("run", 2).string()), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(ckpt("run", 4).string() + ".tmp")) << "stale temporary file kept";
}

TEST_F(ResumeTest, SignalToOneRankStopsEveryRankAfterACheckpoint) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  start("train " + config() + " --set train.epochs=1000", 2);
  ASSERT_TRUE(wait_for(ckpt("run", 4)));
  ::kill(pid_of(1), SIGUSR1);  // rank 1 only, as a scheduler may
  ASSERT_EQ(wait_exit(), 0) << read_text(dir_ / "bg.err");
  const std::string out = read_text(dir_ / "bg.out");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(stopped by signal after (\d+) steps)")))
      << out;
  const int64_t step = std::stoll(m[1]);
  EXPECT_LT(step, 4000);
  ASSERT_TRUE(fs::exists(ckpt("run", step)));
  EXPECT_EQ(io::read_checkpoint_summary(ckpt("run", step).string()).header.step, step);
  // --resume auto continues from it.
  auto r = run_resnet("train " + config() + " --set train.epochs=1000 --set train.max_steps=" +
                          std::to_string(step + 2) + " --resume auto",
                      ranks(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed from " + ckpt("run", step).string()), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(ckpt("run", step + 2)));
}

TEST_F(ResumeTest, SigtermStopsASingleProcessRun) {
  start("train " + config() + " --set train.epochs=1000", 1);
  ASSERT_TRUE(wait_for(ckpt("run", 8)));
  ::kill(pid_of(0), SIGTERM);
  ASSERT_EQ(wait_exit(), 0) << read_text(dir_ / "bg.err");
  EXPECT_NE(read_text(dir_ / "bg.out").find("stopped by signal"), std::string::npos);
}

TEST_F(ResumeTest, ResumeAutoWithoutCheckpointStartsFresh) {
  auto r = run_resnet("train " + config() + " --set train.epochs=1 --resume auto");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("starting fresh"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(ckpt("run", 8)));
}

TEST_F(ResumeTest, KeepLastRemovesOnlyOlderCheckpoints) {
  auto r = run_resnet("train " + config() +
                      " --set train.epochs=1 --set checkpoint.every_steps=1 --set "
                      "checkpoint.keep_last=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_ / "run" / "checkpoints"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-s0000000007.h5", "ckpt-s0000000008.h5"}));
}

}  // namespace
}  // namespace rn::test

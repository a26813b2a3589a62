// steps.jsonl: a line per train.log_every steps, its loss and accuracy over every rank's samples
// (an epoch's lines average to that epoch's metrics.jsonl figures), continued on resume.
#include "checkpoint_fixture.h"

namespace rn::test {
namespace {

class StepMetricsTest : public CheckpointTest {
 protected:
  std::vector<std::string> lines(const std::string& run) {
    std::istringstream in(read_text(dir_ / run / "steps.jsonl"));
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
};

TEST_F(StepMetricsTest, EveryLogStepOverEveryRankAveragesToTheEpoch) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Two ranks: 4 steps an epoch, 12 in all, a line each (train.log_every 1).
  const auto r = run_resnet("train " + config("run"), ranks(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto steps = lines("run");
  ASSERT_EQ(steps.size(), 12u);
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(json_number(steps[i], "step"), static_cast<double>(i + 1)) << steps[i];
    EXPECT_EQ(json_number(steps[i], "epoch"), static_cast<double>(i / 4 + 1)) << steps[i];
    const double top1 = json_number(steps[i], "train_top1");
    EXPECT_GE(top1, 0.0);
    EXPECT_LE(top1, 1.0);
    EXPECT_GT(json_number(steps[i], "lr"), 0.0);
    EXPECT_GT(json_number(steps[i], "img_per_s"), 0.0);
  }
  // Each step takes 2 x 32 samples: an epoch's figures are the mean of its four lines.
  const auto epochs = metrics("run");
  for (int e = 1; e <= 3; ++e) {
    double loss = 0, top1 = 0;
    for (int s = 0; s < 4; ++s) {
      loss += json_number(steps[(e - 1) * 4 + s], "train_loss") / 4;
      top1 += json_number(steps[(e - 1) * 4 + s], "train_top1") / 4;
    }
    EXPECT_NEAR(loss, json_number(epochs.at(e), "train_loss"), 1e-5 * loss) << "epoch " << e;
    EXPECT_NEAR(top1, json_number(epochs.at(e), "train_top1"), 1e-5) << "epoch " << e;
  }
  // A resumed run goes on appending from where it stopped.
  const auto more =
      run_resnet("train " + config("run") + " --set train.epochs=4 --resume auto", ranks(2));
  ASSERT_EQ(more.exit_code, 0) << more.err;
  const auto after = lines("run");
  ASSERT_EQ(after.size(), 16u);
  EXPECT_EQ(json_number(after[12], "step"), 13);
}

}  // namespace
}  // namespace rn::test

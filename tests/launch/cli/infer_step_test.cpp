// `resnet infer` and `resnet step`: what they write, and one clear error line for each bad input
// (no such file, not HDF5, missing dataset, wrong type, shape or channels, labels out of range).
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <fstream>
#include <random>

#include "io/array_file.h"
#include "run_command.h"
#include "tests/scratch_dir.h"

namespace rn::test {
namespace {

namespace fs = std::filesystem;

class InferStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.dir();
    ckpt_ = (dir_ / "init.h5").string();
    const auto r = run_resnet(
        "ckpt init --model resnet20 --in-channels 1 --classes 10 --seed 3 --output " + ckpt_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An input file of `n` random images C x 28 x 28 and, when `labels`, labels 0, 1, 2, ...
  std::string input(const std::string& name, int64_t n, int64_t c = 1, bool labels = true) {
    const std::string p = (dir_ / name).string();
    std::vector<float> x(n * c * 28 * 28);
    std::mt19937 gen(5);
    std::normal_distribution<float> dist;
    for (auto& v : x) v = dist(gen);
    io::ArrayWriter w(p);
    w.write_f32("/images", {n, c, 28, 28}, x.data());
    if (labels) {
      std::vector<int64_t> y(n);
      for (int64_t i = 0; i < n; ++i) y[i] = i % 10;
      w.write_i64("/labels", {n}, y.data());
    }
    return p;
  }
  std::string args(const std::string& cmd, const std::string& in) const {
    return cmd + " --checkpoint " + ckpt_ + " --input " + in + " --output " +
           (dir_ / "out.h5").string() + " --threads 1";
  }
  // `resnet <args>` fails with exactly one error line holding `needle`.
  void expect_error(const std::string& a, const std::string& needle) {
    const auto r = run_resnet(a);
    EXPECT_NE(r.exit_code, 0) << r.out;
    const auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_NE(lines[0].find(needle), std::string::npos) << lines[0];
  }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
  std::string ckpt_;
};

TEST_F(InferStepTest, InferWritesLogitsIndependentOfTheBatching) {
  const std::string in = input("in.h5", 3);
  auto r = run_resnet(args("infer", in) + " --batch 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const io::FloatArray all = io::ArrayReader((dir_ / "out.h5").string()).read_f32("/logits");
  EXPECT_EQ(all.shape, (std::vector<int64_t>{3, 10}));
  r = run_resnet(args("infer", in) + " --batch 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const io::FloatArray split = io::ArrayReader((dir_ / "out.h5").string()).read_f32("/logits");
  ASSERT_EQ(split.values.size(), all.values.size());
  for (size_t i = 0; i < all.values.size(); ++i) {
    ASSERT_TRUE(std::isfinite(all.values[i]));
    EXPECT_NEAR(split.values[i], all.values[i], 1e-5f * (1 + std::fabs(all.values[i])));
  }
}

TEST_F(InferStepTest, StepWithZeroLearningRateKeepsWeightsAndMovesStatistics) {
  const std::string in = input("in.h5", 2);
  const auto r = run_resnet(args("step", in) + " --lr 0 --momentum 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const io::ArrayReader out((dir_ / "out.h5").string());
  const io::ArrayReader init(ckpt_);
  EXPECT_TRUE(out.has("/loss"));
  EXPECT_EQ(out.read_f32("/grad/conv1.weight").shape, (std::vector<int64_t>{16, 1, 3, 3}));
  EXPECT_EQ(out.read_f32("/model/fc.weight").values, init.read_f32("/model/fc.weight").values);
  // Momentum from zero: 0.5 * 0 + gradient.
  EXPECT_EQ(out.read_f32("/optimizer/fc.bias").values, out.read_f32("/grad/fc.bias").values);
  // Training-mode BN moved its running mean away from the initial zeros.
  double moved = 0;
  for (float v : out.read_f32("/model/bn1.running_mean").values) moved += std::fabs(v);
  EXPECT_GT(moved, 0);
}

TEST_F(InferStepTest, BadInputsAreOneClearLine) {
  const std::string good = input("good.h5", 2);
  expect_error(args("infer", (dir_ / "none.h5").string()), "none.h5': no such file");
  std::ofstream(dir_ / "text.h5") << "not hdf5";
  expect_error(args("infer", (dir_ / "text.h5").string()), "text.h5': not an HDF5 file");
  {
    io::ArrayWriter w((dir_ / "empty.h5").string());
    std::vector<float> y{1, 2};
    w.write_f32("/other", {2}, y.data());
  }
  expect_error(args("infer", (dir_ / "empty.h5").string()), "no dataset '/images'");
  expect_error(args("infer", input("rgb.h5", 2, 3)), "has 3 channel(s), the model takes 1");
  {
    io::ArrayWriter w((dir_ / "flat.h5").string());
    std::vector<float> y(28 * 28);
    w.write_f32("/images", {28, 28}, y.data());
  }
  expect_error(args("infer", (dir_ / "flat.h5").string()),
               "'/images' is 28 x 28, expected N x C x H x W");
  {
    // float64 images: the caller converts, the reader does not cast silently.
    const std::string p = (dir_ / "f64.h5").string();
    const hid_t f = H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[4] = {1, 1, 28, 28};
    const hid_t s = H5Screate_simple(4, dims, nullptr);
    const hid_t d =
        H5Dcreate2(f, "images", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<double> v(28 * 28);
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
  }
  expect_error(args("infer", (dir_ / "f64.h5").string()), "'/images' is float64, expected float32");
  expect_error(args("step", input("nolabels.h5", 2, 1, false)), "no dataset '/labels'");
  {
    const std::string p = input("badlabel.h5", 2, 1, false);
    io::ArrayWriter w(p);
    std::vector<float> x(2 * 28 * 28);
    w.write_f32("/images", {2, 1, 28, 28}, x.data());
    std::vector<int64_t> y{3, 10};
    w.write_i64("/labels", {2}, y.data());
  }
  expect_error(args("step", (dir_ / "badlabel.h5").string()),
               "'/labels' [1] is 10, outside [0, 10)");
  {
    io::ArrayWriter w((dir_ / "short.h5").string());
    std::vector<float> x(2 * 28 * 28);
    w.write_f32("/images", {2, 1, 28, 28}, x.data());
    std::vector<int64_t> y{3};
    w.write_i64("/labels", {1}, y.data());
  }
  expect_error(args("step", (dir_ / "short.h5").string()), "expected 2 (one per image)");
  expect_error(args("step", good) + " --lr fast", "--lr must be a number, got 'fast'");
  expect_error("infer --checkpoint " + (dir_ / "nockpt.h5").string() + " --input " + good +
                   " --output " + (dir_ / "o.h5").string(),
               "no such file");
  expect_error("infer --checkpoint " + ckpt_ + " --input " + good + " --output " +
                   (dir_ / "missing_dir" / "o.h5").string(),
               "cannot be created");
}

}  // namespace
}  // namespace rn::test

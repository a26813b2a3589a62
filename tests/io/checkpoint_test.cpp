// HDF5 checkpoint files in one process: a round trip keeps every byte, the byte balance of the
// rank assignment, and each damaged or foreign file gives one clear error naming it.
#include "io/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "tests/scratch_dir.h"

namespace fs = std::filesystem;

namespace rn::io {
namespace {

class CheckpointFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = scratch_.dir(); }
  void TearDown() override { fs::remove_all(dir_); }

  // Weights of 1000 floats, a scalar, an int vector and a text, with known contents.
  std::vector<CheckpointEntry> entries() {
    weights_.resize(1000);
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = 0.001f * i - 0.3f;
    ints_ = {1, -2, 3, 1LL << 40};
    return {
        {"model/conv1.weight",
         {10, 1, 10, 10},
         EntryType::f32,
         [this](void*) -> const void* { return weights_.data(); }},
        {"trainer/lr",
         {},
         EntryType::f64,
         [](void* d) {
           *static_cast<double*>(d) = 0.125;
           return d;
         }},
        {"trainer/ints",
         {2, 2},
         EntryType::i64,
         [this](void*) -> const void* { return ints_.data(); }},
        {"config",
         {5},
         EntryType::text,
         [](void* d) {
           std::memcpy(d, "a: 1\n", 5);
           return d;
         }},
    };
  }
  std::string write(const std::string& name) {
    const std::string p = (dir_ / name).string();
    CheckpointHeader h{.model = "resnet20", .world_size = 1, .epoch = 2, .step = 7};
    write_checkpoint(p, h, entries(), MPI_COMM_NULL);
    return p;
  }
  static std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
  std::vector<float> weights_;
  std::vector<int64_t> ints_;
};

TEST_F(CheckpointFileTest, RoundTripKeepsEveryByte) {
  const std::string p = write("a.h5");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  const CheckpointSummary s = read_checkpoint_summary(p);
  EXPECT_EQ(s.format, kCheckpointFormat);
  EXPECT_EQ(s.header.model, "resnet20");
  EXPECT_EQ(s.header.epoch, 2);
  EXPECT_EQ(s.header.step, 7);
  EXPECT_EQ(s.datasets.size(), 4u);
  auto data = read_checkpoint(p, MPI_COMM_NULL);
  ASSERT_EQ(data.size(), 4u);
  EXPECT_EQ(std::memcmp(data.at("model/conv1.weight").data(), weights_.data(), 4000), 0);
  double lr = 0;
  std::memcpy(&lr, data.at("trainer/lr").data(), 8);
  EXPECT_EQ(lr, 0.125);
  EXPECT_EQ(std::memcmp(data.at("trainer/ints").data(), ints_.data(), 32), 0);
  EXPECT_EQ(std::string(data.at("config").begin(), data.at("config").end()), "a: 1\n");
  EXPECT_TRUE(verify_checkpoint(p).empty());
}

TEST_F(CheckpointFileTest, AssignmentBalancesBytes) {
  const auto owner = assign_by_bytes({100, 10, 60, 50, 1, 1}, 2);
  size_t load[2] = {0, 0};
  const size_t bytes[] = {100, 10, 60, 50, 1, 1};
  for (size_t i = 0; i < owner.size(); ++i) load[owner[i]] += bytes[i];
  EXPECT_EQ(load[0], 111u);  // 100 + 10 + 1; the other rank 60 + 50 + 1
  EXPECT_EQ(load[1], 111u);
  EXPECT_EQ(assign_by_bytes({5, 5, 5}, 4), (std::vector<int>{0, 1, 2}));
}

TEST_F(CheckpointFileTest, FlippedByteNamesTheDatasetAndTheFile) {
  const std::string p = write("a.h5");
  // The weights are the only 4000-byte run of these floats: find them and flip one bit.
  std::string bytes;
  {
    std::ifstream f(p, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(weights_.data()), 64));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 40] ^= 0x04;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  const std::string e = error_of([&] { read_checkpoint(p, MPI_COMM_NULL); });
  EXPECT_NE(e.find("'/model/conv1.weight' fails its checksum"), std::string::npos) << e;
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_EQ(verify_checkpoint(p), std::vector<std::string>{"/model/conv1.weight"});
}

TEST_F(CheckpointFileTest, TruncatedFileIsNamed) {
  const std::string p = write("a.h5");
  fs::resize_file(p, fs::file_size(p) / 2);
  const std::string e = error_of([&] { read_checkpoint_summary(p); });
  EXPECT_NE(e.find("checkpoint '" + p + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(CheckpointFileTest, ForeignFilesAreRefused) {
  const std::string text = (dir_ / "text.h5").string();
  std::ofstream(text) << "not hdf5 at all\n";
  EXPECT_NE(error_of([&] { read_checkpoint_summary(text); }).find("not an HDF5 file"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { read_checkpoint_summary((dir_ / "none.h5").string()); }).find("no such file"),
      std::string::npos);
}

TEST_F(CheckpointFileTest, FailedWriteLeavesTheOldFileAlone) {
  const std::string p = write("a.h5");
  const auto size = fs::file_size(p);
  // A directory where the temporary file must go: the create fails like an unwritable disk.
  fs::create_directories(p + ".tmp");
  const std::string e = error_of(
      [&] { write_checkpoint(p, CheckpointHeader{.model = "other"}, entries(), MPI_COMM_NULL); });
  EXPECT_NE(e.find("cannot create '" + p + ".tmp'"), std::string::npos) << e;
  EXPECT_EQ(fs::file_size(p), size);
  EXPECT_EQ(read_checkpoint_summary(p).header.model, "resnet20");
}

}  // namespace
}  // namespace rn::io

// Tests of the idx reader: plain and gzip files, and each kind of bad file it must refuse.
#include "io/idx_reader.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "io_test_files.h"

namespace rn::io {
namespace {

using testing::expect_error_naming;
using testing::idx_bytes;
using testing::pattern_labels;
using testing::pattern_pixels;
using testing::ScratchDir;
using testing::write_bytes;
using testing::write_gz;

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

TEST(IdxReader, ReadsPlainFile) {
  ScratchDir dir;
  const auto px = pattern_pixels(5, 4, 3);
  write_bytes(dir.file("img"), idx_bytes(kImagesMagic, {5, 4, 3}, px));
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {5}, {3, 0, 7, 1, 2}));
  const ImageSet set = read_idx_images_and_labels(dir.file("img"), dir.file("lab"));
  EXPECT_EQ(set.count, 5);
  EXPECT_EQ(set.channels, 1);
  EXPECT_EQ(set.height, 4);
  EXPECT_EQ(set.width, 3);
  EXPECT_EQ(set.pixels, px);
  EXPECT_EQ(set.labels, (std::vector<int32_t>{3, 0, 7, 1, 2}));
  EXPECT_EQ(set.num_classes, 8);
}

TEST(IdxReader, GzipAndPlainGiveTheSameSet) {
  ScratchDir dir;
  const auto images = idx_bytes(kImagesMagic, {50, 6, 5}, pattern_pixels(50, 6, 5));
  const auto labels = idx_bytes(kLabelsMagic, {50}, pattern_labels(50, 10));
  write_bytes(dir.file("img"), images);
  write_bytes(dir.file("lab"), labels);
  write_gz(dir.file("img.gz"), images);
  write_gz(dir.file("lab.gz"), labels);
  EXPECT_EQ(read_file_maybe_gz(dir.file("img.gz")), images);
  EXPECT_EQ(read_file_maybe_gz(dir.file("img")), images);
  const ImageSet a = read_idx_images_and_labels(dir.file("img"), dir.file("lab"));
  const ImageSet b = read_idx_images_and_labels(dir.file("img.gz"), dir.file("lab.gz"));
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(b.num_classes, 10);
}

TEST(IdxReader, MissingFileIsNamed) {
  ScratchDir dir;
  expect_error_naming([&] { read_file_maybe_gz(dir.file("nothing.gz")); },
                      {dir.file("nothing.gz"), "no such file"});
}

TEST(IdxReader, DirectoryIsNotAFile) {
  ScratchDir dir;
  expect_error_naming([&] { read_file_maybe_gz(dir.path()); }, {dir.path(), "directory"});
}

TEST(IdxReader, TruncatedGzipStreamIsAnError) {
  ScratchDir dir;
  write_gz(dir.file("full.gz"), idx_bytes(kImagesMagic, {200, 8, 8}, pattern_pixels(200, 8, 8)));
  auto gz = read_file_maybe_gz(dir.file("full.gz"));  // sanity: whole file reads
  ASSERT_EQ(gz.size(), 16u + 200 * 64);
  std::ifstream in(dir.file("full.gz"), std::ios::binary);
  std::vector<uint8_t> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  raw.resize(raw.size() / 2);
  write_bytes(dir.file("cut.gz"), raw);
  expect_error_naming([&] { read_file_maybe_gz(dir.file("cut.gz")); },
                      {dir.file("cut.gz"), "gzip"});
}

TEST(IdxReader, TruncatedImagesNameFileAndCounts) {
  ScratchDir dir;
  auto px = pattern_pixels(10, 28, 28);
  px.resize(1000);
  write_gz(dir.file("img.gz"), idx_bytes(kImagesMagic, {10, 28, 28}, px));
  write_gz(dir.file("lab.gz"), idx_bytes(kLabelsMagic, {10}, pattern_labels(10, 10)));
  expect_error_naming(
      [&] { read_idx_images_and_labels(dir.file("img.gz"), dir.file("lab.gz")); },
      {dir.file("img.gz"), "truncated", "10x28x28 = 7840 bytes of pixels, file has 1000"});
}

TEST(IdxReader, TruncatedHeaderIsAnError) {
  ScratchDir dir;
  write_bytes(dir.file("img"), {0, 0, 8, 3, 0, 0});
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {1}, {0}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("img"), "truncated"});
}

TEST(IdxReader, TruncatedLabelsAreAnError) {
  ScratchDir dir;
  write_bytes(dir.file("img"), idx_bytes(kImagesMagic, {4, 2, 2}, pattern_pixels(4, 2, 2)));
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {4}, {1, 2}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("lab"), "truncated", "file has 2"});
}

TEST(IdxReader, WrongMagicNumber) {
  ScratchDir dir;
  // A label file given where the images belong: magic 0x801 instead of 0x803.
  write_bytes(dir.file("img"), idx_bytes(kLabelsMagic, {4}, {1, 2, 3, 4}));
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {4}, {1, 2, 3, 4}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("img"), "magic", "0x00000801", "0x00000803"});
}

TEST(IdxReader, FloatIdxIsRefused) {
  ScratchDir dir;
  write_bytes(dir.file("img"), idx_bytes(kImagesMagic, {1, 1, 1}, {0}));
  write_bytes(dir.file("lab"), idx_bytes(0x00000D01, {1}, {0, 0, 0, 0}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("lab"), "0x00000d01"});
}

TEST(IdxReader, LabelCountMustMatchImageCount) {
  ScratchDir dir;
  write_bytes(dir.file("img"), idx_bytes(kImagesMagic, {5, 2, 2}, pattern_pixels(5, 2, 2)));
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {4}, pattern_labels(4, 3)));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("lab"), dir.file("img"), "4 labels", "5 images"});
}

TEST(IdxReader, TrailingGarbageIsAnError) {
  ScratchDir dir;
  auto px = pattern_pixels(3, 4, 4);
  px.push_back(42);
  px.push_back(43);
  write_gz(dir.file("img.gz"), idx_bytes(kImagesMagic, {3, 4, 4}, px));
  write_gz(dir.file("lab.gz"), idx_bytes(kLabelsMagic, {3}, pattern_labels(3, 2)));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img.gz"), dir.file("lab.gz")); },
                      {dir.file("img.gz"), "2 bytes of trailing data"});
}

TEST(IdxReader, ZeroDimensionIsAnError) {
  ScratchDir dir;
  write_bytes(dir.file("img"), idx_bytes(kImagesMagic, {3, 0, 4}, {}));
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {3}, {0, 1, 2}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("img"), "dimension 1", "is 0"});
}

TEST(IdxReader, HugeDimensionsDoNotOverflow) {
  ScratchDir dir;
  write_bytes(dir.file("img"),
              idx_bytes(kImagesMagic, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1, 2}));
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {1}, {0}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("img"), "truncated"});
}

TEST(IdxReader, EmptyFileIsAnError) {
  ScratchDir dir;
  write_bytes(dir.file("img"), {});
  write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {1}, {0}));
  expect_error_naming([&] { read_idx_images_and_labels(dir.file("img"), dir.file("lab")); },
                      {dir.file("img"), "too short"});
}

}  // namespace
}  // namespace rn::io

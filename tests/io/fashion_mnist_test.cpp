// Tests of the Fashion-MNIST loader on the real files, and of its errors on missing ones.
#include "io/fashion_mnist.h"

#include <gtest/gtest.h>

#include <numeric>

#include "io/idx_reader.h"
#include "io_test_files.h"

namespace rn::io {
namespace {

using testing::expect_error_naming;
using testing::fashion_mnist_root;
using testing::ScratchDir;
using testing::write_bytes;

#define REQUIRE_FASHION_MNIST()                                            \
  if (!testing::have_fashion_mnist())                                      \
  GTEST_SKIP() << "Fashion-MNIST not found under " << fashion_mnist_root() \
               << " (set RN_FASHION_MNIST)"

uint64_t pixel_sum(const ImageSet& s) {
  return std::accumulate(s.pixels.begin(), s.pixels.end(), uint64_t{0});
}

TEST(FashionMnist, TrainSplit) {
  REQUIRE_FASHION_MNIST();
  const ImageSet s = load_fashion_mnist(fashion_mnist_root(), Split::train, 0);
  EXPECT_EQ(s.count, 60000);
  EXPECT_EQ(s.channels, 1);
  EXPECT_EQ(s.height, 28);
  EXPECT_EQ(s.width, 28);
  EXPECT_EQ(s.num_classes, 10);
  ASSERT_EQ(s.pixels.size(), 60000u * 28 * 28);
  ASSERT_EQ(s.labels.size(), 60000u);
  EXPECT_EQ(s.labels[0], 9);
  EXPECT_EQ(s.labels[1], 0);
  EXPECT_EQ(s.labels[3], 3);
  std::vector<int> per_class(10, 0);
  for (int32_t l : s.labels) ++per_class[static_cast<size_t>(l)];
  EXPECT_EQ(per_class, std::vector<int>(10, 6000));
  // Sum of all pixel bytes of the published file, checked independently with Python.
  EXPECT_EQ(pixel_sum(s), 3431114169u);
}

TEST(FashionMnist, TestSplit) {
  REQUIRE_FASHION_MNIST();
  const ImageSet s = load_fashion_mnist(fashion_mnist_root(), Split::test, 0);
  EXPECT_EQ(s.count, 10000);
  EXPECT_EQ(s.height, 28);
  EXPECT_EQ(s.width, 28);
  EXPECT_EQ(s.num_classes, 10);
  EXPECT_EQ(s.labels[0], 9);
  EXPECT_EQ(s.labels[1], 2);
  EXPECT_EQ(pixel_sum(s), 573469082u);
}

TEST(FashionMnist, PlainFilesReadLikeGzip) {
  REQUIRE_FASHION_MNIST();
  ScratchDir dir;
  for (const char* stem : {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    write_bytes(dir.file(stem), read_file_maybe_gz(fashion_mnist_root() + "/" + stem + ".gz"));
  }
  EXPECT_EQ(find_idx_file(dir.path(), "t10k-images-idx3-ubyte"),
            dir.file("t10k-images-idx3-ubyte"));
  const ImageSet plain = load_fashion_mnist(dir.path(), Split::test, 0);
  const ImageSet gz = load_fashion_mnist(fashion_mnist_root(), Split::test, 0);
  EXPECT_EQ(plain.count, gz.count);
  EXPECT_EQ(plain.pixels, gz.pixels);
  EXPECT_EQ(plain.labels, gz.labels);
}

TEST(FashionMnist, LimitKeepsTheFirstSamples) {
  REQUIRE_FASHION_MNIST();
  const ImageSet all = load_fashion_mnist(fashion_mnist_root(), Split::test, 0);
  const ImageSet few = load_fashion_mnist(fashion_mnist_root(), Split::test, 100);
  EXPECT_EQ(few.count, 100);
  ASSERT_EQ(few.pixels.size(), 100u * 784);
  EXPECT_TRUE(std::equal(few.pixels.begin(), few.pixels.end(), all.pixels.begin()));
  EXPECT_TRUE(std::equal(few.labels.begin(), few.labels.end(), all.labels.begin()));
  EXPECT_EQ(few.num_classes, 10);
  // A limit beyond the set keeps everything.
  EXPECT_EQ(load_fashion_mnist(fashion_mnist_root(), Split::test, 20000).count, 10000);
}

TEST(FashionMnist, MissingDirectory) {
  ScratchDir dir;
  const std::string root = dir.file("no-such-dir");
  expect_error_naming([&] { load_fashion_mnist(root, Split::train, 0); },
                      {"data.root '" + root + "': no such directory"});
}

TEST(FashionMnist, MissingFileNamesIt) {
  ScratchDir dir;
  write_bytes(dir.file("train-labels-idx1-ubyte"), {0, 0, 8, 1, 0, 0, 0, 1, 0});
  expect_error_naming([&] { load_fashion_mnist(dir.path(), Split::train, 0); },
                      {dir.file("train-images-idx3-ubyte.gz"), "no such file",
                       dir.file("train-images-idx3-ubyte")});
}

TEST(FashionMnist, NegativeLimitIsAnError) {
  ScratchDir dir;
  expect_error_naming([&] { load_fashion_mnist(dir.path(), Split::test, -1); }, {"-1"});
}

}  // namespace
}  // namespace rn::io

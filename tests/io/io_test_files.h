// Helpers for the io tests: scratch directories, small idx files, and the Fashion-MNIST path.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "io/image_set.h"
#include "io/loader.h"
#include "tests/scratch_dir.h"

namespace rn::io::testing {

// Where the Fashion-MNIST files are; RN_FASHION_MNIST overrides the Debian package's path.
inline std::string fashion_mnist_root() {
  const char* env = std::getenv("RN_FASHION_MNIST");
  return env ? env : "/usr/share/datasets/fashion-mnist";
}

inline bool have_fashion_mnist() {
  return std::filesystem::exists(fashion_mnist_root() + "/t10k-images-idx3-ubyte.gz") &&
         std::filesystem::exists(fashion_mnist_root() + "/train-images-idx3-ubyte.gz");
}

using ScratchDir = rn::test::ScratchDir;

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// An idx file: big-endian magic and dimensions, then `data` as is.
inline std::vector<uint8_t> idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims,
                                      const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// `count` images of h x w whose bytes are a simple pattern, and labels i % classes.
inline std::vector<uint8_t> pattern_pixels(uint32_t count, uint32_t h, uint32_t w) {
  std::vector<uint8_t> px(static_cast<size_t>(count) * h * w);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37 + 11) % 251);
  return px;
}
inline std::vector<uint8_t> pattern_labels(uint32_t count, int classes) {
  std::vector<uint8_t> lb(count);
  for (uint32_t i = 0; i < count; ++i) lb[i] = static_cast<uint8_t>(i % classes);
  return lb;
}

// An in-memory set with random-looking pixels, for sampler and loader tests.
inline ImageSet synthetic_set(int64_t count, int channels, int height, int width, int classes) {
  ImageSet set;
  set.count = count;
  set.channels = channels;
  set.height = height;
  set.width = width;
  set.pixels.resize(static_cast<size_t>(count) * channels * height * width);
  uint64_t x = 12345;
  for (auto& p : set.pixels) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p = static_cast<uint8_t>(x >> 56);
  }
  set.labels.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    set.labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % classes);
  set.num_classes = classes;
  return set;
}

// Runs `f`, expecting rn::Error whose message contains every one of `needles`.
template <typename F>
void expect_error_naming(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected rn::Error";
  } catch (const rn::Error& e) {
    const std::string what = e.what();
    for (const auto& n : needles)
      EXPECT_NE(what.find(n), std::string::npos) << what << "\n  lacks: " << n;
  }
}

// Two runs of the loader gave the same batches: sizes, indices, labels, bad counts, pixels.
inline void expect_same_batches(const std::vector<HostBatch>& a, const std::vector<HostBatch>& b,
                                const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].n, b[i].n) << what << ", batch " << i;
    ASSERT_EQ(a[i].indices, b[i].indices) << what << ", batch " << i;
    ASSERT_EQ(a[i].labels, b[i].labels) << what << ", batch " << i;
    ASSERT_EQ(a[i].bad, b[i].bad) << what << ", batch " << i;
    ASSERT_TRUE(a[i].images == b[i].images) << what << ", batch " << i << ": images differ";
  }
}

}  // namespace rn::io::testing

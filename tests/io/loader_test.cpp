// Tests of the Loader: determinism across worker counts, contents, epochs, skip, errors, speed.
#include "io/loader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "io/fashion_mnist.h"
#include "io_test_files.h"

namespace rn::io {
namespace {

using testing::expect_same_batches;
using testing::synthetic_set;

std::vector<HostBatch> collect(Loader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<HostBatch> out;
  HostBatch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

class LoaderTest : public ::testing::Test {
 protected:
  ImageSet data_ = synthetic_set(1000, 2, 6, 5, 7);
  Normalization norm_ = compute_normalization(data_);
  MemorySet set_{data_, {2, true}, norm_, 99};
  DistributedSampler sampler_{data_.count, 11, true};
  LoaderOptions options(int workers, int prefetch = 4) const {
    LoaderOptions o;
    o.batch_size = 32;
    o.workers = workers;
    o.prefetch = prefetch;
    o.seed = 99;
    return o;
  }
};

TEST_F(LoaderTest, SameBatchesForAnyNumberOfWorkers) {
  Loader l0(set_, sampler_, options(0));
  const auto e0 = collect(l0, 0), e1 = collect(l0, 1);
  for (auto [workers, prefetch] :
       {std::pair{1, 1}, std::pair{1, 4}, std::pair{3, 2}, std::pair{3, 8}}) {
    Loader l(set_, sampler_, options(workers, prefetch));
    const std::string what =
        "workers " + std::to_string(workers) + " prefetch " + std::to_string(prefetch);
    expect_same_batches(collect(l, 0), e0, what);
    expect_same_batches(collect(l, 1), e1, what);
  }
}

TEST_F(LoaderTest, BatchesHoldTheSamplersSamplesTransformed) {
  const LoaderOptions o = options(2);
  Loader loader(set_, sampler_, o);
  const auto batches = collect(loader, 3);
  ASSERT_EQ(static_cast<int64_t>(batches.size()), loader.batches_per_epoch());
  ASSERT_EQ(loader.batches_per_epoch(), 1000 / 32);  // drop_last
  const auto order = sampler_.epoch_indices(3);
  SampleTransform t(data_, {2, true}, norm_, 99);
  std::vector<float> expected(data_.sample_size());
  size_t pos = 0;
  for (const HostBatch& b : batches) {
    ASSERT_EQ(b.n, 32);
    ASSERT_EQ(b.c, 2);
    ASSERT_EQ(b.h, 6);
    ASSERT_EQ(b.w, 5);
    ASSERT_EQ(b.images.size(), 32u * 60);
    for (int i = 0; i < b.n; ++i, ++pos) {
      const int64_t index = order[pos];
      ASSERT_EQ(b.indices[static_cast<size_t>(i)], index);
      ASSERT_EQ(b.labels[static_cast<size_t>(i)], data_.labels[static_cast<size_t>(index)]);
      t.apply(3, index, expected.data());
      ASSERT_TRUE(std::equal(expected.begin(), expected.end(), b.images.begin() + i * 60));
    }
  }
}

TEST_F(LoaderTest, KeepLastPartialBatch) {
  LoaderOptions o = options(2);
  o.drop_last = false;
  Loader loader(set_, sampler_, o);
  EXPECT_EQ(loader.batches_per_epoch(), 32);
  const auto batches = collect(loader, 0);
  ASSERT_EQ(batches.size(), 32u);
  EXPECT_EQ(batches.back().n, 1000 - 31 * 32);
  EXPECT_EQ(batches.back().images.size(), 8u * 60);
}

TEST_F(LoaderTest, NormalisedEpochHasZeroMeanUnitStd) {
  LoaderOptions o = options(2);
  o.drop_last = false;
  const MemorySet plain(data_, {}, norm_, 99);
  Loader loader(plain, sampler_, o);
  double sum[2] = {0, 0}, sq[2] = {0, 0};
  int64_t n = 0;
  for (const HostBatch& b : collect(loader, 0)) {
    for (int i = 0; i < b.n; ++i) {
      for (int k = 0; k < 60; ++k) {
        const double v = b.images[static_cast<size_t>(i * 60 + k)];
        sum[k / 30] += v;
        sq[k / 30] += v * v;
      }
    }
    n += b.n;
  }
  ASSERT_EQ(n, 1000);
  for (int c = 0; c < 2; ++c) {
    const double mean = sum[c] / (n * 30);
    EXPECT_NEAR(mean, 0.0, 1e-4);
    EXPECT_NEAR(std::sqrt(sq[c] / (n * 30) - mean * mean), 1.0, 1e-4);
  }
}

TEST_F(LoaderTest, FlipAndCropChangeImages) {
  auto changed_fraction = [&](AugmentOptions aug) {
    const MemorySet plain(data_, {}, norm_, 99), augmented(data_, aug, norm_, 99);
    Loader a(plain, sampler_, options(1)), b(augmented, sampler_, options(1));
    const auto pa = collect(a, 0), pb = collect(b, 0);
    int changed = 0, total = 0;
    for (size_t i = 0; i < pa.size(); ++i) {
      for (int s = 0; s < pa[i].n; ++s, ++total) {
        changed += !std::equal(pa[i].images.begin() + s * 60, pa[i].images.begin() + (s + 1) * 60,
                               pb[i].images.begin() + s * 60);
      }
    }
    return static_cast<double>(changed) / total;
  };
  const double flipped = changed_fraction({0, true});
  EXPECT_GT(flipped, 0.4);
  EXPECT_LT(flipped, 0.6);
  // Only the centred window (1 in 25 for pad 2) leaves an image unchanged.
  EXPECT_GT(changed_fraction({2, false}), 0.9);
}

TEST_F(LoaderTest, WorkerExceptionComesOutOfNext) {
  for (int workers : {0, 1, 3}) {
    LoaderOptions o = options(workers);
    o.on_batch = [](HostBatch&, int64_t batch) {
      if (batch == 3) throw rn::Error("decoding failed at batch 3");
    };
    Loader loader(set_, sampler_, o);
    loader.start_epoch(0);
    HostBatch b;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(loader.next(b)) << workers;
    try {
      loader.next(b);
      ADD_FAILURE() << "no exception with workers " << workers;
    } catch (const rn::Error& e) {
      EXPECT_STREQ(e.what(), "decoding failed at batch 3");
    }
    // The loader stays usable: the rest of the epoch, then a fresh one.
    int rest = 0;
    while (loader.next(b)) ++rest;
    EXPECT_EQ(rest, loader.batches_per_epoch() - 4);
    loader.start_epoch(1);
    EXPECT_TRUE(loader.next(b));
  }
}

TEST_F(LoaderTest, RestartingAnUnfinishedEpoch) {
  Loader fresh(set_, sampler_, options(0));
  const auto e0 = collect(fresh, 0), e1 = collect(fresh, 1);
  Loader loader(set_, sampler_, options(3, 2));
  HostBatch b;
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next(b));
  ASSERT_TRUE(loader.next(b));
  expect_same_batches(collect(loader, 1), e1, "epoch 1 after half of epoch 0");
  expect_same_batches(collect(loader, 0), e0, "epoch 0 again");
  // Restarts while workers are busy, without reading anything.
  for (int i = 0; i < 20; ++i) loader.start_epoch(i);
  expect_same_batches(collect(loader, 1), e1, "after many restarts");
}

TEST_F(LoaderTest, SkipEqualsDroppingTheFirstBatches) {
  for (int workers : {0, 2}) {
    Loader loader(set_, sampler_, options(workers));
    const auto full = collect(loader, 2);
    for (int64_t k : {0, 1, 5, 30}) {
      loader.start_epoch(2);
      loader.skip(k);
      std::vector<HostBatch> rest;
      HostBatch b;
      while (loader.next(b)) rest.push_back(b);
      expect_same_batches(rest, std::vector<HostBatch>(full.begin() + k, full.end()),
                          "skip " + std::to_string(k));
    }
    loader.start_epoch(2);
    loader.skip(1000);
    HostBatch b;
    EXPECT_FALSE(loader.next(b));
  }
}

TEST_F(LoaderTest, OutputBuffersAreReused) {
  Loader loader(set_, sampler_, options(2));
  loader.start_epoch(0);
  HostBatch b;
  ASSERT_TRUE(loader.next(b));
  const float* images = b.images.data();
  const int32_t* labels = b.labels.data();
  while (loader.next(b)) {
    ASSERT_EQ(b.images.data(), images);
    ASSERT_EQ(b.labels.data(), labels);
  }
}

TEST_F(LoaderTest, RanksGetTheirOwnSlices) {
  std::vector<int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    DistributedSampler s(data_.count, 11, true, rank, 3, false);
    LoaderOptions o = options(1);
    o.drop_last = false;
    Loader loader(set_, s, o);
    for (const HostBatch& b : collect(loader, 0))
      seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  }
  std::sort(seen.begin(), seen.end());
  ASSERT_EQ(seen.size(), 1000u);
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)], i);
}

TEST_F(LoaderTest, MisuseThrows) {
  Loader loader(set_, sampler_, options(1));
  HostBatch b;
  EXPECT_THROW(loader.next(b), rn::Error);
  EXPECT_THROW(Loader(set_, DistributedSampler(999, 0, true), options(1)), rn::Error);
  LoaderOptions bad = options(1);
  bad.batch_size = 0;
  EXPECT_THROW(Loader(set_, sampler_, bad), rn::Error);
}

TEST_F(LoaderTest, DestroyedMidEpoch) {
  Loader loader(set_, sampler_, options(3, 2));
  loader.start_epoch(0);
  HostBatch b;
  ASSERT_TRUE(loader.next(b));
}

// The trainer needs about 2,000 img/s from one loader thread while the CPU trains.
TEST(LoaderThroughput, FashionMnistWithAugmentation) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not found";
  const ImageSet data = load_fashion_mnist(testing::fashion_mnist_root(), Split::test, 0);
  LoaderOptions o;
  o.batch_size = 128;
  o.workers = 1;
  const MemorySet set(data, {4, true}, compute_normalization(data), 0);
  Loader loader(set, DistributedSampler(data.count, 0, true), o);
  HostBatch b;
  int64_t images = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; epoch < 5; ++epoch) {
    loader.start_epoch(epoch);
    while (loader.next(b)) images += b.n;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rate = images / seconds;
  std::printf("[ loader   ] %.0f img/s (Fashion-MNIST, batch 128, crop 4 + flip, 1 worker)\n",
              rate);
  RecordProperty("img_per_s", static_cast<int>(rate));
  EXPECT_GT(rate, 2000.0);
}

}  // namespace
}  // namespace rn::io

// Tests of DistributedSampler: permutations, determinism, and how ranks share an epoch.
#include "io/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "core/check.h"

namespace rn::io {
namespace {

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

TEST(DistributedSampler, ShuffledEpochIsAPermutation) {
  for (int64_t n : {1, 2, 7, 1000, 60000}) {
    DistributedSampler s(n, 42, true);
    auto idx = s.epoch_indices(3);
    ASSERT_EQ(static_cast<int64_t>(idx.size()), n);
    EXPECT_EQ(s.per_rank_size(), n);
    std::sort(idx.begin(), idx.end());
    EXPECT_EQ(idx, iota(n)) << n;
  }
}

TEST(DistributedSampler, ShuffleActuallyShuffles) {
  DistributedSampler s(1000, 42, true);
  const auto idx = s.epoch_indices(0);
  EXPECT_NE(idx, iota(1000));
  // A fair shuffle leaves about one element in place; far more means a broken generator.
  int fixed = 0;
  for (size_t i = 0; i < idx.size(); ++i) fixed += idx[i] == static_cast<int64_t>(i);
  EXPECT_LT(fixed, 10);
}

TEST(DistributedSampler, WithoutShuffleIsIdentity) {
  DistributedSampler s(100, 42, false);
  EXPECT_EQ(s.epoch_indices(0), iota(100));
  EXPECT_EQ(s.epoch_indices(5), iota(100));
}

TEST(DistributedSampler, SameSeedAndEpochGiveSameOrder) {
  DistributedSampler a(5000, 7, true), b(5000, 7, true);
  EXPECT_EQ(a.epoch_indices(4), b.epoch_indices(4));
  EXPECT_EQ(a.epoch_indices(4), a.epoch_indices(4));
}

TEST(DistributedSampler, DifferentEpochOrSeedGiveDifferentOrder) {
  DistributedSampler a(5000, 7, true), b(5000, 8, true);
  EXPECT_NE(a.epoch_indices(0), a.epoch_indices(1));
  EXPECT_NE(a.epoch_indices(1), a.epoch_indices(2));
  EXPECT_NE(a.epoch_indices(0), b.epoch_indices(0));
}

// The order must be the same for every world size: rank r of W sees order[r], order[r+W], ...
TEST(DistributedSampler, OrderIsIndependentOfWorldSize) {
  const int64_t n = 1001;
  const auto order = DistributedSampler(n, 9, true).epoch_indices(2);
  for (int world : {2, 3, 8}) {
    for (int r = 0; r < world; ++r) {
      const auto mine = DistributedSampler(n, 9, true, r, world, false).epoch_indices(2);
      for (size_t k = 0; k < mine.size(); ++k) {
        ASSERT_EQ(mine[k], order[static_cast<size_t>(r) + k * world]) << world << " " << r;
      }
    }
  }
}

TEST(DistributedSampler, EvaluationRanksAreDisjointAndCover) {
  for (int64_t n : {1, 10, 997, 1000}) {
    for (int world : {1, 2, 3, 4, 7}) {
      std::vector<int64_t> all;
      int64_t smallest = n, largest = 0;
      for (int r = 0; r < world; ++r) {
        DistributedSampler s(n, 1, true, r, world, false);
        const auto mine = s.epoch_indices(0);
        EXPECT_EQ(static_cast<int64_t>(mine.size()), s.per_rank_size());
        smallest = std::min<int64_t>(smallest, static_cast<int64_t>(mine.size()));
        largest = std::max<int64_t>(largest, static_cast<int64_t>(mine.size()));
        all.insert(all.end(), mine.begin(), mine.end());
      }
      std::sort(all.begin(), all.end());
      EXPECT_EQ(all, iota(n)) << "n=" << n << " world=" << world;
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

TEST(DistributedSampler, TrainingRanksHaveEqualSizesAndCoverAll) {
  for (int64_t n : {1, 10, 997, 1000}) {
    for (int world : {1, 3, 4, 16}) {
      const int64_t expected = (n + world - 1) / world;
      std::set<int64_t> seen;
      for (int r = 0; r < world; ++r) {
        DistributedSampler s(n, 1, true, r, world, true);
        const auto mine = s.epoch_indices(1);
        EXPECT_EQ(s.per_rank_size(), expected);
        ASSERT_EQ(static_cast<int64_t>(mine.size()), expected);
        for (int64_t i : mine) {
          ASSERT_GE(i, 0);
          ASSERT_LT(i, n);
        }
        seen.insert(mine.begin(), mine.end());
      }
      EXPECT_EQ(static_cast<int64_t>(seen.size()), n) << "n=" << n << " world=" << world;
    }
  }
}

TEST(DistributedSampler, WrapPadsWithTheStartOfTheOrder) {
  // 10 samples on 4 ranks: positions 10 and 11 repeat order[0] and order[1].
  const auto order = DistributedSampler(10, 3, true).epoch_indices(0);
  EXPECT_EQ(DistributedSampler(10, 3, true, 2, 4, true).epoch_indices(0),
            (std::vector<int64_t>{order[2], order[6], order[0]}));
  EXPECT_EQ(DistributedSampler(10, 3, true, 3, 4, true).epoch_indices(0),
            (std::vector<int64_t>{order[3], order[7], order[1]}));
  EXPECT_EQ(DistributedSampler(10, 3, true, 3, 4, false).epoch_indices(0),
            (std::vector<int64_t>{order[3], order[7]}));
}

TEST(DistributedSampler, MoreRanksThanSamples) {
  DistributedSampler eval(2, 0, false, 3, 4, false);
  EXPECT_EQ(eval.per_rank_size(), 0);
  EXPECT_TRUE(eval.epoch_indices(0).empty());
  DistributedSampler train(2, 0, false, 3, 4, true);
  EXPECT_EQ(train.epoch_indices(0), (std::vector<int64_t>{1}));
}

TEST(DistributedSampler, BadArgumentsThrow) {
  EXPECT_THROW(DistributedSampler(10, 0, true, 2, 2), rn::Error);
  EXPECT_THROW(DistributedSampler(10, 0, true, -1, 2), rn::Error);
  EXPECT_THROW(DistributedSampler(10, 0, true, 0, 0), rn::Error);
  EXPECT_THROW(DistributedSampler(-1, 0, true), rn::Error);
}

}  // namespace
}  // namespace rn::io

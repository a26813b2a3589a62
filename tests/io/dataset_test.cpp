// Tests of normalisation statistics and of the per-sample crop / flip / normalise transform.
#include "io/dataset.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "io/fashion_mnist.h"
#include "io_test_files.h"

namespace rn::io {
namespace {

using testing::synthetic_set;

// Straightforward transform to check the fast one against: pad, cut the window, mirror.
std::vector<float> reference_transform(const ImageSet& s, int64_t i, int pad, AugmentDraw d,
                                       const Normalization& norm) {
  const int H = s.height, W = s.width;
  std::vector<float> out(s.sample_size());
  for (int c = 0; c < s.channels; ++c) {
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) {
        const int cx = d.flip ? W - 1 - x : x;    // column in the cropped image
        const int py = y + d.dy, px = cx + d.dx;  // position in the padded image
        const int sy = py - pad, sx = px - pad;
        int v = 0;
        if (sy >= 0 && sy < H && sx >= 0 && sx < W) v = s.sample(i)[(c * H + sy) * W + sx];
        const float m = norm.mean.empty() ? 0.f : norm.mean[static_cast<size_t>(c)];
        const float sd = norm.std.empty() ? 1.f : norm.std[static_cast<size_t>(c)];
        out[static_cast<size_t>((c * H + y) * W + x)] = (v / 255.0f - m) / sd;
      }
    }
  }
  return out;
}

TEST(Normalization, KnownValues) {
  ImageSet s = synthetic_set(4, 2, 1, 2, 2);
  // Channel 0: half 0, half 255 -> mean 0.5, std 0.5. Channel 1: all 51 -> 0.2, 0.
  for (int64_t i = 0; i < 4; ++i) {
    uint8_t* p = s.pixels.data() + i * 4;
    p[0] = 0;
    p[1] = 255;
    p[2] = p[3] = 51;
  }
  const Normalization n = compute_normalization(s);
  ASSERT_EQ(n.mean.size(), 2u);
  EXPECT_NEAR(n.mean[0], 0.5, 1e-6);
  EXPECT_NEAR(n.std[0], 0.5, 1e-6);
  EXPECT_NEAR(n.mean[1], 0.2, 1e-6);
  EXPECT_NEAR(n.std[1], 0.0, 1e-6);
}

TEST(Normalization, FashionMnistTestSplit) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not found";
  const ImageSet s = load_fashion_mnist(testing::fashion_mnist_root(), Split::test, 0);
  const Normalization n = compute_normalization(s);
  // Reference values computed independently in Python from the same file.
  EXPECT_NEAR(n.mean[0], 0.28684928, 1e-6);
  EXPECT_NEAR(n.std[0], 0.35244415, 1e-6);
}

TEST(KeepFirst, TruncatesButKeepsClassCount) {
  ImageSet s = synthetic_set(10, 3, 2, 2, 5);
  const auto pixels = s.pixels;
  keep_first(s, 3);
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.pixels.size(), 3u * 12);
  EXPECT_TRUE(std::equal(s.pixels.begin(), s.pixels.end(), pixels.begin()));
  EXPECT_EQ(s.labels, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(s.num_classes, 5);
  keep_first(s, 0);
  EXPECT_EQ(s.count, 3);
}

TEST(SampleTransform, PlainIsScaledAndNormalised) {
  const ImageSet s = synthetic_set(3, 2, 4, 3, 2);
  const Normalization norm{{0.25f, 0.5f}, {0.5f, 2.0f}};
  SampleTransform t(s, {}, norm, 1);
  std::vector<float> out(s.sample_size());
  t.apply(0, 1, out.data());
  for (size_t k = 0; k < out.size(); ++k) {
    const int c = static_cast<int>(k / 12);
    const float expected = (s.sample(1)[k] / 255.0f - norm.mean[c]) / norm.std[c];
    ASSERT_FLOAT_EQ(out[k], expected) << k;
  }
  SampleTransform raw(s, {}, {}, 1);
  raw.apply(0, 2, out.data());
  EXPECT_FLOAT_EQ(out[5], s.sample(2)[5] / 255.0f);
}

TEST(SampleTransform, MatchesReferenceCropAndFlip) {
  // Non-square, several channels, padding wider than half the image to reach the edges.
  const ImageSet s = synthetic_set(200, 3, 5, 7, 4);
  const Normalization norm{{0.1f, 0.2f, 0.3f}, {0.9f, 1.1f, 0.7f}};
  for (const AugmentOptions aug : {AugmentOptions{2, true}, AugmentOptions{4, false},
                                   AugmentOptions{0, true}, AugmentOptions{1, true}}) {
    SampleTransform t(s, aug, norm, 77);
    std::vector<float> out(s.sample_size());
    for (int64_t epoch : {0, 1}) {
      for (int64_t i = 0; i < s.count; ++i) {
        const AugmentDraw d = t.draw(epoch, i);
        t.apply(epoch, i, out.data());
        const auto ref = reference_transform(s, i, aug.crop_pad, d, norm);
        for (size_t k = 0; k < out.size(); ++k) {
          ASSERT_FLOAT_EQ(out[k], ref[k])
              << "pad " << aug.crop_pad << " sample " << i << " k " << k;
        }
      }
    }
  }
}

TEST(SampleTransform, DrawsCoverTheRangeAndDependOnEpoch) {
  const ImageSet s = synthetic_set(2000, 1, 4, 4, 2);
  SampleTransform t(s, {3, true}, {}, 5);
  std::set<int> dys, dxs;
  int flips = 0, same_next_epoch = 0;
  for (int64_t i = 0; i < s.count; ++i) {
    const AugmentDraw d = t.draw(0, i);
    ASSERT_GE(d.dy, 0);
    ASSERT_LE(d.dy, 6);
    ASSERT_GE(d.dx, 0);
    ASSERT_LE(d.dx, 6);
    dys.insert(d.dy);
    dxs.insert(d.dx);
    flips += d.flip;
    const AugmentDraw again = t.draw(0, i);
    ASSERT_EQ(again.dy, d.dy);
    ASSERT_EQ(again.flip, d.flip);
    const AugmentDraw e1 = t.draw(1, i);
    same_next_epoch += e1.dy == d.dy && e1.dx == d.dx && e1.flip == d.flip;
  }
  EXPECT_EQ(dys.size(), 7u);
  EXPECT_EQ(dxs.size(), 7u);
  EXPECT_GT(flips, 850);
  EXPECT_LT(flips, 1150);
  // Chance agreement is 1/98 per sample, about 20 of 2000.
  EXPECT_LT(same_next_epoch, 60);
}

TEST(SampleTransform, RejectsMismatchedNormalization) {
  const ImageSet s = synthetic_set(2, 3, 2, 2, 2);
  EXPECT_THROW(SampleTransform(s, {}, Normalization{{0.5f}, {0.5f}}, 0), rn::Error);
  EXPECT_THROW(SampleTransform(s, {}, Normalization{{0, 0, 0}, {1, 0, 1}}, 0), rn::Error);
  EXPECT_THROW(SampleTransform(s, {-1, false}, {}, 0), rn::Error);
}

}  // namespace
}  // namespace rn::io

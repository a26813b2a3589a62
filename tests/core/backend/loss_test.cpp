// Softmax cross-entropy: the mean loss with and without label smoothing (PyTorch's definition),
// its gradient against the closed form and finite differences, top-1 / top-5 counts, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"
#include "tests/core/gradient_check.h"

namespace rn {
namespace {

using test::all_close;
using test::gradient_matches;
using test::plain_desc;
using test::random_values;
using test::upload_values;

constexpr int64_t kN = 6, kK = 10;

Tensor labels_tensor(Backend& be, const std::vector<int32_t>& labels) {
  Tensor t = Tensor::zeros(Shape{static_cast<int64_t>(labels.size())}, DType::i32);
  std::copy(labels.begin(), labels.end(), t.data_as<int32_t>());
  return be.upload(t);
}

// Per row: log p_j = z_j - logsumexp(z); loss = (1 - eps) (-log p_y) + eps mean_j(-log p_j),
// averaged over the batch, as torch.nn.functional.cross_entropy(label_smoothing=eps).
double reference_loss(const std::vector<float>& z, const std::vector<int32_t>& y, double eps,
                      std::vector<double>* grad = nullptr) {
  const int64_t n = static_cast<int64_t>(y.size()), k = static_cast<int64_t>(z.size()) / n;
  double total = 0;
  if (grad) grad->assign(z.size(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double lse = 0;
    for (int64_t j = 0; j < k; ++j) lse += std::exp(static_cast<double>(z[i * k + j]));
    lse = std::log(lse);
    double smooth = 0;
    for (int64_t j = 0; j < k; ++j) smooth += (lse - z[i * k + j]) / k;
    total += (1 - eps) * (lse - z[i * k + y[i]]) + eps * smooth;
    if (grad)
      for (int64_t j = 0; j < k; ++j)
        (*grad)[i * k + j] =
            (std::exp(z[i * k + j] - lse) - ((j == y[i] ? 1 - eps : 0) + eps / k)) / n;
  }
  return total / n;
}

class CrossEntropyTest : public ::testing::TestWithParam<float> {
 protected:
  void SetUp() override {
    zv_ = random_values(kN * kK, 81, -3.f, 3.f);
    // Large logits shared by a whole row: the loss must not overflow exp().
    for (int64_t j = 0; j < kK; ++j) zv_[kK + j] += 80.f;
    labels_ = {3, 0, 9, 5, 5, 1};
  }

  LossStats run(const std::vector<float>& z, Tensor* dz) {
    return be_->softmax_cross_entropy(upload_values(*be_, Shape{kN, kK}, z),
                                      labels_tensor(*be_, labels_),
                                      CrossEntropyParams{.label_smoothing = GetParam()}, dz);
  }

  std::unique_ptr<Backend> be_ = test::make_test_backend();
  std::vector<float> zv_;
  std::vector<int32_t> labels_;
};

TEST_P(CrossEntropyTest, LossMatchesPyTorchDefinition) {
  const double expected = reference_loss(zv_, labels_, GetParam());
  EXPECT_NEAR(run(zv_, nullptr).loss, expected, 1e-5 * expected);
  Tensor dz = be_->allocate(plain_desc(Shape{kN, kK}));
  EXPECT_NEAR(run(zv_, &dz).loss, expected, 1e-5 * expected);
}

TEST_P(CrossEntropyTest, GradientMatchesClosedFormAndFiniteDifferences) {
  Tensor dz = be_->allocate(plain_desc(Shape{kN, kK}));
  run(zv_, &dz);
  const std::vector<float> got = dz.to_vector();
  std::vector<double> expected;
  reference_loss(zv_, labels_, GetParam(), &expected);
  EXPECT_TRUE(all_close(got, expected, 1e-6, 1e-5));
  // The gradient of the mean is of order 1 / N: compare relative to that scale.
  EXPECT_TRUE(gradient_matches(
      [&](const std::vector<float>& z) { return std::vector<double>{run(z, nullptr).loss}; }, zv_,
      std::vector<float>{1.f}, got, {.step = 1e-3, .tolerance = 1e-2, .floor = 1.0 / kN}));
}

TEST_P(CrossEntropyTest, GradientRowsSumToZero) {
  // Softmax probabilities and the smoothed target both sum to one.
  Tensor dz = be_->allocate(plain_desc(Shape{kN, kK}));
  run(zv_, &dz);
  const std::vector<float> g = dz.to_vector();
  for (int64_t i = 0; i < kN; ++i) {
    double s = 0;
    for (int64_t j = 0; j < kK; ++j) s += g[i * kK + j];
    EXPECT_NEAR(s, 0.0, 1e-6) << "row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Smoothing, CrossEntropyTest, ::testing::Values(0.f, 0.1f),
                         [](const ::testing::TestParamInfo<float>& info) {
                           return info.param == 0.f ? "none" : "eps0_1";
                         });

class CrossEntropyCountTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = test::make_test_backend();
};

TEST_F(CrossEntropyCountTest, CountsTop1AndTop5) {
  // Row i ranks its label at position rank[i] (0 = largest logit).
  const std::vector<int> rank = {0, 1, 4, 5, 9, 0, 3};
  const int64_t n = static_cast<int64_t>(rank.size());
  std::vector<float> z(n * kK);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = static_cast<int32_t>((3 * i + 1) % kK);
    // Logit of class j: descending with the class's position in a rotated order.
    for (int64_t j = 0; j < kK; ++j) {
      const int64_t pos = (j - labels[i] + rank[i] + kK) % kK;
      z[i * kK + j] = static_cast<float>(kK - pos);
    }
  }
  const LossStats s = be_->softmax_cross_entropy(upload_values(*be_, Shape{n, kK}, z),
                                                 labels_tensor(*be_, labels), {}, nullptr);
  EXPECT_EQ(s.top1, 2);  // ranks 0, 0
  EXPECT_EQ(s.top5, 5);  // ranks 0, 1, 4, 0, 3
}

TEST_F(CrossEntropyCountTest, LabelOutsideTheClassesThrows) {
  Tensor z = upload_values(*be_, Shape{2, kK}, random_values(2 * kK, 1));
  Tensor dz = be_->allocate(plain_desc(Shape{2, kK}));
  EXPECT_THROW(
      be_->softmax_cross_entropy(z, labels_tensor(*be_, {0, static_cast<int32_t>(kK)}), {}, &dz),
      Error);
  EXPECT_THROW(be_->softmax_cross_entropy(z, labels_tensor(*be_, {-1, 0}), {}, &dz), Error);
}

TEST_F(CrossEntropyCountTest, WrongLabelCountOrTypeThrows) {
  Tensor z = upload_values(*be_, Shape{2, kK}, random_values(2 * kK, 1));
  EXPECT_THROW(be_->softmax_cross_entropy(z, labels_tensor(*be_, {0, 1, 2}), {}, nullptr), Error);
  EXPECT_THROW(
      be_->softmax_cross_entropy(z, upload_values(*be_, Shape{2}, {0.f, 1.f}), {}, nullptr), Error);
}

TEST(CrossEntropyParallelTest, LargeBatchMatchesTheReference) {
  // N K above the parallel threshold, on two threads: the loss and counts are reductions.
  auto be = test::make_test_backend(2);
  const int64_t n = 96, k = 1000;
  const std::vector<float> z = random_values(n * k, 3, -4.f, 4.f);
  std::vector<int32_t> labels(n);
  int64_t top1 = 0, top5 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = z.data() + i * k;
    // Every third row labels its arg max, the others a class picked by the row number.
    labels[i] =
        static_cast<int32_t>(i % 3 == 0 ? std::max_element(row, row + k) - row : (7 * i) % k);
    const int64_t greater =
        std::count_if(row, row + k, [&](float v) { return v > row[labels[i]]; });
    top1 += greater == 0;
    top5 += greater < 5;
  }
  Tensor dz = be->allocate(plain_desc(Shape{n, k}));
  const LossStats s =
      be->softmax_cross_entropy(upload_values(*be, Shape{n, k}, z), labels_tensor(*be, labels),
                                CrossEntropyParams{.label_smoothing = 0.1f}, &dz);
  std::vector<double> grad;
  const double expected = reference_loss(z, labels, 0.1, &grad);
  EXPECT_NEAR(s.loss, expected, 1e-5 * expected);
  EXPECT_EQ(s.top1, top1);
  EXPECT_EQ(s.top5, top5);
  EXPECT_GE(top1, n / 3);
  EXPECT_TRUE(all_close(dz.to_vector(), grad, 1e-8, 1e-5));
}

}  // namespace
}  // namespace rn

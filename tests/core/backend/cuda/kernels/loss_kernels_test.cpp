// The softmax cross-entropy body (core/backend/cuda/kernels/loss_kernels.h) run by the grid
// emulator, one block per sample with its block reductions as barrier phases, against the CPU
// backend's loss: 3 classes (fewer than the block's threads), 10 and 1000, label smoothing, the
// gradient, top-1 / top-5 counts, and an out-of-range label flagged instead of read.
#include "core/backend/cuda/kernels/loss_kernels.h"

#include <gtest/gtest.h>

#include "tests/core/backend/cuda/kernels/kernel_test_util.h"
#include "tests/core/gradient_check.h"

namespace rn::cuda::emu {
namespace {

using test::random_values;

struct Emulated {
  LossResult result{};
  std::vector<float> dlogits;
};

Emulated emulate(const std::vector<float>& logits, const std::vector<int32_t>& labels, int64_t k,
                 float eps) {
  const int64_t n = static_cast<int64_t>(labels.size());
  Buffer<float> z("logits", logits), dz("dlogits", n * k, 7.f);
  Buffer<int32_t> y("labels", labels);
  Buffer<LossResult> out("result", 1, LossResult{});
  Grid grid;
  grid.run_with_shared<CrossEntropyShared>("cross_entropy", cross_entropy_launch(n),
                                           [&](const EmulatedThread& th, CrossEntropyShared& sh) {
                                             cross_entropy_body<Checked>(
                                                 th, sh, z.cptr(), y.cptr(), k, eps,
                                                 1.f / static_cast<float>(n), dz.ptr(), out.ptr());
                                           });
  return Emulated{out[0], read(dz)};
}

TEST(CrossEntropyBodyTest, LossGradientAndCountsMatchTheCpu) {
  auto be = make_cpu_backend(1);
  for (int64_t k : {3, 10, 1000})
    for (int64_t n : {1, 7, 33})
      for (float eps : {0.f, 0.1f}) {
        const auto logits = random_values(n * k, static_cast<uint32_t>(k + n), -4.f, 4.f);
        std::vector<int32_t> labels;
        for (int64_t i = 0; i < n; ++i) labels.push_back(static_cast<int32_t>((i * 7 + 1) % k));
        Tensor zt = be->upload(host_tensor(Shape{n, k}, logits));
        Tensor lt = Tensor::zeros(Shape{n}, DType::i32);
        std::copy(labels.begin(), labels.end(), lt.data_as<int32_t>());
        Tensor dzt = be->allocate(zt.desc());
        const LossStats want = be->softmax_cross_entropy(
            zt, be->upload(lt), CrossEntropyParams{.label_smoothing = eps}, &dzt);
        const Emulated got = emulate(logits, labels, k, eps);
        const std::string what =
            std::to_string(n) + " x " + std::to_string(k) + ", eps " + std::to_string(eps);
        EXPECT_EQ(got.result.bad_label, 0) << what;
        EXPECT_NEAR(got.result.loss / n, want.loss, 1e-6 * (1 + want.loss)) << what;
        EXPECT_EQ(static_cast<int64_t>(got.result.top1), want.top1) << what;
        EXPECT_EQ(static_cast<int64_t>(got.result.top5), want.top5) << what;
        EXPECT_TRUE(close(got.dlogits, be->download(dzt).to_vector(), 1e-5f, 1e-8f)) << what;
      }
}

TEST(CrossEntropyBodyTest, ALabelOutsideTheClassesIsFlaggedNotRead) {
  for (int32_t bad : {-1, 10}) {
    const auto logits = random_values(3 * 10, 3);
    const Emulated got = emulate(logits, {1, bad, 2}, 10, 0.f);
    EXPECT_EQ(got.result.bad_label, 1) << bad;
    // The other rows still count; the bad row's gradient is left as it was.
    for (int64_t j = 10; j < 20; ++j) EXPECT_EQ(got.dlogits[j], 7.f);
  }
}

}  // namespace
}  // namespace rn::cuda::emu

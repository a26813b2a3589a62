// The choices the CUDA backend makes from documented library behaviour, tested without a GPU:
// the batch-norm paths tried for each storage type, what each math mode allows, and the grid
// of the column sums.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/batch_norm_moments.h"
#include "core/backend/batch_norm_paths.h"
#include "core/backend/column_sum_plan.h"
#include "core/check.h"

namespace rn {
namespace {

using P = CudaBatchNormPath;

TEST(CudaBatchNormPaths, EveryTypeEndsOnAPathThatNeedsNoUndocumentedSupport) {
  // fp16: the fused NHWC kernel first where ReLU follows, the fp32 copy as the last resort.
  EXPECT_EQ(cuda_batch_norm_paths(DType::f16, true),
            (std::vector<P>{P::fused_relu_persistent, P::persistent, P::spatial, P::f32_copy}));
  EXPECT_EQ(cuda_batch_norm_paths(DType::f16, false),
            (std::vector<P>{P::persistent, P::spatial, P::f32_copy}));
  // fp32 is cuDNN's own type; the fused kernel is not tried for it.
  EXPECT_EQ(cuda_batch_norm_paths(DType::f32, true), (std::vector<P>{P::persistent, P::spatial}));
  EXPECT_EQ(cuda_batch_norm_paths(DType::f32, false), (std::vector<P>{P::persistent, P::spatial}));
  // bf16 never reaches cuDNN's batch norm in its own type: the project's kernels, or cuDNN's
  // fp32 ones on a copy.
  for (bool fuse : {false, true})
    EXPECT_EQ(cuda_batch_norm_paths(DType::bf16, fuse), (std::vector<P>{P::native, P::f32_copy}));
  EXPECT_THROW(cuda_batch_norm_paths(DType::i32, false), Error);
}

TEST(CudaBatchNormPaths, ANamedPathReplacesTheList) {
  for (P p : {P::fused_relu_persistent, P::persistent, P::spatial, P::f32_copy, P::native})
    EXPECT_EQ(cuda_batch_norm_paths(DType::bf16, true, cuda_batch_norm_path_name(p)),
              (std::vector<P>{p}));
  try {
    cuda_batch_norm_paths(DType::f32, false, "fast");
    ADD_FAILURE() << "an unknown path was taken";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "RESNET_CUDA_BATCH_NORM_PATH: unknown batch-norm path 'fast'; one of "
                 "fused_relu_persistent, persistent, spatial, f32_copy, native");
  }
}

TEST(CudaBatchNormPaths, TheFusedPathForcedWithoutAReluIsRefused) {
  // Its reserve space would be the workspace that only a batch norm fused with ReLU has.
  try {
    cuda_batch_norm_paths(DType::f16, false, "fused_relu_persistent");
    ADD_FAILURE() << "the fused path was taken for a batch norm without ReLU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("RESNET_CUDA_BATCH_NORM_PATH: 'fused_relu_persistent' on "
                                         "a batch norm that no ReLU follows"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cuda_batch_norm_paths(DType::f16, true, "fused_relu_persistent"),
            (std::vector<P>{P::fused_relu_persistent}));
  EXPECT_EQ(cuda_batch_norm_paths(DType::f16, false, "persistent"),
            (std::vector<P>{P::persistent}));
}

// cuDNN 9 refuses with CUDNN_STATUS_NOT_SUPPORTED or one of its sub-codes (cudnn_graph.h:
// 3001 GRAPH_PATTERN ... 3014 INVALID_DYNAMIC_SHAPE); each must send the batch norm to its next
// path, and no error of another category may.
TEST(CudaBatchNormPaths, EveryNotSupportedSubCodeIsARefusal) {
  for (int status = 3000; status <= 3014; ++status)
    EXPECT_TRUE(cudnn_status_is_refusal(status)) << status;
  EXPECT_TRUE(cudnn_status_is_refusal(3999));
  for (int status : {0, 1001, 1008, 2000, 2003, 2999, 4000, 4005, 5000, 5003})
    EXPECT_FALSE(cudnn_status_is_refusal(status)) << status;
}

TEST(MathChoice, ExactModeKeepsFp32OffTensorCores) {
  const MathChoice fast = math_choice(DType::f32, MathMode::fast);
  EXPECT_TRUE(fast.tensor_cores);
  EXPECT_TRUE(fast.tf32);
  const MathChoice exact = math_choice(DType::f32, MathMode::exact);
  EXPECT_FALSE(exact.tensor_cores);
  EXPECT_FALSE(exact.tf32);
  // Low-precision storage runs on tensor cores in both modes, never as TF32.
  for (DType t : {DType::bf16, DType::f16})
    for (MathMode m : {MathMode::fast, MathMode::exact}) {
      EXPECT_TRUE(math_choice(t, m).tensor_cores) << dtype_name(t);
      EXPECT_FALSE(math_choice(t, m).tf32) << dtype_name(t);
    }
}

// The column sums' grid (host code, no GPU needed): every row and column in exactly one block.
TEST(CudaColumnSumPlan, CoversEveryRowAndColumnOnce) {
  for (int64_t rows : {1, 7, 255, 256, 257, 6400, 802816, 10000019})
    for (int64_t cols : {1, 31, 40, 64, 2048}) {
      const ColumnSumPlan p = column_sum_plan(rows, cols);
      SCOPED_TRACE(testing::Message() << rows << " x " << cols);
      EXPECT_GE(p.parts, 1);
      EXPECT_LE(p.parts, 1024);
      EXPECT_GE(p.parts * p.rows_per_part, rows);
      EXPECT_LT((p.parts - 1) * p.rows_per_part, rows);
      EXPECT_GE(p.column_tiles * kColumnTile, cols);
      EXPECT_LT((p.column_tiles - 1) * kColumnTile, cols);
    }
}

// The native batch norm's statistics, merged as its kernels merge them: 8 row threads per part
// keep fp32 Welford moments merged in thread order, then the parts merge in fp64, 256 strided
// shares and a tree. A channel whose mean is large beside its spread (1000 +- 0.01) keeps its
// variance, where fp32 sums of x and x^2 lose it entirely.
TEST(BatchNormMoments, MergedPartsKeepTheVarianceOfAChannelFarFromZero) {
  const int64_t rows = 802816;  // 64 x 112 x 112: ResNet-50's first batch norm at batch 64
  std::vector<float> x(rows);
  uint64_t state = 42;
  for (auto& v : x) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = 1000.f + 0.02f * (static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f);
  }
  double mean = 0, m2 = 0;
  for (float v : x) mean += v;
  mean /= rows;
  for (float v : x) m2 += (v - mean) * (v - mean);
  const double var = m2 / rows;  // about 0.02^2 / 12 = 3.3e-5

  const ColumnSumPlan plan = column_sum_plan(rows, 1);
  std::vector<Moments<double>> parts;
  for (int64_t p = 0; p < plan.parts; ++p) {
    const int64_t first = p * plan.rows_per_part, last = std::min(rows, first + plan.rows_per_part);
    Moments<float> block;
    for (int t = 0; t < 8; ++t) {
      Moments<float> thread;
      for (int64_t r = first + t; r < last; r += 8) moments_add(thread, x[r]);
      block = moments_merge(block, thread);
    }
    parts.push_back(Moments<double>{block.n, block.mean, block.m2});
  }
  std::vector<Moments<double>> shares(256);
  for (size_t p = 0; p < parts.size(); ++p)
    shares[p % 256] = moments_merge(shares[p % 256], parts[p]);
  for (size_t s = 128; s > 0; s /= 2)
    for (size_t t = 0; t < s; ++t) shares[t] = moments_merge(shares[t], shares[t + s]);
  const Moments<double>& all = shares[0];
  EXPECT_EQ(all.n, static_cast<double>(rows));
  EXPECT_NEAR(all.mean, mean, 1e-6 * 1000);
  EXPECT_NEAR(all.m2 / all.n, var, 1e-3 * var);

  float s1 = 0, s2 = 0;  // the one-pass fp32 formula, for contrast
  for (float v : x) s1 += v, s2 += v * v;
  const double naive = s2 / rows - (s1 / rows) * (s1 / rows);
  EXPECT_GT(std::abs(naive - var), 10 * var);
}

TEST(BatchNormMoments, MergingWithNothingChangesNothing) {
  Moments<double> a;
  for (double v : {1.0, 2.0, 4.0}) moments_add(a, v);
  const Moments<double> empty;
  for (const Moments<double>& m : {moments_merge(a, empty), moments_merge(empty, a)}) {
    EXPECT_EQ(m.n, 3);
    EXPECT_DOUBLE_EQ(m.mean, 7.0 / 3);
    EXPECT_DOUBLE_EQ(m.m2, (16.0 + 1.0 + 25.0) / 9);
  }
}

}  // namespace
}  // namespace rn

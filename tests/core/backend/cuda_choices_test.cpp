// The choices the CUDA backend makes from documented library behaviour, tested without a GPU:
// the batch-norm paths tried for each storage type, what each math mode allows, and the grid
// of the column sums.
#include <gtest/gtest.h>

#include "core/backend/backend.h"
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
  // bf16 never reaches cuDNN's batch norm in its own type.
  for (bool fuse : {false, true})
    EXPECT_EQ(cuda_batch_norm_paths(DType::bf16, fuse), (std::vector<P>{P::f32_copy}));
  EXPECT_THROW(cuda_batch_norm_paths(DType::i32, false), Error);
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

}  // namespace
}  // namespace rn

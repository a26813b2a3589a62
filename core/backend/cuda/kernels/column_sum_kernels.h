// Bodies of the column sums of a rows x cols matrix (a bias gradient: rows = N*H*W, cols =
// channels), in two deterministic passes on the grid of column_sum_plan. Pass 1: block (x, y)
// sums rows [y * rows_per_part, ...) of 32 columns from x * 32, its 32 x 8 threads reading 32
// neighbouring columns of 8 rows at a time (coalesced), then reduces the 8 row-partials in shared
// memory into partial[y][column]. Pass 2 sums each column's parts in a fixed order, so the result
// does not depend on scheduling.
#pragma once

#include "core/backend/column_sum_plan.h"
#include "core/backend/cuda/kernels/kernel_thread.h"

namespace rn::cuda {

constexpr int kColTile = static_cast<int>(kColumnTile), kRowThreads = 8;

// The pass-1 grid of column_sum_plan: column tiles x row parts, 32 x 8 threads.
inline LaunchShape column_partial_launch(const ColumnSumPlan& plan) {
  return LaunchShape{
      Dim3{static_cast<unsigned>(plan.column_tiles), static_cast<unsigned>(plan.parts)},
      Dim3{static_cast<unsigned>(kColTile), static_cast<unsigned>(kRowThreads)}};
}

// One block's shared memory in pass 1 (padded by a column against bank conflicts).
struct ColumnTile {
  float tile[kRowThreads][kColTile + 1];
};

template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void column_partial_body(const Th& th, ColumnTile& sh, P<const T> dy, P<float> partial,
                                      int64_t rows, int64_t cols, int64_t rows_per_part) {
  const int64_t j = static_cast<int64_t>(th.block_x()) * kColTile + th.thread_x();
  const int64_t first = static_cast<int64_t>(th.block_y()) * rows_per_part;
  const int64_t last = kmin(rows, first + rows_per_part);
  float sum = 0.f;
  if (j < cols)
    for (int64_t r = first + th.thread_y(); r < last; r += kRowThreads)
      sum += to_f(dy[r * cols + j]);
  sh.tile[th.thread_y()][th.thread_x()] = sum;
  th.sync();
  if (th.thread_y() == 0 && j < cols) {
    for (int k = 1; k < kRowThreads; ++k) sum += sh.tile[k][th.thread_x()];
    partial[static_cast<int64_t>(th.block_y()) * cols + j] = sum;
  }
}

template <template <typename> class P, typename Th>
RN_KERNEL_FN void column_final_body(const Th& th, P<const float> partial, P<float> db,
                                    int64_t parts, int64_t cols) {
  for (int64_t j = th.global_x(); j < cols; j += th.stride_x()) {
    float sum = 0.f;
    for (int64_t p = 0; p < parts; ++p) sum += partial[p * cols + j];
    db[j] = sum;
  }
}

}  // namespace rn::cuda

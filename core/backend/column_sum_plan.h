// The grid of the CUDA column sums (a bias gradient: rows = N*H*W, cols = channels): a plain
// function, so that it is tested on machines without a GPU.
#pragma once

#include <algorithm>
#include <cstdint>

namespace rn {

struct ColumnSumPlan {
  int64_t parts = 0;          // row ranges, one block row each
  int64_t rows_per_part = 0;  // rows of each range (the last may have fewer)
  int64_t column_tiles = 0;   // blocks of kColumnTile columns
};

constexpr int64_t kColumnTile = 32;

// About 256 rows per part and at most 1024 parts: enough blocks to fill a GPU on the bias
// gradient of a few channels, and the second pass (each column's parts, in order) stays short.
inline ColumnSumPlan column_sum_plan(int64_t rows, int64_t cols) {
  const int64_t want = std::clamp<int64_t>((rows + 255) / 256, 1, 1024);
  const int64_t rows_per_part = std::max<int64_t>((rows + want - 1) / want, 1);
  return ColumnSumPlan{std::max<int64_t>((rows + rows_per_part - 1) / rows_per_part, 1),
                       rows_per_part, (cols + kColumnTile - 1) / kColumnTile};
}

}  // namespace rn

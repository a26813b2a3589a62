// Body of the layout change between NCHW and NHWC (cuda_backend.cpp's transform): for each image a
// rows x cols matrix becomes cols x rows (NCHW -> NHWC: C x HW into HW x C; NHWC -> NCHW: HW x C
// into C x HW), through a 32 x 32 tile in shared memory so that both the reads and the writes are
// coalesced. Elements move as bits (16 or 32 of them), so one body serves fp32, fp16, bf16 and
// int32 exactly.
#pragma once

#include "core/backend/cuda/kernels/kernel_thread.h"

namespace rn::cuda {

constexpr int kTransposeTile = 32, kTransposeRows = 8;

// Block (x, y, z) moves the tile of columns from 32 x and rows from 32 y of image z; its 32 x 8
// threads take 4 rows each.
inline LaunchShape transpose_launch(int64_t batch, int64_t rows, int64_t cols) {
  auto tiles = [](int64_t n) {
    return static_cast<unsigned>((n + kTransposeTile - 1) / kTransposeTile);
  };
  return LaunchShape{
      Dim3{tiles(cols), tiles(rows), static_cast<unsigned>(batch)},
      Dim3{static_cast<unsigned>(kTransposeTile), static_cast<unsigned>(kTransposeRows)}};
}

// One padding column keeps the column reads of the second phase off a single bank.
template <typename T>
struct TransposeTile {
  T tile[kTransposeTile][kTransposeTile + 1];
};

template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void transpose_body(const Th& th, TransposeTile<T>& sh, P<const T> in, P<T> out,
                                 int64_t rows, int64_t cols) {
  const unsigned tx = th.thread_x(), ty = th.thread_y();
  const int64_t image = static_cast<int64_t>(th.block_z()) * rows * cols;
  const int64_t r0 = static_cast<int64_t>(th.block_y()) * kTransposeTile;
  const int64_t c0 = static_cast<int64_t>(th.block_x()) * kTransposeTile;
  for (int k = ty; k < kTransposeTile; k += kTransposeRows) {
    const int64_t r = r0 + k, c = c0 + tx;
    if (r < rows && c < cols) sh.tile[k][tx] = in[image + r * cols + c];
  }
  th.sync();
  // Thread x now writes along the output's rows (the input's columns): out[c][r].
  for (int k = ty; k < kTransposeTile; k += kTransposeRows) {
    const int64_t c = c0 + k, r = r0 + tx;
    if (c < cols && r < rows) out[image + c * rows + r] = sh.tile[tx][k];
  }
}

}  // namespace rn::cuda

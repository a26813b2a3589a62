// Winograd F(4x4, 3x3) convolution of stride 1 on activations blocked by 8 channels (nChw8c):
// the transforms of Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016),
// around 36 independent matrix products that the caller runs (a batched oneDNN matmul). For the
// processors where oneDNN 2.6 has no Winograd kernel of its own (it has them on AVX-512 only).
//
// A 3x3 convolution computes each 4x4 output tile from a 6x6 input tile as
//   Y = A^T [ sum_c (G g_kc G^T) .* (B^T d_c B) ] A,
// 36 multiplications per tile and channel pair where direct convolution takes 144. With the
// transformed weights U[p] (C x K), the transformed input V[p] (tiles x C) and M[p] = V[p] U[p],
// p one of the 36 points of the 6x6 tile:
//   forward:          V = input(x),   U = weights(w),         y = output(M)
//   backward-data:    the forward of dy with w turned 180 degrees and transposed (pad 2 - pad)
//   backward-weights: dM = output_adjoint(dy), dU[p] = V[p]^T dM[p], dw = weights_adjoint(dU)
#pragma once

#include <omp.h>

#include <cstdint>

namespace rn::cpu::winograd {

constexpr int kPoints = 36;      // of a 6x6 input tile
constexpr int kBlock = 8;        // channels per block of the activations (nChw8c)
constexpr int kProductRows = 6;  // tiles per block of the products' accumulators (multiply)

// f(begin, end, thread) for each thread's contiguous share of [0, count), on `threads` threads;
// with one, in the caller's thread, without a parallel region. The same split for the same
// thread count, so that sums over the shares, added in thread order, give the same bits.
template <typename F>
void for_each_share(int64_t count, int threads, F f) {
  if (threads <= 1) return f(int64_t{0}, count, 0);
#pragma omp parallel num_threads(threads)
  {
    const int i = omp_get_thread_num(), n = omp_get_num_threads();
    f(count * i / n, count * (i + 1) / n, i);
  }
}

// A convolution's sizes; tiles are counted over images, tile rows and tile columns.
struct Geometry {
  int64_t n = 0, c = 0, k = 0;  // batch, input and output channels (multiples of kBlock)
  int64_t h = 0, w = 0;         // input
  int64_t pad = 0;              // zeros on every side, 0 to 2
  int64_t oh = 0, ow = 0;       // output: h + 2 pad - 2
  int64_t th = 0, tw = 0;       // tiles down and across: ceil(oh / 4), ceil(ow / 4)
  int64_t tiles() const { return n * th * tw; }
};

// The geometry of a 3x3 convolution of stride 1; throws rn::Error where it has none.
Geometry geometry(int64_t n, int64_t c, int64_t k, int64_t h, int64_t w, int64_t pad);
// Backward-data's: dy as the input, dx as the output.
Geometry backward_data_geometry(const Geometry& g);

// A run of tiles, [first, first + count), whose transforms fill the first `count` rows of V's
// (or M's) 36 planes of `rows` rows each (rows >= count: a chunk's planes, which the last,
// shorter chunk does not fill).
struct Tiles {
  int64_t first = 0, count = 0, rows = 0;
};
// Every tile of g, in planes of g.tiles() rows.
Tiles all_tiles(const Geometry& g);

// w (K x C x 3 x 3, oihw) into U (36 x C x K); with `rotate`, the weights of backward-data,
// each 3x3 kernel turned 180 degrees and the channels swapped, into U (36 x K x C).
void transform_weights(const float* w, int64_t k, int64_t c, bool rotate, float* u, int threads);
// The adjoint of transform_weights without rotation: dU (36 x C x K) into dw (K x C x 3 x 3).
void transform_weights_adjoint(const float* du, int64_t k, int64_t c, float* dw, int threads);
// The transforms of tiles run in parallel on `threads` threads; with 1, in the caller's thread.
// x (n x c x h x w, nChw8c) into V (36 x rows x C), zeros read outside the image.
void transform_input(const Geometry& g, Tiles t, const float* x, float* v, int threads);
// M (36 x rows x K) into y (n x k x oh x ow, nChw8c), the parts of tiles past the edge dropped.
void transform_output(const Geometry& g, Tiles t, const float* m, float* y, int threads);
// The adjoint of transform_output: dy (n x k x oh x ow, nChw8c) into dM (36 x rows x K).
void transform_output_adjoint(const Geometry& g, Tiles t, const float* dy, float* dm, int threads);

// The 36 products of the first t.count rows of planes of t.rows rows, in the caller's thread (the
// fused passes run them on runs of tiles that stay in cache): M[p] = V[p] U[p], with V (36 x rows
// x C), U (36 x C x K) and M (36 x rows x K); and dU[p] += V[p]^T dM[p] into dU (36 x C x K).
void multiply(const float* v, const float* u, float* m, Tiles t, int64_t c, int64_t k);
void multiply_weights(const float* v, const float* dm, float* du, Tiles t, int64_t c, int64_t k);

}  // namespace rn::cpu::winograd

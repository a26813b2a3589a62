#include "core/backend/cpu/winograd.h"

#include <algorithm>
#include <type_traits>

#include "core/check.h"

namespace rn::cpu::winograd {
namespace {

// Eight channels of one position: one AVX2 register (two SSE ones without AVX).
using v8 = float __attribute__((vector_size(32)));

v8 load(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
void store(float* p, v8 v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// The 36 points of a tile between registers and memory, point p = 6 i + j at p * stride floats:
// unrolled whole, so that every point has its own register or stack slot.
[[gnu::always_inline]] inline void load_points(const float* src, int64_t stride, v8 (&t)[6][6]) {
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i)
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) t[i][j] = load(src + (i * 6 + j) * stride);
}
[[gnu::always_inline]] inline void store_points(const v8 (&t)[6][6], int64_t stride, float* dst) {
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i)
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) store(dst + (i * 6 + j) * stride, t[i][j]);
}

// The one-dimensional transforms, applied down the columns and then along the rows of a tile.
// B^T d (input, 6 -> 6).
template <typename T>
[[gnu::always_inline]] inline void input_1d(const T d[6], T r[6]) {
  r[0] = 4.f * d[0] - 5.f * d[2] + d[4];
  r[1] = d[3] + d[4] - 4.f * (d[1] + d[2]);
  r[2] = 4.f * (d[1] - d[2]) + d[4] - d[3];
  r[3] = 2.f * (d[3] - d[1]) + d[4] - d[2];
  r[4] = 2.f * (d[1] - d[3]) + d[4] - d[2];
  r[5] = 4.f * d[1] - 5.f * d[3] + d[5];
}
// A^T m (output, 6 -> 4).
template <typename T>
[[gnu::always_inline]] inline void output_1d(const T m[6], T o[4]) {
  const T a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
  o[0] = m[0] + a + c;
  o[1] = b + 2.f * d;
  o[2] = a + 4.f * c;
  o[3] = b + 8.f * d + m[5];
}
// A g, the adjoint of output_1d (4 -> 6).
template <typename T>
[[gnu::always_inline]] inline void output_adjoint_1d(const T g[4], T m[6]) {
  const T e = g[0] + g[2], o = g[1] + g[3], e4 = g[0] + 4.f * g[2], o2 = 2.f * g[1] + 8.f * g[3];
  m[0] = g[0];
  m[1] = e + o;
  m[2] = e - o;
  m[3] = e4 + o2;
  m[4] = e4 - o2;
  m[5] = g[3];
}
// G g (weights, 3 -> 6).
template <typename T>
[[gnu::always_inline]] inline void weights_1d(const T g[3], T u[6]) {
  const T s = g[0] + g[2];
  u[0] = g[0] / 4.f;
  u[1] = -(s + g[1]) / 6.f;
  u[2] = -(s - g[1]) / 6.f;
  u[3] = g[0] / 24.f + g[1] / 12.f + g[2] / 6.f;
  u[4] = g[0] / 24.f - g[1] / 12.f + g[2] / 6.f;
  u[5] = g[2];
}
// G^T u, the adjoint of weights_1d (6 -> 3).
template <typename T>
[[gnu::always_inline]] inline void weights_adjoint_1d(const T u[6], T g[3]) {
  const T s12 = u[1] + u[2], s34 = u[3] + u[4];
  g[0] = u[0] / 4.f - s12 / 6.f + s34 / 24.f;
  g[1] = (u[2] - u[1]) / 6.f + (u[3] - u[4]) / 12.f;
  g[2] = (s34 - s12) / 6.f + u[5];
}

// `in` (R x C, row-major) through f down each column and then along each row: `out` (R2 x C2).
// f is a lambda, so that each call inlines.
template <int R, int C, int R2, int C2, typename T, typename F>
[[gnu::always_inline]] inline void both_ways(const T (&in)[R][C], T (&out)[R2][C2], F f) {
  T mid[R2][C];
  for (int j = 0; j < C; ++j) {
    T col[R], res[R2];
    for (int i = 0; i < R; ++i) col[i] = in[i][j];
    f(col, res);
    for (int i = 0; i < R2; ++i) mid[i][j] = res[i];
  }
  for (int i = 0; i < R2; ++i) f(mid[i], out[i]);
}

}  // namespace

Geometry geometry(int64_t n, int64_t c, int64_t k, int64_t h, int64_t w, int64_t pad) {
  RN_CHECK(c % kBlock == 0 && k % kBlock == 0,
           "[winograd] channels must be multiples of " << kBlock << ", got " << c << " -> " << k);
  RN_CHECK(pad >= 0 && pad <= 2, "[winograd] a 3x3 kernel takes a padding of 0 to 2, got " << pad);
  Geometry g;
  g.n = n, g.c = c, g.k = k, g.h = h, g.w = w, g.pad = pad;
  g.oh = h + 2 * pad - 2, g.ow = w + 2 * pad - 2;
  RN_CHECK(n > 0 && g.oh > 0 && g.ow > 0,
           "[winograd] no output for " << n << " images of " << h << " x " << w);
  g.th = (g.oh + 3) / 4, g.tw = (g.ow + 3) / 4;
  return g;
}

Geometry backward_data_geometry(const Geometry& g) {
  return geometry(g.n, g.k, g.c, g.oh, g.ow, 2 - g.pad);
}

Tiles all_tiles(const Geometry& g) {
  return Tiles{0, g.tiles(), g.tiles()};
}

// Eight kernels at a time, one per lane: eight output channels (forward, contiguous in U's rows)
// or eight input channels (rotated, contiguous in U's rows there).
void transform_weights(const float* w, int64_t k, int64_t c, bool rotate, float* u, int threads) {
  const int64_t plane = k * c, rows = rotate ? k : c, cols = rotate ? c : k;
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t col = 0; col < cols; col += kBlock) {
      v8 g[3][3], t[6][6];
      for (int l = 0; l < kBlock; ++l) {
        // Rotated: row r is output channel ko, the lanes input channels; else the converse.
        const float* src = w + (rotate ? r * c + col + l : (col + l) * c + r) * 9;
        for (int a = 0; a < 3; ++a)
          for (int b = 0; b < 3; ++b)
            g[a][b][l] = rotate ? src[(2 - a) * 3 + (2 - b)] : src[a * 3 + b];
      }
      both_ways(g, t, [](auto x, auto y) { weights_1d(x, y); });
      store_points(t, plane, u + r * cols + col);
    }
}

void transform_weights_adjoint(const float* du, int64_t k, int64_t c, float* dw, int threads) {
  const int64_t plane = k * c;
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t ko = 0; ko < k; ko += kBlock) {
      v8 t[6][6], g[3][3];
      const float* src = du + ci * k + ko;
      load_points(src, plane, t);
      both_ways(t, g, [](auto x, auto y) { weights_adjoint_1d(x, y); });
      for (int l = 0; l < kBlock; ++l) {
        float* dst = dw + ((ko + l) * c + ci) * 9;
        for (int a = 0; a < 3; ++a)
          for (int b = 0; b < 3; ++b) dst[a * 3 + b] = g[a][b][l];
      }
    }
}

// Rows [y0, y1), columns [x0, x1) of an image plane (w pixels of kBlock floats a row) into the
// cache: a tile reads a few short rows of each plane, too short for the processor's prefetcher
// to follow, so each tile asks for the rows the tile below it will read and it does not.
// (An output tile asks for the rows it will write, `write`.)
template <bool write = false>
[[gnu::always_inline]] inline void prefetch_rows(const float* img, int64_t y0, int64_t y1,
                                                 int64_t x0, int64_t x1, int64_t w) {
  constexpr int64_t kLine = 64 / sizeof(float);
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t i = (y * w + x0) * kBlock / kLine * kLine; i < (y * w + x1) * kBlock; i += kLine)
      __builtin_prefetch(img + i, write);
}

// The tile transforms go tile by tile with the channel blocks innermost, so that each of the 36
// rows a tile writes (or reads) is one contiguous run of its channels. f(n, ti, tj, row) for
// every tile of t (image n, tile row ti and column tj; `row` its row in V and M), each thread a
// contiguous share (for_each_share: with one thread in the caller's thread, as the fused passes
// call the transforms on short runs of tiles from their own threads).
template <typename F>
void for_each_tile(const Geometry& g, Tiles t, int threads, F f) {
  const int64_t th = g.th, tw = g.tw;
  const auto share = [&](int64_t begin, int64_t end) {
    const int64_t tile = t.first + begin;
    int64_t n = tile / (th * tw), ti = tile / tw % th, tj = tile % tw;
    for (int64_t row = begin; row < end; ++row) {
      f(n, ti, tj, row);
      if (++tj == tw) {
        tj = 0;
        if (++ti == th) ti = 0, ++n;
      }
    }
  };
  for_each_share(t.count, threads, [&](int64_t begin, int64_t end, int) { share(begin, end); });
}

void transform_input(const Geometry& g, Tiles t, const float* x, float* v, int threads) {
  const int64_t blocks = g.c / kBlock, stride = t.rows * g.c, h = g.h, w = g.w, pad = g.pad;
  const int64_t plane = h * w * kBlock, c = g.c;
  for_each_tile(g, t, threads, [=](int64_t n, int64_t ti, int64_t tj, int64_t row) {
    const int64_t y0 = ti * 4 - pad, x0 = tj * 4 - pad;
    const bool inside = y0 >= 0 && y0 + 6 <= h && x0 >= 0 && x0 + 6 <= w;
    float* dst = v + row * c;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const float* img = x + (n * blocks + cb) * plane;
      prefetch_rows(img, y0 + 6, std::min<int64_t>(y0 + 10, h), std::max<int64_t>(x0, 0),
                    std::min<int64_t>(x0 + 6, w), w);
      v8 d[6][6], r[6][6];
      if (inside) {
        const float* at = img + (y0 * w + x0) * kBlock;
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i)
#pragma GCC unroll 6
          for (int j = 0; j < 6; ++j) d[i][j] = load(at + (i * w + j) * kBlock);
      } else {  // zeros, then the part of the tile inside the image
        const int64_t i0 = std::max<int64_t>(0, -y0), i1 = std::min<int64_t>(6, h - y0);
        const int64_t j0 = std::max<int64_t>(0, -x0), j1 = std::min<int64_t>(6, w - x0);
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i)
#pragma GCC unroll 6
          for (int j = 0; j < 6; ++j) d[i][j] = v8{};
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) d[i][j] = load(img + ((y0 + i) * w + x0 + j) * kBlock);
      }
      both_ways(d, r, [](auto a, auto b) { input_1d(a, b); });
      store_points(r, stride, dst + cb * kBlock);
    }
  });
}

void transform_output(const Geometry& g, Tiles t, const float* m, float* y, int threads) {
  const int64_t blocks = g.k / kBlock, stride = t.rows * g.k, oh = g.oh, ow = g.ow;
  const int64_t plane = oh * ow * kBlock, k = g.k;
  for_each_tile(g, t, threads, [=](int64_t n, int64_t ti, int64_t tj, int64_t row) {
    const float* src = m + row * k;
    const int64_t rows = std::min<int64_t>(4, oh - ti * 4),
                  cols = std::min<int64_t>(4, ow - tj * 4);
    for (int64_t kb = 0; kb < blocks; ++kb) {
      float* img = y + (n * blocks + kb) * plane;
      prefetch_rows<true>(img, ti * 4 + 4, std::min(ti * 4 + 8, oh), tj * 4,
                          std::min(tj * 4 + 4, ow), ow);
      float* at = img + (ti * 4 * ow + tj * 4) * kBlock;
      v8 t[6][6], o[4][4];
      load_points(src + kb * kBlock, stride, t);
      both_ways(t, o, [](auto a, auto b) { output_1d(a, b); });
      if (rows == 4 && cols == 4) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) store(at + (i * ow + j) * kBlock, o[i][j]);
      } else {
        for (int i = 0; i < rows; ++i)
          for (int j = 0; j < cols; ++j) store(at + (i * ow + j) * kBlock, o[i][j]);
      }
    }
  });
}

void transform_output_adjoint(const Geometry& g, Tiles t, const float* dy, float* dm, int threads) {
  const int64_t blocks = g.k / kBlock, stride = t.rows * g.k, oh = g.oh, ow = g.ow;
  const int64_t plane = oh * ow * kBlock, k = g.k;
  for_each_tile(g, t, threads, [=](int64_t n, int64_t ti, int64_t tj, int64_t row) {
    float* dst = dm + row * k;
    const int64_t rows = std::min<int64_t>(4, oh - ti * 4),
                  cols = std::min<int64_t>(4, ow - tj * 4);
    for (int64_t kb = 0; kb < blocks; ++kb) {
      const float* img = dy + (n * blocks + kb) * plane;
      prefetch_rows(img, ti * 4 + 4, std::min(ti * 4 + 8, oh), tj * 4, std::min(tj * 4 + 4, ow),
                    ow);
      const float* at = img + (ti * 4 * ow + tj * 4) * kBlock;
      v8 d[4][4], t[6][6];
      if (rows == 4 && cols == 4) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) d[i][j] = load(at + (i * ow + j) * kBlock);
      } else {
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j)
            d[i][j] = i < rows && j < cols ? load(at + (i * ow + j) * kBlock) : v8{};
      }
      both_ways(d, t, [](auto a, auto b) { output_adjoint_1d(a, b); });
      store_points(t, stride, dst + kb * kBlock);
    }
  });
}

// The products. Each output row block is a set of accumulators that stay in registers while the
// shared dimension runs (R rows of eight-channel vectors, KV vectors across: 12 of AVX2's 16
// registers at R = 6, KV = 2); with -ffp-contract=fast (core/CMakeLists.txt) each step is one
// fused multiply-add of a broadcast element and a vector.
namespace {

constexpr int kRows = kProductRows;  // rows of one block of accumulators

// f(R, first) for the blocks of kRows rows that cover [0, rows), the last one R < kRows rows if
// need be; R an integral constant, so that each block size has its own registers.
template <typename F>
void for_each_row_block(int64_t rows, F f) {
  using std::integral_constant;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) f(integral_constant<int, kRows>{}, r);
  switch (rows - r) {
    case 5:
      return f(integral_constant<int, 5>{}, r);
    case 4:
      return f(integral_constant<int, 4>{}, r);
    case 3:
      return f(integral_constant<int, 3>{}, r);
    case 2:
      return f(integral_constant<int, 2>{}, r);
    case 1:
      return f(integral_constant<int, 1>{}, r);
    default:
      return;
  }
}

// Rows [0, R) of m (stride k), columns [0, 8 KV): m = v (stride c) u (stride k), over c.
template <int R, int KV>
[[gnu::always_inline]] inline void product_block(const float* v, const float* u, float* m,
                                                 int64_t c, int64_t k) {
  v8 acc[R][KV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < KV; ++j) acc[r][j] = v8{};
  for (int64_t i = 0; i < c; ++i) {
    v8 b[KV];
    for (int j = 0; j < KV; ++j) b[j] = load(u + i * k + j * kBlock);
    for (int r = 0; r < R; ++r) {
      const float a = v[r * c + i];
      for (int j = 0; j < KV; ++j) acc[r][j] += a * b[j];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < KV; ++j) store(m + r * k + j * kBlock, acc[r][j]);
}

// Rows [0, R) of du (stride k; input channels, v's columns), columns [0, 8 KV): du += v^T dm over
// the `count` tiles (v's rows, stride c; dm's rows, stride k).
template <int R, int KV>
[[gnu::always_inline]] inline void weights_block(const float* v, const float* dm, float* du,
                                                 int64_t count, int64_t c, int64_t k) {
  v8 acc[R][KV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < KV; ++j) acc[r][j] = load(du + r * k + j * kBlock);
  for (int64_t t = 0; t < count; ++t) {
    v8 b[KV];
    for (int j = 0; j < KV; ++j) b[j] = load(dm + t * k + j * kBlock);
    for (int r = 0; r < R; ++r) {
      const float a = v[t * c + r];
      for (int j = 0; j < KV; ++j) acc[r][j] += a * b[j];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < KV; ++j) store(du + r * k + j * kBlock, acc[r][j]);
}

}  // namespace

void multiply(const float* v, const float* u, float* m, Tiles t, int64_t c, int64_t k) {
  for (int p = 0; p < kPoints; ++p) {
    const float* vp = v + p * t.rows * c;
    const float* up = u + p * c * k;
    float* mp = m + p * t.rows * k;
    // Columns 16 at a time (8 at the end if k is odd in blocks), rows in blocks.
    for (int64_t j = 0; j < k; j += 2 * kBlock) {
      for_each_row_block(t.count, [&](auto rows, int64_t r) {
        if (j + 2 * kBlock <= k)
          product_block<decltype(rows)::value, 2>(vp + r * c, up + j, mp + r * k + j, c, k);
        else
          product_block<decltype(rows)::value, 1>(vp + r * c, up + j, mp + r * k + j, c, k);
      });
    }
  }
}

void multiply_weights(const float* v, const float* dm, float* du, Tiles t, int64_t c, int64_t k) {
  for (int p = 0; p < kPoints; ++p) {
    const float* vp = v + p * t.rows * c;
    const float* dmp = dm + p * t.rows * k;
    float* dup = du + p * c * k;
    for (int64_t j = 0; j < k; j += 2 * kBlock) {
      for_each_row_block(c, [&](auto rows, int64_t r) {
        if (j + 2 * kBlock <= k)
          weights_block<decltype(rows)::value, 2>(vp + r, dmp + j, dup + r * k + j, t.count, c, k);
        else
          weights_block<decltype(rows)::value, 1>(vp + r, dmp + j, dup + r * k + j, t.count, c, k);
      });
    }
  }
}

}  // namespace rn::cpu::winograd

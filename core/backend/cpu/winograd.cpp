#include "core/backend/cpu/winograd.h"

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
      float* dst = u + r * cols + col;
      for (int p = 0; p < kPoints; ++p) store(dst + p * plane, t[p / 6][p % 6]);
    }
}

void transform_weights_adjoint(const float* du, int64_t k, int64_t c, float* dw, int threads) {
  const int64_t plane = k * c;
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t ko = 0; ko < k; ko += kBlock) {
      v8 t[6][6], g[3][3];
      const float* src = du + ci * k + ko;
      for (int p = 0; p < kPoints; ++p) t[p / 6][p % 6] = load(src + p * plane);
      both_ways(t, g, [](auto x, auto y) { weights_adjoint_1d(x, y); });
      for (int l = 0; l < kBlock; ++l) {
        float* dst = dw + ((ko + l) * c + ci) * 9;
        for (int a = 0; a < 3; ++a)
          for (int b = 0; b < 3; ++b) dst[a * 3 + b] = g[a][b][l];
      }
    }
}

// The tile transforms go tile by tile with the channel blocks innermost, so that each of the 36
// rows a tile writes (or reads) is one contiguous run of its channels. f(n, ti, tj, row) for
// every tile of t (image n, tile row ti and column tj; `row` its row in V and M), in parallel.
template <typename F>
void for_each_tile(const Geometry& g, Tiles t, int threads, F f) {
#pragma omp parallel for num_threads(threads)
  for (int64_t row = 0; row < t.count; ++row) {
    const int64_t tile = t.first + row;
    f(tile / (g.th * g.tw), tile / g.tw % g.th, tile % g.tw, row);
  }
}

void transform_input(const Geometry& g, Tiles t, const float* x, float* v, int threads) {
  const int64_t blocks = g.c / kBlock, stride = t.rows * g.c, plane = g.h * g.w * kBlock;
  for_each_tile(g, t, threads, [&](int64_t n, int64_t ti, int64_t tj, int64_t row) {
    const int64_t y0 = ti * 4 - g.pad, x0 = tj * 4 - g.pad;
    const bool inside = y0 >= 0 && y0 + 6 <= g.h && x0 >= 0 && x0 + 6 <= g.w;
    float* dst = v + row * g.c;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const float* img = x + (n * blocks + cb) * plane;
      v8 d[6][6], r[6][6];
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 6; ++j) {
          const int64_t yy = y0 + i, xx = x0 + j;
          d[i][j] = inside || (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w)
                        ? load(img + (yy * g.w + xx) * kBlock)
                        : v8{};
        }
      both_ways(d, r, [](auto a, auto b) { input_1d(a, b); });
      for (int p = 0; p < kPoints; ++p) store(dst + p * stride + cb * kBlock, r[p / 6][p % 6]);
    }
  });
}

void transform_output(const Geometry& g, Tiles t, const float* m, float* y, int threads) {
  const int64_t blocks = g.k / kBlock, stride = t.rows * g.k, plane = g.oh * g.ow * kBlock;
  for_each_tile(g, t, threads, [&](int64_t n, int64_t ti, int64_t tj, int64_t row) {
    const float* src = m + row * g.k;
    for (int64_t kb = 0; kb < blocks; ++kb) {
      float* img = y + (n * blocks + kb) * plane;
      v8 t[6][6], o[4][4];
      for (int p = 0; p < kPoints; ++p) t[p / 6][p % 6] = load(src + p * stride + kb * kBlock);
      both_ways(t, o, [](auto a, auto b) { output_1d(a, b); });
      for (int i = 0; i < 4 && ti * 4 + i < g.oh; ++i)
        for (int j = 0; j < 4 && tj * 4 + j < g.ow; ++j)
          store(img + ((ti * 4 + i) * g.ow + tj * 4 + j) * kBlock, o[i][j]);
    }
  });
}

void transform_output_adjoint(const Geometry& g, Tiles t, const float* dy, float* dm, int threads) {
  const int64_t blocks = g.k / kBlock, stride = t.rows * g.k, plane = g.oh * g.ow * kBlock;
  for_each_tile(g, t, threads, [&](int64_t n, int64_t ti, int64_t tj, int64_t row) {
    float* dst = dm + row * g.k;
    for (int64_t kb = 0; kb < blocks; ++kb) {
      const float* img = dy + (n * blocks + kb) * plane;
      v8 d[4][4], t[6][6];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const int64_t yy = ti * 4 + i, xx = tj * 4 + j;
          d[i][j] = yy < g.oh && xx < g.ow ? load(img + (yy * g.ow + xx) * kBlock) : v8{};
        }
      both_ways(d, t, [](auto a, auto b) { output_adjoint_1d(a, b); });
      for (int p = 0; p < kPoints; ++p) store(dst + p * stride + kb * kBlock, t[p / 6][p % 6]);
    }
  });
}

}  // namespace rn::cpu::winograd

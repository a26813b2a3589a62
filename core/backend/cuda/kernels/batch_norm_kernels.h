// Bodies of the CUDA backend's own batch norm (+ ReLU) on NHWC data (batch_norm_native.cu): an
// N x H x W x C tensor is `rows` x `cols`. The statistics take two deterministic passes: blocks of
// 32 columns x 8 row threads over parts of about 256 rows (column_sum_plan's grid) keep Welford
// moments in fp32, merged in a fixed order, then one block per channel merges its parts in fp64
// (Chan's formula, batch_norm_moments.h). The output and the input gradient are one vectorised
// element-wise pass each. Everything computes in fp32 (fp64 for the per-channel sums) whatever
// the storage type.
#pragma once

#include "core/backend/batch_norm_moments.h"
#include "core/backend/cuda/kernels/column_sum_kernels.h"

namespace rn::cuda {

constexpr int kFinalThreads = 256;

// The per-channel passes: one block of kFinalThreads per channel.
inline LaunchShape per_channel_launch(int64_t cols) {
  return LaunchShape{Dim3{static_cast<unsigned>(cols)}, Dim3{static_cast<unsigned>(kFinalThreads)}};
}
// The element-wise passes over `total` elements, `width` per thread.
inline LaunchShape batch_norm_elementwise_launch(int64_t total, int width) {
  return linear_launch(total / width + 1);
}

// Block-wide tree reduction of one value per thread through shared memory, in a fixed order
// (blockDim.x a power of two); every thread gets the result. `shared` holds blockDim.x values.
template <typename Th, typename T, typename Op>
RN_KERNEL_FN T block_reduce(const Th& th, T v, T* shared, Op op) {
  const unsigned t = th.thread_x();
  shared[t] = v;
  th.sync();
  for (unsigned s = th.block_dim_x() / 2; s > 0; s >>= 1) {
    if (t < s) shared[t] = op(shared[t], shared[t + s]);
    th.sync();
  }
  const T r = shared[0];
  th.sync();
  return r;
}
struct SumOp {
  template <typename T>
  RN_KERNEL_FN T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  RN_KERNEL_FN float operator()(float a, float b) const { return a > b ? a : b; }
};
struct MergeMoments {
  RN_KERNEL_FN Moments<double> operator()(const Moments<double>& a,
                                          const Moments<double>& b) const {
    return moments_merge(a, b);
  }
};

// Forward, pass 1: the moments of each (row part, column), in partial[part][col][n, mean, m2].
struct MomentsTile {
  float tile[3][kRowThreads][kColTile + 1];
};
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void moments_partial_body(const Th& th, MomentsTile& sh, P<const T> x,
                                       P<float> partial, int64_t rows, int64_t cols,
                                       int64_t rows_per_part) {
  const unsigned tx = th.thread_x(), ty = th.thread_y();
  const int64_t j = static_cast<int64_t>(th.block_x()) * kColTile + tx;
  const int64_t first = static_cast<int64_t>(th.block_y()) * rows_per_part;
  const int64_t last = kmin(rows, first + rows_per_part);
  Moments<float> m;
  if (j < cols)
    for (int64_t r = first + ty; r < last; r += kRowThreads) moments_add(m, to_f(x[r * cols + j]));
  sh.tile[0][ty][tx] = m.n;
  sh.tile[1][ty][tx] = m.mean;
  sh.tile[2][ty][tx] = m.m2;
  th.sync();
  if (ty != 0 || j >= cols) return;
  for (int k = 1; k < kRowThreads; ++k)
    m = moments_merge(m, Moments<float>{sh.tile[0][k][tx], sh.tile[1][k][tx], sh.tile[2][k][tx]});
  const int64_t o = (static_cast<int64_t>(th.block_y()) * cols + j) * 3;
  partial[o] = m.n, partial[o + 1] = m.mean, partial[o + 2] = m.m2;
}

// Forward, pass 2: one block per channel merges its parts (each thread a strided share, then a
// tree in shared memory: a fixed order), and writes the batch mean, the biased variance and the
// affine map y = scale * x + shift (affine[c] = scale, affine[cols + c] = shift).
struct MomentsFinalShared {
  Moments<double> m[kFinalThreads];
};
template <template <typename> class P, typename Th>
RN_KERNEL_FN void moments_final_body(const Th& th, MomentsFinalShared& sh, P<const float> partial,
                                     int64_t parts, int64_t cols, P<const float> gamma,
                                     P<const float> beta, P<float> mean, P<float> var,
                                     P<float> affine, float eps) {
  const int64_t j = th.block_x();
  Moments<double> m;
  for (int64_t p = th.thread_x(); p < parts; p += th.block_dim_x()) {
    const int64_t o = (p * cols + j) * 3;
    m = moments_merge(m, Moments<double>{partial[o], partial[o + 1], partial[o + 2]});
  }
  m = block_reduce(th, m, sh.m, MergeMoments{});
  if (th.thread_x() != 0) return;
  const double v = m.n > 0 ? m.m2 / m.n : 0.0;
  const double scale = gamma[j] / ksqrt(v + eps);
  mean[j] = static_cast<float>(m.mean);
  var[j] = static_cast<float>(v);
  affine[j] = static_cast<float>(scale);
  affine[cols + j] = static_cast<float>(beta[j] - m.mean * scale);
}

// Inference: the affine map from given statistics.
template <template <typename> class P, typename Th>
RN_KERNEL_FN void affine_from_stats_body(const Th& th, P<const float> gamma, P<const float> beta,
                                         P<const float> mean, P<const float> var, P<float> affine,
                                         int64_t cols, float eps) {
  for (int64_t j = th.global_x(); j < cols; j += th.stride_x()) {
    const float scale = gamma[j] * krsqrt(var[j] + eps);
    affine[j] = scale;
    affine[cols + j] = beta[j] - mean[j] * scale;
  }
}

// y = scale[c] * x + shift[c] (then ReLU), N elements per thread; the host takes the 16-byte
// width where the channels are a multiple of it (a vector never straddles two rows) and the
// buffers are aligned, else one element at a time.
template <int N, bool kRelu, template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void normalize_body(const Th& th, P<const T> x, P<T> y, P<const float> affine,
                                 int64_t total, int64_t cols) {
  using V = Vec<T, N>;
  const int64_t nv = total / N;
  for (int64_t i = th.global_x(); i < nv; i += th.stride_x()) {
    const V in = load_vec<V>(x, i);
    V out;
    const int64_t c0 = (i * N) % cols;
    RN_UNROLL
    for (int k = 0; k < N; ++k) {
      float o = kfma(to_f(in.v[k]), affine[c0 + k], affine[cols + c0 + k]);
      if (kRelu) o = o > 0.f ? o : 0.f;
      out.v[k] = from_f<T>(o);
    }
    store_vec(y, i, out);
  }
}

// Backward, pass 1: per (row part, column), the sums of g and g * (x - mean), where g is dy
// with the fused ReLU's gradient applied (g = 0 where the forward's scale * x + shift <= 0, the
// forward's own arithmetic); partial[part][col][sum g, sum g (x - mean)].
struct GradTile {
  float tile[2][kRowThreads][kColTile + 1];
};
template <bool kRelu, template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void grad_partial_body(const Th& th, GradTile& sh, P<const T> x, P<const T> dy,
                                    P<const float> mean, P<const float> affine, P<float> partial,
                                    int64_t rows, int64_t cols, int64_t rows_per_part) {
  const unsigned tx = th.thread_x(), ty = th.thread_y();
  const int64_t j = static_cast<int64_t>(th.block_x()) * kColTile + tx;
  const int64_t first = static_cast<int64_t>(th.block_y()) * rows_per_part;
  const int64_t last = kmin(rows, first + rows_per_part);
  float sg = 0.f, sgx = 0.f;
  if (j < cols) {
    const float mu = mean[j];
    const float scale = kRelu ? affine[j] : 0.f, shift = kRelu ? affine[cols + j] : 0.f;
    for (int64_t r = first + ty; r < last; r += kRowThreads) {
      const float xv = to_f(x[r * cols + j]);
      float g = to_f(dy[r * cols + j]);
      if (kRelu && kfma(xv, scale, shift) <= 0.f) g = 0.f;
      sg += g;
      sgx += g * (xv - mu);
    }
  }
  sh.tile[0][ty][tx] = sg;
  sh.tile[1][ty][tx] = sgx;
  th.sync();
  if (ty != 0 || j >= cols) return;
  for (int k = 1; k < kRowThreads; ++k) sg += sh.tile[0][k][tx], sgx += sh.tile[1][k][tx];
  const int64_t o = (static_cast<int64_t>(th.block_y()) * cols + j) * 2;
  partial[o] = sg, partial[o + 1] = sgx;
}

// Backward, pass 2: one block per channel sums its parts in fp64 (a fixed order) into
// dbeta = sum g and dgamma = sum g * x^, and the coefficients of
// dx = gamma inv_std (g - dbeta / n - x^ dgamma / n) = c1 (g - c2 - (x - mean) c3):
// coef[c] = c1, coef[cols + c] = c2, coef[2 cols + c] = c3.
struct GradFinalShared {
  double sums[kFinalThreads];
};
template <template <typename> class P, typename Th>
RN_KERNEL_FN void grad_final_body(const Th& th, GradFinalShared& sh, P<const float> partial,
                                  int64_t parts, int64_t rows, int64_t cols, P<const float> gamma,
                                  P<const float> var, P<float> dgamma, P<float> dbeta,
                                  P<float> coef, float eps) {
  const int64_t j = th.block_x();
  double a = 0, b = 0;
  for (int64_t p = th.thread_x(); p < parts; p += th.block_dim_x())
    a += partial[(p * cols + j) * 2], b += partial[(p * cols + j) * 2 + 1];
  const double sg = block_reduce(th, a, sh.sums, SumOp{});
  const double sgx = block_reduce(th, b, sh.sums, SumOp{});
  if (th.thread_x() != 0) return;
  const double inv = 1.0 / ksqrt(static_cast<double>(var[j]) + eps);
  const double n = static_cast<double>(rows);
  dbeta[j] = static_cast<float>(sg);
  dgamma[j] = static_cast<float>(sgx * inv);
  coef[j] = static_cast<float>(gamma[j] * inv);
  coef[cols + j] = static_cast<float>(sg / n);
  coef[2 * cols + j] = static_cast<float>(sgx * inv * inv / n);
}

// Backward, pass 3: dx = c1 (g - c2 - (x - mean) c3), g masked as in pass 1.
template <int N, bool kRelu, template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void input_grad_body(const Th& th, P<const T> x, P<const T> dy, P<T> dx,
                                  P<const float> mean, P<const float> affine, P<const float> coef,
                                  int64_t total, int64_t cols) {
  using V = Vec<T, N>;
  const int64_t nv = total / N;
  for (int64_t i = th.global_x(); i < nv; i += th.stride_x()) {
    const V xv = load_vec<V>(x, i), gv = load_vec<V>(dy, i);
    V out;
    const int64_t c0 = (i * N) % cols;
    RN_UNROLL
    for (int k = 0; k < N; ++k) {
      const int64_t c = c0 + k;
      const float xf = to_f(xv.v[k]);
      float g = to_f(gv.v[k]);
      if (kRelu && kfma(xf, affine[c], affine[cols + c]) <= 0.f) g = 0.f;
      out.v[k] = from_f<T>(coef[c] * (g - coef[cols + c] - (xf - mean[c]) * coef[2 * cols + c]));
    }
    store_vec(dx, i, out);
  }
}

}  // namespace rn::cuda

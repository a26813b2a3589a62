// Bodies of the optimizer kernels (optimizer.cu): SGD (momentum, Nesterov, weight decay) per
// tensor or many tensors per launch, and LARS with its norms read on the device.
#pragma once

#include "core/backend/cuda/kernels/batch_norm_kernels.h"

namespace rn::cuda {

struct SgdStep {
  float lr, mu, wd;
  bool nesterov;
  RN_KERNEL_FN void operator()(float& w, float g, float& m) const {
    const float d = g + wd * w;
    m = mu * m + d;
    w -= lr * (nesterov ? d + mu * m : m);
  }
};

// N (4: float4 accesses, where every buffer is 16-byte aligned; else 1) elements at a time, then
// the last n % N one by one; the update is bound by memory traffic (three reads, two writes per
// element).
template <int N, template <typename> class P, typename Th>
RN_KERNEL_FN void sgd_body(const Th& th, SgdStep step, P<float> w, P<const float> g, P<float> m,
                           int64_t n) {
  using V = Vec<float, N>;
  const int64_t stride = th.stride_x(), first = th.global_x();
  const int64_t nv = n / N;
  for (int64_t i = first; i < nv; i += stride) {
    V wv = load_vec<V>(w, i), mv = load_vec<V>(m, i);
    const V gv = load_vec<V>(g, i);
    RN_UNROLL
    for (int k = 0; k < N; ++k) step(wv.v[k], gv.v[k], mv.v[k]);
    store_vec(w, i, wv);
    store_vec(m, i, mv);
  }
  for (int64_t i = nv * N + first; i < n; i += stride) step(w[i], g[i], m[i]);
}
inline LaunchShape sgd_launch(int64_t n, int width) {
  return linear_launch(n / width + 1);
}

// Many tensors in one launch, as kernel arguments (64 tensors: 2.6 KB of the 4 KB a launch
// takes on the device): each block updates one chunk of one tensor (multi_tensor_of_block).
template <template <typename> class P>
struct SgdTensorList {
  P<float> w[kMultiTensors];
  P<const float> g[kMultiTensors];
  P<float> m[kMultiTensors];
  int64_t n[kMultiTensors];
  int64_t first_block[kMultiTensors + 1];  // first_block[count] = the grid size
  int count;
};

// Whole float4s (the buffers are 16-byte aligned, checked on the host, and a chunk's start is a
// multiple of 4), then the tensor's last 1-3 elements by the thread whose float4 they start.
template <template <typename> class P, typename Th>
RN_KERNEL_FN void sgd_many_body(const Th& th, SgdStep step, const SgdTensorList<P>& list) {
  using V = Vec<float, 4>;
  const int t = multi_tensor_of_block(list.first_block, list.count, th.block_x());
  const int64_t begin = (static_cast<int64_t>(th.block_x()) - list.first_block[t]) * kMultiChunk;
  const int64_t end = kmin(list.n[t], begin + kMultiChunk);
  const P<float> w = list.w[t];
  const P<const float> g = list.g[t];
  const P<float> m = list.m[t];
  int64_t i = begin + static_cast<int64_t>(th.thread_x()) * 4;
  for (; i + 3 < end; i += static_cast<int64_t>(th.block_dim_x()) * 4) {
    V wv = load_vec<V>(w, i / 4), mv = load_vec<V>(m, i / 4);
    const V gv = load_vec<V>(g, i / 4);
    RN_UNROLL
    for (int k = 0; k < 4; ++k) step(wv.v[k], gv.v[k], mv.v[k]);
    store_vec(w, i / 4, wv);
    store_vec(m, i / 4, mv);
  }
  for (int64_t k = i; k < end; ++k) step(w[k], g[k], m[k]);
}

// LARS: sums of w^2 and g^2 into norms[0], norms[1] (zeroed before): per-block partial sums in a
// fixed tree, then one atomic per block (at most 1024 blocks).
struct NormsShared {
  double sums[kBlock];
};
inline LaunchShape norms_launch(int64_t n) {
  const unsigned grid = grid_for(n, kBlock);
  return LaunchShape{Dim3{grid < 1024 ? grid : 1024}, Dim3{static_cast<unsigned>(kBlock)}};
}
template <template <typename> class P, typename Th>
RN_KERNEL_FN void norms_body(const Th& th, NormsShared& sh, P<const float> w, P<const float> g,
                             int64_t n, P<double> norms) {
  double a = 0, b = 0;
  for (int64_t i = th.global_x(); i < n; i += th.stride_x())
    a += double(w[i]) * w[i], b += double(g[i]) * g[i];
  a = block_reduce(th, a, sh.sums, SumOp{});
  b = block_reduce(th, b, sh.sums, SumOp{});
  if (th.thread_x() == 0) th.atomic_add(&norms[0], a), th.atomic_add(&norms[1], b);
}

template <template <typename> class P, typename Th>
RN_KERNEL_FN void lars_body(const Th& th, P<float> w, P<const float> g, P<float> m, int64_t n,
                            P<const double> norms, float lr, float mu, float wd, float eta) {
  const double wn = ksqrt(norms[0]), gn = ksqrt(norms[1]);
  // A zero weight or gradient norm falls back to the plain learning rate.
  const float trust = (wn > 0 && gn > 0) ? static_cast<float>(eta * wn / (gn + wd * wn)) : 1.f;
  const float rate = lr * trust;
  for (int64_t i = th.global_x(); i < n; i += th.stride_x()) {
    m[i] = mu * m[i] + rate * (g[i] + wd * w[i]);
    w[i] -= m[i];
  }
}

}  // namespace rn::cuda

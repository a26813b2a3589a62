// Bodies of the element-wise kernels (eltwise.cu, channel_affine.cu): maps of up to three
// operands and their ops, dropout, casts (one tensor or many), the finiteness check, the
// option-A shortcut, bias rows, per-channel affine accumulation and the statistics conversions.
// Each is a function of the thread (kernel_thread.h) and its arguments; `P` is the memory space.
// Every body computes in fp32 whatever the storage type (f32, bf16, f16).
#pragma once

#include "core/backend/cuda/kernels/kernel_thread.h"
#include "core/backend/dropout_mask.h"

namespace rn::cuda {

// y = op(a, b, c) over n elements; absent operands (null) read as 0. y may alias an input, so
// nothing is __restrict__. N is the vector width the host chose (vector_width over the pointers:
// 16 bytes where every operand is 16-byte aligned, else 1); the tail that does not fill a
// vector runs element by element.
template <int N, template <typename> class P, typename Th, typename Op, typename T>
RN_KERNEL_FN void map_body(const Th& th, Op op, P<T> y, P<const T> a, P<const T> b, P<const T> c,
                           int64_t n) {
  using V = Vec<T, N>;
  const int64_t nv = n / N;
  const int64_t stride = th.stride_x(), first = th.global_x();
  for (int64_t i = first; i < nv; i += stride) {
    V va{}, vb{}, vc{}, vy;
    if (a) va = load_vec<V>(a, i);
    if (b) vb = load_vec<V>(b, i);
    if (c) vc = load_vec<V>(c, i);
    RN_UNROLL
    for (int j = 0; j < N; ++j)
      vy.v[j] = from_f<T>(op(to_f(va.v[j]), to_f(vb.v[j]), to_f(vc.v[j])));
    store_vec(y, i, vy);
  }
  for (int64_t i = nv * N + first; i < n; i += stride)
    y[i] = from_f<T>(op(a ? to_f(a[i]) : 0.f, b ? to_f(b[i]) : 0.f, c ? to_f(c[i]) : 0.f));
}
// The width map_body runs at: 16-byte vectors where every operand allows them (sub-tensors and
// views may start anywhere), else 1; and its launch.
template <typename T>
int map_width(const void* y, const void* a, const void* b, const void* c) {
  return vector_width<T>(Vec<T>::kN, y, a, b, c);
}
inline LaunchShape map_launch(int64_t n, int width) {
  return linear_launch(n / width + 1);
}

// The ops of map_body: (a, b, c) -> value, in fp32.
struct Relu {
  RN_KERNEL_FN float operator()(float a, float, float) const { return a > 0.f ? a : 0.f; }
};
struct ReluBackward {  // a = y, b = dy
  RN_KERNEL_FN float operator()(float a, float b, float) const { return a > 0.f ? b : 0.f; }
};
struct ReluBackwardAdd {  // a = y, b + c = the incoming gradient
  RN_KERNEL_FN float operator()(float a, float b, float c) const { return a > 0.f ? b + c : 0.f; }
};
struct Add {
  bool relu;
  RN_KERNEL_FN float operator()(float a, float b, float) const {
    const float s = a + b;
    return relu && s < 0.f ? 0.f : s;
  }
};
struct Axpby {  // a = x, b = y
  float alpha, beta;
  RN_KERNEL_FN float operator()(float a, float b, float) const { return alpha * a + beta * b; }
};
struct Constant {
  float value;
  RN_KERNEL_FN float operator()(float, float, float) const { return value; }
};
struct Scale {
  float factor;
  RN_KERNEL_FN float operator()(float a, float, float) const { return a * factor; }
};
struct Sigmoid {
  RN_KERNEL_FN float operator()(float a, float, float) const { return 1.f / (1.f + kexp_fast(-a)); }
};
struct SigmoidBackward {  // a = y, b = dy
  RN_KERNEL_FN float operator()(float a, float b, float) const { return b * a * (1.f - a); }
};
struct Mul {  // a * (alpha * b + beta)
  float alpha, beta;
  RN_KERNEL_FN float operator()(float a, float b, float) const { return a * (alpha * b + beta); }
};

// Inverted dropout over a plain (NCHW) or NHWC tensor, one thread per element in memory order;
// the mask is keyed by the element's NCHW index, as on the CPU.
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void dropout_body(const Th& th, P<const T> x, P<T> y, Dims4 d, bool nhwc, uint64_t key,
                               uint32_t threshold, float keep_scale) {
  const int64_t total = d.numel();
  for (int64_t i = th.global_x(); i < total; i += th.stride_x()) {
    int64_t logical = i;
    if (nhwc) {
      const Coords4 k = nhwc_coords(i, d);
      logical = ((k.n * d.c + k.c) * d.h + k.h) * d.w + k.w;
    }
    y[i] = from_f<T>(dropout_keep(key, logical, threshold) ? to_f(x[i]) * keep_scale : 0.f);
  }
}

template <template <typename> class P, typename Th, typename S, typename D>
RN_KERNEL_FN void cast_body(const Th& th, P<const S> x, P<D> y, int64_t n) {
  for (int64_t i = th.global_x(); i < n; i += th.stride_x()) y[i] = from_f<D>(to_f(x[i]));
}

// Casts between f32 and bf16 / f16, many tensors per launch (2.1 KB of arguments for 64 on the
// device): the master weights into their low-precision copies before a forward, and weight
// gradients from the compute type into f32 after backward. Each block casts one chunk of one
// tensor, coalesced.
template <template <typename> class P, typename S, typename D>
struct CastTensorList {
  P<const S> src[kMultiTensors];
  P<D> dst[kMultiTensors];
  int64_t n[kMultiTensors];
  int64_t first_block[kMultiTensors + 1];  // first_block[count] = the grid size
  int count;
};

template <template <typename> class P, typename Th, typename S, typename D>
RN_KERNEL_FN void cast_many_body(const Th& th, const CastTensorList<P, S, D>& list) {
  const int t = multi_tensor_of_block(list.first_block, list.count, th.block_x());
  const int64_t begin = (static_cast<int64_t>(th.block_x()) - list.first_block[t]) * kMultiChunk;
  const int64_t end = kmin(list.n[t], begin + kMultiChunk);
  const P<const S> x = list.src[t];
  const P<D> y = list.dst[t];
  for (int64_t i = begin + th.thread_x(); i < end; i += th.block_dim_x())
    y[i] = from_f<D>(to_f(x[i]));
}

// flag[0] = 1 where some element is not finite (a benign race: every writer stores 1).
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void nonfinite_body(const Th& th, P<const T> x, int64_t n, P<int> flag) {
  for (int64_t i = th.global_x(); i < n; i += th.stride_x())
    if (!kisfinite(to_f(x[i]))) flag[0] = 1;
}

// Option-A shortcut. `fwd`: y(n, c, h, w) = x(n, c - before, h * s, w * s) inside x's channels,
// else 0. Backward: dx(n, c, h, w) = dy(n, c + before, h / s, w / s) where h, w are multiples of
// s, else 0. One thread per output element, decoded in the output's memory order so that the
// writes are coalesced; `in` is read through its strides `is` (ic channels).
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void shortcut_body(const Th& th, bool fwd, P<const T> in, P<T> out, Dims4 o,
                                bool out_nhwc, Strides4 is, int64_t ic, int s, int64_t before) {
  const int64_t total = o.numel();
  for (int64_t i = th.global_x(); i < total; i += th.stride_x()) {
    const Coords4 k = out_nhwc ? nhwc_coords(i, o) : nchw_coords(i, o);
    const int64_t n = k.n, c = k.c, h = k.h, w = k.w;
    float v = 0.f;
    if (fwd) {
      const int64_t cx = c - before;
      if (cx >= 0 && cx < ic) v = to_f(in[n * is.n + cx * is.c + h * s * is.h + w * s * is.w]);
    } else {
      const int64_t cy = c + before;
      if (h % s == 0 && w % s == 0 && cy < ic)
        v = to_f(in[n * is.n + cy * is.c + (h / s) * is.h + (w / s) * is.w]);
    }
    out[i] = from_f<T>(v);
  }
}

// y[r][j] += bias[j] over a rows x cols matrix.
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void bias_add_body(const Th& th, P<T> y, P<const float> bias, int64_t rows,
                                int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = th.global_x(); i < total; i += th.stride_x())
    y[i] = from_f<T>(to_f(y[i]) + bias[i % cols]);
}

// y += scale[c] * x + shift[c] (the cross-replica batch norm's gradient correction), one thread
// per element in memory order, so that neighbouring threads touch neighbouring elements
// (coalesced) in NHWC and NCHW alike: both are dense, only where the channel index comes from
// differs (the fastest dimension in NHWC, every H x W elements in NCHW).
template <template <typename> class P, typename Th, typename T>
RN_KERNEL_FN void channel_affine_add_body(const Th& th, P<T> y, P<const T> x, P<const float> scale,
                                          P<const float> shift, int64_t total, int64_t c,
                                          int64_t hw, bool nhwc) {
  for (int64_t i = th.global_x(); i < total; i += th.stride_x()) {
    const int64_t ci = nhwc ? i % c : (i / hw) % c;
    y[i] = from_f<T>(to_f(y[i]) + scale[ci] * to_f(x[i]) + shift[ci]);
  }
}

// var = max(1 / inv^2 - eps, 0): cuDNN saves the inverse standard deviation, the interface
// wants the biased variance; and back for backward.
template <template <typename> class P, typename Th>
RN_KERNEL_FN void inv_std_to_var_body(const Th& th, P<const float> inv, P<float> var, int64_t c,
                                      float eps) {
  for (int64_t i = th.global_x(); i < c; i += th.stride_x()) {
    const float v = 1.f / (inv[i] * inv[i]) - eps;
    var[i] = v > 0.f ? v : 0.f;
  }
}
template <template <typename> class P, typename Th>
RN_KERNEL_FN void var_to_inv_std_body(const Th& th, P<const float> var, P<float> inv, int64_t c,
                                      float eps) {
  for (int64_t i = th.global_x(); i < c; i += th.stride_x()) inv[i] = krsqrt(var[i] + eps);
}

}  // namespace rn::cuda

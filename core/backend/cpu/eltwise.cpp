// Element-wise ops written directly as OpenMP loops over the whole (possibly padded, blocked)
// buffer: every operand shares one layout, and zero padding maps to zero under relu and add.
// Each runs on f32 or bf16 elements (computed in f32), as its operands' dtype says.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/element_types.h"
#include "core/backend/dropout_mask.h"

namespace rn::cpu {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

// Elements in the whole buffer, padding included.
int64_t element_count(const Tensor& t) {
  return static_cast<int64_t>(t.bytes() / dtype_size(t.dtype()));
}

void check_dtype(const char* op, const Tensor& a, const Tensor& b) {
  RN_CHECK(a.dtype() == b.dtype(),
           "[" << op << "] operands differ: " << a.desc().str() << " vs " << b.desc().str());
}

void check_same(const char* op, const Tensor& a, const Tensor& b) {
  RN_CHECK(a.desc().same_layout(b.desc()),
           "[" << op << "] operands differ: " << a.desc().str() << " vs " << b.desc().str());
}

// Strides of a 4-D plain or channel-blocked descriptor (nchw, nhwc, nChw8c, nChw16c): only the
// channel may be blocked, so an element's offset is base(n, c) + h * stride_h + w * stride_w.
class ChannelBlockedIndexer {
 public:
  explicit ChannelBlockedIndexer(const memory::desc& md) {
    const auto& d = md.data;
    RN_CHECK(d.ndims == 4 && d.format_kind == dnnl_blocked, "[eltwise] needs a 4-D blocked layout");
    const auto& b = d.format_desc.blocking;
    RN_CHECK(b.inner_nblks == 0 || (b.inner_nblks == 1 && b.inner_idxs[0] == 1),
             "[eltwise] only the channel dimension may be blocked");
    for (int i = 0; i < 4; ++i) stride_[i] = b.strides[i];
    block_ = b.inner_nblks ? b.inner_blks[0] : 1;
    offset0_ = d.offset0;
  }
  int64_t base(int64_t n, int64_t c) const {
    return offset0_ + n * stride_[0] + (c / block_) * stride_[1] + c % block_;
  }
  int64_t stride_h() const { return stride_[2]; }
  int64_t stride_w() const { return stride_[3]; }

 private:
  int64_t stride_[4], block_ = 1, offset0_ = 0;
};

// Runs f(x_offset, y_offset) for every (n, c, h, w) of y whose channel maps into x.
template <typename F>
void for_each_shortcut_pair(const Tensor& x, const Tensor& y, int stride, int threads, F f) {
  const Shape& xs = x.shape();
  const Shape& ys = y.shape();
  RN_CHECK(xs[0] == ys[0] && ys[1] >= xs[1] && ys[2] == (xs[2] + stride - 1) / stride &&
               ys[3] == (xs[3] + stride - 1) / stride,
           "[shortcut] " << xs.str() << " cannot map to " << ys.str() << " with stride " << stride);
  const ChannelBlockedIndexer xi(md_of(x.desc())), yi(md_of(y.desc()));
  const int64_t before = (ys[1] - xs[1]) / 2;
  const int64_t xh = xi.stride_h() * stride, xw = xi.stride_w() * stride;
  const int64_t yh = yi.stride_h(), yw = yi.stride_w();
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int64_t n = 0; n < ys[0]; ++n)
    for (int64_t c = 0; c < xs[1]; ++c) {
      const int64_t xb = xi.base(n, c), yb = yi.base(n, c + before);
      for (int64_t h = 0; h < ys[2]; ++h)
        for (int64_t w = 0; w < ys[3]; ++w) f(xb + h * xh + w * xw, yb + h * yh + w * yw);
    }
}

// Runs f(offset, logical) for every element of `t`: its buffer offset and its row-major
// N x C x H x W index. Padding is not visited. Tensors other than 4-D ones are plain.
template <typename F>
void for_each_element(const Tensor& t, int threads, F f) {
  const Shape& s = t.shape();
  if (s.rank() != 4 || t.is_plain()) {  // row-major: the offset is the index
    const int64_t n = t.numel();
#pragma omp parallel for num_threads(threads) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) f(i, i);
    return;
  }
  const ChannelBlockedIndexer ix(md_of(t.desc()));
  const int64_t sh = ix.stride_h(), sw = ix.stride_w();
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int64_t n = 0; n < s[0]; ++n)
    for (int64_t c = 0; c < s[1]; ++c) {
      const int64_t base = ix.base(n, c);
      const int64_t first = (n * s[1] + c) * s[2] * s[3];
      for (int64_t h = 0; h < s[2]; ++h)
        for (int64_t w = 0; w < s[3]; ++w) f(base + h * sh + w * sw, first + h * s[3] + w);
    }
}

// v where y > 0, else 0: relu's backward. A mask on v's bits rather than a condition, which the
// compiler would keep as a branch (the sum of relu_backward_add moved under it), unvectorized.
inline float where_positive(float y, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits &= 0u - static_cast<uint32_t>(y > 0.f);
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// A padded layout's padding zeroed (for_each_element writes only the elements).
void clear_padding(Tensor& t) {
  if (t.bytes() > static_cast<size_t>(t.numel()) * dtype_size(t.dtype()))
    std::memset(t.data(), 0, t.bytes());
}

}  // namespace

void CpuBackend::relu_forward(const Tensor& x, Tensor& y) {
  check_same("relu", x, y);
  with_element_type("relu", x, [&](auto tag) {
    using T = decltype(tag);
    const T* a = x.data_as<T>();
    T* o = y.data_as<T>();
    const int64_t n = element_count(x);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(std::max(to_f32(a[i]), 0.f));
  });
}

void CpuBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_same("relu_backward", y, dy);
  check_same("relu_backward", y, dx);
  with_element_type("relu_backward", y, [&](auto tag) {
    using T = decltype(tag);
    const T* out = y.data_as<T>();
    const T* g = dy.data_as<T>();
    T* o = dx.data_as<T>();
    const int64_t n = element_count(y);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i)
      o[i] = from_f32<T>(where_positive(to_f32(out[i]), to_f32(g[i])));
  });
}

void CpuBackend::relu_backward_add(const Tensor& y, const Tensor& a, const Tensor& b, Tensor& dx) {
  check_same("relu_backward_add", y, a);
  check_same("relu_backward_add", y, b);
  check_same("relu_backward_add", y, dx);
  with_element_type("relu_backward_add", y, [&](auto tag) {
    using T = decltype(tag);
    const T* out = y.data_as<T>();
    const T* p = a.data_as<T>();
    const T* q = b.data_as<T>();
    T* o = dx.data_as<T>();
    const int64_t n = element_count(y);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i)
      o[i] = from_f32<T>(where_positive(to_f32(out[i]), to_f32(p[i]) + to_f32(q[i])));
  });
}

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& y, bool relu) {
  check_same("add", a, b);
  check_same("add", a, y);
  with_element_type("add", a, [&](auto tag) {
    using T = decltype(tag);
    const T* p = a.data_as<T>();
    const T* q = b.data_as<T>();
    T* o = y.data_as<T>();
    const int64_t n = element_count(a);
    if (relu) {
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i)
        o[i] = from_f32<T>(std::max(to_f32(p[i]) + to_f32(q[i]), 0.f));
    } else {
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(to_f32(p[i]) + to_f32(q[i]));
    }
  });
}

void CpuBackend::add_inplace(Tensor& y, const Tensor& x) {
  check_same("add_inplace", y, x);
  with_element_type("add_inplace", x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data_as<T>();
    T* o = y.data_as<T>();
    const int64_t n = element_count(x);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(to_f32(o[i]) + to_f32(p[i]));
  });
}

void CpuBackend::axpby(Tensor& y, float a, const Tensor& x, float b) {
  check_same("axpby", y, x);
  with_element_type("axpby", x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data_as<T>();
    T* o = y.data_as<T>();
    const int64_t n = element_count(x);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(a * to_f32(p[i]) + b * to_f32(o[i]));
  });
}

void CpuBackend::sigmoid_forward(const Tensor& x, Tensor& y) {
  check_same("sigmoid", x, y);
  clear_padding(y);
  with_element_type("sigmoid", x, [&](auto tag) {
    using T = decltype(tag);
    const T* a = x.data_as<T>();
    T* o = y.data_as<T>();
    for_each_element(x, threads_, [&](int64_t i, int64_t) {
      o[i] = from_f32<T>(1.f / (1.f + std::exp(-to_f32(a[i]))));
    });
  });
}

void CpuBackend::sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_same("sigmoid_backward", y, dy);
  check_same("sigmoid_backward", y, dx);
  with_element_type("sigmoid_backward", y, [&](auto tag) {
    using T = decltype(tag);
    const T* out = y.data_as<T>();
    const T* g = dy.data_as<T>();
    T* o = dx.data_as<T>();
    const int64_t n = element_count(y);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const float s = to_f32(out[i]);
      o[i] = from_f32<T>(to_f32(g[i]) * s * (1.f - s));
    }
  });
}

void CpuBackend::mul(const Tensor& a, const Tensor& b, Tensor& y, float alpha, float beta) {
  check_same("mul", a, b);
  check_same("mul", a, y);
  with_element_type("mul", a, [&](auto tag) {
    using T = decltype(tag);
    const T* p = a.data_as<T>();
    const T* q = b.data_as<T>();
    T* o = y.data_as<T>();
    const int64_t n = element_count(a);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i)
      o[i] = from_f32<T>(to_f32(p[i]) * (alpha * to_f32(q[i]) + beta));
  });
}

void CpuBackend::scale_to(const Tensor& x, float factor, Tensor& y) {
  check_same("scale_to", x, y);
  with_element_type("scale_to", x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data_as<T>();
    T* o = y.data_as<T>();
    const int64_t n = element_count(x);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(factor * to_f32(p[i]));
  });
}

namespace {

void dropout_map(const char* op, const Tensor& x, float p, uint64_t key, Tensor& y, int threads) {
  check_same(op, x, y);
  RN_CHECK(p >= 0.f && p < 1.f, "[" << op << "] p must be in [0, 1), got " << p);
  const uint32_t threshold = dropout_threshold(p);
  const float keep_scale = 1.f / (1.f - p);
  clear_padding(y);
  with_element_type(op, x, [&](auto tag) {
    using T = decltype(tag);
    const T* a = x.data_as<T>();
    T* o = y.data_as<T>();
    for_each_element(x, threads, [&](int64_t i, int64_t logical) {
      o[i] = from_f32<T>(dropout_keep(key, logical, threshold) ? to_f32(a[i]) * keep_scale : 0.f);
    });
  });
}

}  // namespace

void CpuBackend::dropout_forward(const Tensor& x, float p, uint64_t key, Tensor& y) {
  dropout_map("dropout", x, p, key, y, threads_);
}

void CpuBackend::dropout_backward(const Tensor& dy, float p, uint64_t key, Tensor& dx) {
  dropout_map("dropout_backward", dy, p, key, dx, threads_);
}

void CpuBackend::pad_shortcut_forward(const Tensor& x, int stride, Tensor& y) {
  check_dtype("shortcut", x, y);
  fill(y, 0.f);
  with_element_type("shortcut", x, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    for_each_shortcut_pair(x, y, stride, threads_,
                           [&](int64_t xo, int64_t yo) { yp[yo] = xp[xo]; });
  });
}

void CpuBackend::pad_shortcut_backward(const Tensor& dy, int stride, Tensor& dx) {
  check_dtype("shortcut_backward", dy, dx);
  // Positions skipped by the stride get no gradient.
  fill(dx, 0.f);
  with_element_type("shortcut_backward", dy, [&](auto tag) {
    using T = decltype(tag);
    const T* g = dy.data_as<T>();
    T* o = dx.data_as<T>();
    for_each_shortcut_pair(dx, dy, stride, threads_,
                           [&](int64_t xo, int64_t yo) { o[xo] = g[yo]; });
  });
}

void CpuBackend::channel_affine_add(Tensor& y, const Tensor& x, const Tensor& scale,
                                    const Tensor& shift) {
  check_same("channel_affine_add", y, x);
  const Shape& s = x.shape();
  RN_CHECK(s.rank() == 4 && scale.numel() == s[1] && shift.numel() == s[1],
           "[channel_affine_add] " << s.str() << " with " << scale.numel() << " scales and "
                                   << shift.numel() << " shifts");
  const ChannelBlockedIndexer ix(md_of(x.desc()));
  const float* a = scale.data_as<float>();
  const float* b = shift.data_as<float>();
  const int64_t sh = ix.stride_h(), sw = ix.stride_w();
  with_element_type("channel_affine_add", x, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data_as<T>();
    T* o = y.data_as<T>();
#pragma omp parallel for collapse(2) num_threads(threads_)
    for (int64_t n = 0; n < s[0]; ++n)
      for (int64_t c = 0; c < s[1]; ++c) {
        const int64_t base = ix.base(n, c);
        for (int64_t h = 0; h < s[2]; ++h)
          for (int64_t w = 0; w < s[3]; ++w) {
            const int64_t i = base + h * sh + w * sw;
            o[i] = from_f32<T>(to_f32(o[i]) + a[c] * to_f32(xp[i]) + b[c]);
          }
      }
  });
}

void CpuBackend::fill(Tensor& t, float value) {
  if (value == 0.f) {  // +0 is all-zero bits in f32 and bf16 alike
    std::memset(t.data(), 0, t.bytes());
    return;
  }
  if (t.bytes() > static_cast<size_t>(t.numel()) * dtype_size(t.dtype())) {
    // Padded blocks must stay zero: fill the logical values, then lay them out.
    Tensor plain = Tensor::zeros(t.shape());
    fill(plain, value);
    reorder(plain, t);
    return;
  }
  with_element_type("fill", t, [&](auto tag) {
    using T = decltype(tag);
    T* o = t.data_as<T>();
    const T v = from_f32<T>(value);
    const int64_t n = element_count(t);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  });
}

void CpuBackend::scale(Tensor& t, float factor) {
  with_element_type("scale", t, [&](auto tag) {
    using T = decltype(tag);
    T* o = t.data_as<T>();
    const int64_t n = element_count(t);
#pragma omp parallel for num_threads(threads_) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(to_f32(o[i]) * factor);
  });
}

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  check_same("copy", src, dst);
  std::memcpy(dst.data(), src.data(), src.bytes());
}

bool CpuBackend::all_finite(const Tensor& t) {
  RN_CHECK(t.dtype() == DType::f32, "[all_finite] expects f32, got " << t.desc().str());
  const float* p = t.data_as<float>();
  const int64_t n = element_count(t);
  int64_t bad = 0;
#pragma omp parallel for num_threads(threads_) reduction(+ : bad) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) bad += !std::isfinite(p[i]);
  return bad == 0;
}

void CpuBackend::copy_bytes(const Tensor& src, size_t src_offset, Tensor& dst, size_t dst_offset,
                            size_t bytes) {
  RN_CHECK(src_offset + bytes <= src.bytes() && dst_offset + bytes <= dst.bytes(),
           "[copy_bytes] " << bytes << " bytes out of range");
  std::memcpy(static_cast<char*>(dst.data()) + dst_offset,
              static_cast<const char*>(src.data()) + src_offset, bytes);
}

}  // namespace rn::cpu

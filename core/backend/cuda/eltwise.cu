// Element-wise kernels of the CUDA backend: ReLU and its gradients, sigmoid, products, dropout,
// add, axpby, fill, scale, casts, the finiteness check, the zero-padding shortcut, bias rows and
// batch-norm statistics.
// Every kernel computes in fp32 whatever the storage type (f32, bf16, f16).
#include "core/backend/column_sum_plan.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_util.cuh"
#include "core/backend/dropout_mask.h"

namespace rn::cuda {
namespace {

// y = op(a, b, c) over n elements; absent operands (null) read as 0. y may alias an input, so
// nothing is __restrict__. Buffers come from cudaMalloc (256-byte aligned), so the vector part
// is aligned; the tail that does not fill a vector runs element by element.
template <typename T, typename Op>
__global__ void map_kernel(Op op, T* y, const T* a, const T* b, const T* c, int64_t n) {
  using V = Vec<T>;
  const int64_t nv = n / V::kN;
  const int64_t stride = grid_stride(), first = thread_index();
  for (int64_t i = first; i < nv; i += stride) {
    V va{}, vb{}, vc{}, vy;
    if (a) va = reinterpret_cast<const V*>(a)[i];
    if (b) vb = reinterpret_cast<const V*>(b)[i];
    if (c) vc = reinterpret_cast<const V*>(c)[i];
#pragma unroll
    for (int j = 0; j < V::kN; ++j)
      vy.v[j] = from_f<T>(op(to_f(va.v[j]), to_f(vb.v[j]), to_f(vc.v[j])));
    reinterpret_cast<V*>(y)[i] = vy;
  }
  for (int64_t i = nv * V::kN + first; i < n; i += stride)
    y[i] = from_f<T>(op(a ? to_f(a[i]) : 0.f, b ? to_f(b[i]) : 0.f, c ? to_f(c[i]) : 0.f));
}

template <typename Op>
void map_eltwise(const char* name, Op op, Tensor& y, const Tensor* a, const Tensor* b,
                 const Tensor* c, cudaStream_t s) {
  for (const Tensor* t : {a, b, c})
    RN_CHECK(!t || t->desc().same_layout(y.desc()),
             "[" << name << "] operands differ: " << t->desc().str() << " vs " << y.desc().str());
  const int64_t n = y.numel();
  if (n == 0) return;
  auto ptr = [](const Tensor* t) { return t ? t->data() : nullptr; };
  const unsigned grid = grid_for(n / 4 + 1, kBlock);
  switch (y.dtype()) {
#define RN_MAP_CASE(DT, T)                                                                         \
  case DT:                                                                                         \
    map_kernel<T>                                                                                  \
        <<<grid, kBlock, 0, s>>>(op, static_cast<T*>(y.data()), static_cast<const T*>(ptr(a)),     \
                                 static_cast<const T*>(ptr(b)), static_cast<const T*>(ptr(c)), n); \
    break;
    RN_MAP_CASE(DType::f32, float)
    RN_MAP_CASE(DType::bf16, __nv_bfloat16)
    RN_MAP_CASE(DType::f16, __half)
#undef RN_MAP_CASE
    default:
      RN_FAIL("[" << name << "] unsupported type " << dtype_name(y.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

struct Relu {
  __device__ float operator()(float a, float, float) const { return a > 0.f ? a : 0.f; }
};
struct ReluBackward {  // a = y, b = dy
  __device__ float operator()(float a, float b, float) const { return a > 0.f ? b : 0.f; }
};
struct ReluBackwardAdd {  // a = y, b + c = the incoming gradient
  __device__ float operator()(float a, float b, float c) const { return a > 0.f ? b + c : 0.f; }
};
struct Add {
  bool relu;
  __device__ float operator()(float a, float b, float) const {
    const float s = a + b;
    return relu && s < 0.f ? 0.f : s;
  }
};
struct Axpby {  // a = x, b = y
  float alpha, beta;
  __device__ float operator()(float a, float b, float) const { return alpha * a + beta * b; }
};
struct Constant {
  float value;
  __device__ float operator()(float, float, float) const { return value; }
};
struct Scale {
  float factor;
  __device__ float operator()(float a, float, float) const { return a * factor; }
};

struct Sigmoid {
  __device__ float operator()(float a, float, float) const { return 1.f / (1.f + __expf(-a)); }
};
struct SigmoidBackward {  // a = y, b = dy
  __device__ float operator()(float a, float b, float) const { return b * a * (1.f - a); }
};
struct Mul {  // a * (alpha * b + beta)
  float alpha, beta;
  __device__ float operator()(float a, float b, float) const { return a * (alpha * b + beta); }
};

// Inverted dropout over a plain (NCHW) or NHWC tensor, one thread per element in memory order;
// the mask is keyed by the element's NCHW index, as on the CPU.
template <typename T>
__global__ void dropout_kernel(const T* x, T* y, int64_t n_, int64_t c_, int64_t h_, int64_t w_,
                               bool nhwc, uint64_t key, uint32_t threshold, float keep_scale) {
  const int64_t total = n_ * c_ * h_ * w_;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    int64_t logical = i;
    if (nhwc) {
      int64_t r = i;
      const int64_t c = r % c_;
      r /= c_;
      const int64_t w = r % w_;
      r /= w_;
      const int64_t h = r % h_, n = r / h_;
      logical = ((n * c_ + c) * h_ + h) * w_ + w;
    }
    y[i] = from_f<T>(dropout_keep(key, logical, threshold) ? to_f(x[i]) * keep_scale : 0.f);
  }
}

void dropout_map(const char* name, const Tensor& x, float p, uint64_t key, Tensor& y,
                 cudaStream_t s) {
  RN_CHECK(x.desc().same_layout(y.desc()),
           "[" << name << "] operands differ: " << x.desc().str() << " vs " << y.desc().str());
  RN_CHECK(p >= 0.f && p < 1.f, "[" << name << "] p must be in [0, 1), got " << p);
  const int64_t total = x.numel();
  if (total == 0) return;
  // Tensors other than 4-D ones are plain: their offset is the index.
  const Shape& sh = x.shape();
  const bool four = sh.rank() == 4;
  const int64_t n = four ? sh[0] : total, c = four ? sh[1] : 1, h = four ? sh[2] : 1,
                w = four ? sh[3] : 1;
  const bool nhwc = four && is_nhwc(x.desc());
  const unsigned grid = grid_for(total, kBlock);
  const uint32_t threshold = dropout_threshold(p);
  const float keep_scale = 1.f / (1.f - p);
  switch (x.dtype()) {
#define RN_DROPOUT_CASE(DT, T)                                                                  \
  case DT:                                                                                      \
    dropout_kernel<T><<<grid, kBlock, 0, s>>>(static_cast<const T*>(x.data()),                  \
                                              static_cast<T*>(y.data()), n, c, h, w, nhwc, key, \
                                              threshold, keep_scale);                           \
    break;
    RN_DROPOUT_CASE(DType::f32, float)
    RN_DROPOUT_CASE(DType::bf16, __nv_bfloat16)
    RN_DROPOUT_CASE(DType::f16, __half)
#undef RN_DROPOUT_CASE
    default:
      RN_FAIL("[" << name << "] unsupported type " << dtype_name(x.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

template <typename S, typename D>
__global__ void cast_kernel(const S* x, D* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += grid_stride()) y[i] = from_f<D>(to_f(x[i]));
}

template <typename S>
void cast_from(const S* x, void* y, DType to, int64_t n, cudaStream_t s) {
  const unsigned grid = grid_for(n, kBlock);
  switch (to) {
    case DType::f32:
      cast_kernel<<<grid, kBlock, 0, s>>>(x, static_cast<float*>(y), n);
      break;
    case DType::bf16:
      cast_kernel<<<grid, kBlock, 0, s>>>(x, static_cast<__nv_bfloat16*>(y), n);
      break;
    case DType::f16:
      cast_kernel<<<grid, kBlock, 0, s>>>(x, static_cast<__half*>(y), n);
      break;
    default:
      RN_FAIL("[cast] unsupported target type " << dtype_name(to));
  }
}

// Casts between f32 and bf16 / f16, many tensors per launch (2.1 KB of arguments for 64): the
// master weights into their low-precision copies before a forward, and weight gradients from
// the compute type into f32 after backward. Each block casts one chunk of one tensor, coalesced.
struct CastTensorList {
  const void* src[kMultiTensors];
  void* dst[kMultiTensors];
  int64_t n[kMultiTensors];
  int64_t first_block[kMultiTensors + 1];  // first_block[count] = the grid size
  int count;
};

template <typename S, typename D>
__global__ void cast_many_kernel(const CastTensorList list) {
  const int t = multi_tensor_of_block(list.first_block, list.count);
  const int64_t begin = (static_cast<int64_t>(blockIdx.x) - list.first_block[t]) * kMultiChunk;
  const int64_t end = min(list.n[t], begin + kMultiChunk);
  const S* x = static_cast<const S*>(list.src[t]);
  D* y = static_cast<D*>(list.dst[t]);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) y[i] = from_f<D>(to_f(x[i]));
}

template <typename T>
__global__ void nonfinite_kernel(const T* x, int64_t n, int* flag) {
  for (int64_t i = thread_index(); i < n; i += grid_stride())
    if (!isfinite(to_f(x[i]))) *flag = 1;  // a benign race: every writer stores 1
}

// Option-A shortcut. `fwd`: y(n, c, h, w) = x(n, c - before, h * s, w * s) inside x's channels,
// else 0. Backward: dx(n, c, h, w) = dy(n, c + before, h / s, w / s) where h, w are multiples of
// s, else 0. One thread per output element, decoded in the output's memory order so that
// the writes are coalesced.
template <typename T>
__global__ void shortcut_kernel(bool fwd, const T* in, T* out, int64_t on, int64_t oc, int64_t oh,
                                int64_t ow, bool out_nhwc, Strides4 is, int64_t ic, int s,
                                int64_t before) {
  const int64_t total = on * oc * oh * ow;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    int64_t n, c, h, w, r = i;
    if (out_nhwc) {
      c = r % oc, r /= oc, w = r % ow, r /= ow, h = r % oh, n = r / oh;
    } else {
      w = r % ow, r /= ow, h = r % oh, r /= oh, c = r % oc, n = r / oc;
    }
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

template <typename T>
__global__ void bias_add_kernel(T* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = thread_index(); i < total; i += grid_stride())
    y[i] = from_f<T>(to_f(y[i]) + bias[i % cols]);
}

// Column sums of a rows x cols matrix (a bias gradient: rows = N*H*W, cols = channels) in two
// deterministic passes. Pass 1: block (x, y) sums rows [y*rows_per_part, ...) of 32 columns
// from x*32, its 32 x 8 threads reading 32 neighbouring columns of 8 rows at a time (coalesced),
// then reduces the 8 row-partials in shared memory into partial[y][column]. Pass 2 sums each
// column's parts in a fixed order, so the result does not depend on scheduling.
constexpr int kColTile = static_cast<int>(kColumnTile), kRowThreads = 8;

template <typename T>
__global__ void column_partial_kernel(const T* dy, float* partial, int64_t rows, int64_t cols,
                                      int64_t rows_per_part) {
  __shared__ float tile[kRowThreads][kColTile + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * rows_per_part;
  const int64_t last = min(rows, first + rows_per_part);
  float sum = 0.f;
  if (j < cols)
    for (int64_t r = first + threadIdx.y; r < last; r += kRowThreads) sum += to_f(dy[r * cols + j]);
  tile[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    for (int k = 1; k < kRowThreads; ++k) sum += tile[k][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * cols + j] = sum;
  }
}

__global__ void column_final_kernel(const float* partial, float* db, int64_t parts, int64_t cols) {
  for (int64_t j = thread_index(); j < cols; j += grid_stride()) {
    float sum = 0.f;
    for (int64_t p = 0; p < parts; ++p) sum += partial[p * cols + j];
    db[j] = sum;
  }
}

__global__ void inv_std_to_var_kernel(const float* inv, float* var, int64_t c, float eps) {
  for (int64_t i = thread_index(); i < c; i += grid_stride())
    var[i] = fmaxf(1.f / (inv[i] * inv[i]) - eps, 0.f);
}

__global__ void var_to_inv_std_kernel(const float* var, float* inv, int64_t c, float eps) {
  for (int64_t i = thread_index(); i < c; i += grid_stride()) inv[i] = rsqrtf(var[i] + eps);
}

// Whether an element-wise pass maps `a` onto `b` index for index: both plain or both NHWC.
bool same_dense_layout(const Tensor& a, const Tensor& b) {
  return (a.is_plain() && b.is_plain()) || (is_nhwc(a.desc()) && is_nhwc(b.desc()));
}

}  // namespace

void CudaBackend::relu_forward(const Tensor& x, Tensor& y) {
  map_eltwise("relu", Relu{}, y, &x, nullptr, nullptr, ctx_.stream());
}

void CudaBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  map_eltwise("relu_backward", ReluBackward{}, dx, &y, &dy, nullptr, ctx_.stream());
}

void CudaBackend::relu_backward_add(const Tensor& y, const Tensor& a, const Tensor& b, Tensor& dx) {
  map_eltwise("relu_backward_add", ReluBackwardAdd{}, dx, &y, &a, &b, ctx_.stream());
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& y, bool relu) {
  map_eltwise("add", Add{relu}, y, &a, &b, nullptr, ctx_.stream());
}

void CudaBackend::add_inplace(Tensor& y, const Tensor& x) {
  map_eltwise("add_inplace", Add{false}, y, &y, &x, nullptr, ctx_.stream());
}

void CudaBackend::axpby(Tensor& y, float a, const Tensor& x, float b) {
  map_eltwise("axpby", Axpby{a, b}, y, &x, &y, nullptr, ctx_.stream());
}

void CudaBackend::fill(Tensor& t, float value) {
  if (value == 0.f) {
    RN_CUDA_CHECK(cudaMemsetAsync(t.data(), 0, t.bytes(), ctx_.stream()));
    return;
  }
  map_eltwise("fill", Constant{value}, t, nullptr, nullptr, nullptr, ctx_.stream());
}

void CudaBackend::cast_many(const std::vector<CastPair>& list) {
  static_assert(sizeof(CastTensorList) <= 4000, "a launch takes at most 4 KB of arguments");
  // One list per direction: f32 -> bf16, f32 -> f16, bf16 -> f32, f16 -> f32. A pair of any
  // other types, or not in one dense layout (plain or NHWC on both sides), takes the single cast.
  constexpr int kDirections = 4;
  const auto direction = [](DType from, DType to) {
    if (from == DType::f32) return to == DType::bf16 ? 0 : to == DType::f16 ? 1 : -1;
    if (to == DType::f32) return from == DType::bf16 ? 2 : from == DType::f16 ? 3 : -1;
    return -1;
  };
  CastTensorList lists[kDirections]{};
  auto launch = [&](int d) {
    CastTensorList& batch = lists[d];
    if (batch.count == 0) return;
    const unsigned grid = static_cast<unsigned>(batch.first_block[batch.count]);
    cudaStream_t s = ctx_.stream();
    switch (d) {
      case 0:
        cast_many_kernel<float, __nv_bfloat16><<<grid, kBlock, 0, s>>>(batch);
        break;
      case 1:
        cast_many_kernel<float, __half><<<grid, kBlock, 0, s>>>(batch);
        break;
      case 2:
        cast_many_kernel<__nv_bfloat16, float><<<grid, kBlock, 0, s>>>(batch);
        break;
      default:
        cast_many_kernel<__half, float><<<grid, kBlock, 0, s>>>(batch);
        break;
    }
    RN_CUDA_CHECK(cudaGetLastError());
    batch.count = 0;
  };
  for (const CastPair& c : list) {
    const Tensor& src = *c.src;
    Tensor& dst = *c.dst;
    const int d = direction(src.dtype(), dst.dtype());
    if (d < 0 || !same_dense_layout(src, dst)) {
      cast(src, dst);
      continue;
    }
    RN_CHECK(src.shape() == dst.shape(),
             "[cast] " << src.desc().str() << " -> " << dst.desc().str());
    const int64_t n = src.numel();
    if (n == 0) continue;
    CastTensorList& batch = lists[d];
    const int k = multi_tensor_add(batch, n);
    batch.src[k] = src.data();
    batch.dst[k] = dst.data();
    if (batch.count == kMultiTensors) launch(d);
  }
  for (int d = 0; d < kDirections; ++d) launch(d);
}

void CudaBackend::scale(Tensor& t, float factor) {
  map_eltwise("scale", Scale{factor}, t, &t, nullptr, nullptr, ctx_.stream());
}

void CudaBackend::cast(const Tensor& src, Tensor& dst) {
  RN_CHECK(src.shape() == dst.shape(), "[cast] " << src.desc().str() << " -> " << dst.desc().str());
  if (src.dtype() == dst.dtype()) {
    transform(src, dst);
    return;
  }
  // The element-wise cast keeps the source's layout; a layout change follows as its own pass.
  Tensor out = dst;
  if (!same_dense_layout(src, dst))
    out = allocate(
        TensorDesc{src.shape(), dst.dtype(),
                   is_nhwc(src.desc()) ? nhwc_desc(src.shape(), dst.dtype()).layout : nullptr});
  const int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::f32:
      cast_from(src.data_as<float>(), out.data(), dst.dtype(), n, ctx_.stream());
      break;
    case DType::bf16:
      cast_from(static_cast<const __nv_bfloat16*>(src.data()), out.data(), dst.dtype(), n,
                ctx_.stream());
      break;
    case DType::f16:
      cast_from(static_cast<const __half*>(src.data()), out.data(), dst.dtype(), n, ctx_.stream());
      break;
    default:
      RN_FAIL("[cast] unsupported source type " << dtype_name(src.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
  if (out.data() != dst.data()) transform(out, dst);
}

bool CudaBackend::all_finite(const Tensor& t) {
  int* flag = device_result_.data_as<int>();
  RN_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), ctx_.stream()));
  const int64_t n = t.numel();
  const unsigned grid = grid_for(n, kBlock);
  switch (t.dtype()) {
    case DType::f32:
      nonfinite_kernel<<<grid, kBlock, 0, ctx_.stream()>>>(t.data_as<float>(), n, flag);
      break;
    case DType::bf16:
      nonfinite_kernel<<<grid, kBlock, 0, ctx_.stream()>>>(
          static_cast<const __nv_bfloat16*>(t.data()), n, flag);
      break;
    case DType::f16:
      nonfinite_kernel<<<grid, kBlock, 0, ctx_.stream()>>>(static_cast<const __half*>(t.data()), n,
                                                           flag);
      break;
    default:
      RN_FAIL("[all_finite] unsupported type " << dtype_name(t.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
  RN_CUDA_CHECK(
      cudaMemcpyAsync(host_result_, flag, sizeof(int), cudaMemcpyDeviceToHost, ctx_.stream()));
  RN_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  return *static_cast<int*>(host_result_) == 0;
}

void CudaBackend::sigmoid_forward(const Tensor& x, Tensor& y) {
  map_eltwise("sigmoid", Sigmoid{}, y, &x, nullptr, nullptr, ctx_.stream());
}

void CudaBackend::sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  map_eltwise("sigmoid_backward", SigmoidBackward{}, dx, &y, &dy, nullptr, ctx_.stream());
}

void CudaBackend::mul(const Tensor& a, const Tensor& b, Tensor& y, float alpha, float beta) {
  map_eltwise("mul", Mul{alpha, beta}, y, &a, &b, nullptr, ctx_.stream());
}

void CudaBackend::scale_to(const Tensor& x, float factor, Tensor& y) {
  map_eltwise("scale_to", Scale{factor}, y, &x, nullptr, nullptr, ctx_.stream());
}

void CudaBackend::dropout_forward(const Tensor& x, float p, uint64_t key, Tensor& y) {
  dropout_map("dropout", x, p, key, y, ctx_.stream());
}

void CudaBackend::dropout_backward(const Tensor& dy, float p, uint64_t key, Tensor& dx) {
  dropout_map("dropout_backward", dy, p, key, dx, ctx_.stream());
}

void CudaBackend::pad_shortcut_forward(const Tensor& x, int stride, Tensor& y) {
  const Shape& xs = x.shape();
  const Shape& ys = y.shape();
  RN_CHECK(x.dtype() == y.dtype() && xs[0] == ys[0] && ys[1] >= xs[1] &&
               ys[2] == (xs[2] + stride - 1) / stride && ys[3] == (xs[3] + stride - 1) / stride,
           "[shortcut] " << x.desc().str() << " cannot map to " << y.desc().str() << " with stride "
                         << stride);
  const int64_t before = (ys[1] - xs[1]) / 2;
  const unsigned grid = grid_for(y.numel(), kBlock);
  const Strides4 is = strides_of(x.desc());
  const bool nhwc = is_nhwc(y.desc());
  switch (y.dtype()) {
#define RN_SHORTCUT_CASE(DT, T)                                                                \
  case DT:                                                                                     \
    shortcut_kernel<T><<<grid, kBlock, 0, ctx_.stream()>>>(                                    \
        true, static_cast<const T*>(x.data()), static_cast<T*>(y.data()), ys[0], ys[1], ys[2], \
        ys[3], nhwc, is, xs[1], stride, before);                                               \
    break;
    RN_SHORTCUT_CASE(DType::f32, float)
    RN_SHORTCUT_CASE(DType::bf16, __nv_bfloat16)
    RN_SHORTCUT_CASE(DType::f16, __half)
    default:
      RN_FAIL("[shortcut] unsupported type " << dtype_name(y.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::pad_shortcut_backward(const Tensor& dy, int stride, Tensor& dx) {
  const Shape& xs = dx.shape();
  const Shape& ys = dy.shape();
  RN_CHECK(dx.dtype() == dy.dtype() && xs[0] == ys[0] && ys[1] >= xs[1] &&
               ys[2] == (xs[2] + stride - 1) / stride && ys[3] == (xs[3] + stride - 1) / stride,
           "[shortcut] " << dy.desc().str() << " cannot map to " << dx.desc().str()
                         << " with stride " << stride);
  const int64_t before = (ys[1] - xs[1]) / 2;
  const unsigned grid = grid_for(dx.numel(), kBlock);
  const Strides4 is = strides_of(dy.desc());
  const bool nhwc = is_nhwc(dx.desc());
  switch (dx.dtype()) {
#define RN_SHORTCUT_BWD_CASE(DT, T)                                                               \
  case DT:                                                                                        \
    shortcut_kernel<T><<<grid, kBlock, 0, ctx_.stream()>>>(                                       \
        false, static_cast<const T*>(dy.data()), static_cast<T*>(dx.data()), xs[0], xs[1], xs[2], \
        xs[3], nhwc, is, ys[1], stride, before);                                                  \
    break;
    RN_SHORTCUT_BWD_CASE(DType::f32, float)
    RN_SHORTCUT_BWD_CASE(DType::bf16, __nv_bfloat16)
    RN_SHORTCUT_BWD_CASE(DType::f16, __half)
    default:
      RN_FAIL("[shortcut] unsupported type " << dtype_name(dx.dtype()));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_bias_add(DType t, void* y, const float* bias, int64_t rows, int64_t cols,
                     cudaStream_t s) {
  const unsigned grid = grid_for(rows * cols, kBlock);
  switch (t) {
    case DType::f32:
      bias_add_kernel<<<grid, kBlock, 0, s>>>(static_cast<float*>(y), bias, rows, cols);
      break;
    case DType::bf16:
      bias_add_kernel<<<grid, kBlock, 0, s>>>(static_cast<__nv_bfloat16*>(y), bias, rows, cols);
      break;
    case DType::f16:
      bias_add_kernel<<<grid, kBlock, 0, s>>>(static_cast<__half*>(y), bias, rows, cols);
      break;
    default:
      RN_FAIL("[bias] unsupported type " << dtype_name(t));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_column_sum(CudaContext& ctx, DType t, const void* dy, float* db, int64_t rows,
                       int64_t cols) {
  if (cols == 0) return;
  cudaStream_t s = ctx.stream();
  if (rows == 0) {
    RN_CUDA_CHECK(cudaMemsetAsync(db, 0, cols * sizeof(float), s));
    return;
  }
  const ColumnSumPlan plan = column_sum_plan(rows, cols);
  Tensor partial = ctx.scratch(static_cast<size_t>(plan.parts * cols) * sizeof(float));
  const dim3 grid(static_cast<unsigned>(plan.column_tiles), static_cast<unsigned>(plan.parts));
  const dim3 block(kColTile, kRowThreads);
  float* part = partial.data_as<float>();
  switch (t) {
    case DType::f32:
      column_partial_kernel<<<grid, block, 0, s>>>(static_cast<const float*>(dy), part, rows, cols,
                                                   plan.rows_per_part);
      break;
    case DType::bf16:
      column_partial_kernel<<<grid, block, 0, s>>>(static_cast<const __nv_bfloat16*>(dy), part,
                                                   rows, cols, plan.rows_per_part);
      break;
    case DType::f16:
      column_partial_kernel<<<grid, block, 0, s>>>(static_cast<const __half*>(dy), part, rows, cols,
                                                   plan.rows_per_part);
      break;
    default:
      RN_FAIL("[bias] unsupported type " << dtype_name(t));
  }
  column_final_kernel<<<grid_for(cols, kBlock), kBlock, 0, s>>>(part, db, plan.parts, cols);
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_inv_std_to_var(const float* inv_std, float* var, int64_t c, double eps,
                           cudaStream_t s) {
  inv_std_to_var_kernel<<<grid_for(c, kBlock), kBlock, 0, s>>>(inv_std, var, c,
                                                               static_cast<float>(eps));
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_var_to_inv_std(const float* var, float* inv_std, int64_t c, double eps,
                           cudaStream_t s) {
  var_to_inv_std_kernel<<<grid_for(c, kBlock), kBlock, 0, s>>>(var, inv_std, c,
                                                               static_cast<float>(eps));
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

// Element-wise kernels of the CUDA backend: ReLU and its gradients, sigmoid, products, dropout,
// add, axpby, fill, scale, casts, the finiteness check, the zero-padding shortcut, bias rows and
// batch-norm statistics. The bodies are in kernels/eltwise_kernels.h and
// kernels/column_sum_kernels.h (run on the host in the tests); this file holds their __global__
// wrappers and the host code that chooses types, widths and launch shapes.
#include "core/backend/column_sum_plan.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/column_sum_kernels.h"
#include "core/backend/cuda/kernels/eltwise_kernels.h"

namespace rn::cuda {
namespace {

template <int N, typename T, typename Op>
__global__ void map_kernel(Op op, T* y, const T* a, const T* b, const T* c, int64_t n) {
  map_body<N, DevicePtr>(DeviceThread{}, op, y, a, b, c, n);
}

template <typename T, typename Op>
void map_typed(Op op, Tensor& y, const Tensor* a, const Tensor* b, const Tensor* c,
               cudaStream_t s) {
  auto ptr = [](const Tensor* t) { return t ? static_cast<const T*>(t->data()) : nullptr; };
  T* yp = static_cast<T*>(y.data());
  const int64_t n = y.numel();
  const int w = map_width<T>(yp, ptr(a), ptr(b), ptr(c));
  const LaunchShape ls = map_launch(n, w);
  if (w == Vec<T>::kN)
    map_kernel<Vec<T>::kN><<<grid_of(ls), block_of(ls), 0, s>>>(op, yp, ptr(a), ptr(b), ptr(c), n);
  else
    map_kernel<1><<<grid_of(ls), block_of(ls), 0, s>>>(op, yp, ptr(a), ptr(b), ptr(c), n);
}

template <typename Op>
void map_eltwise(const char* name, Op op, Tensor& y, const Tensor* a, const Tensor* b,
                 const Tensor* c, cudaStream_t s) {
  for (const Tensor* t : {a, b, c})
    RN_CHECK(!t || t->desc().same_layout(y.desc()),
             "[" << name << "] operands differ: " << t->desc().str() << " vs " << y.desc().str());
  if (y.numel() == 0) return;
  for_storage_type(y.dtype(), name, [&](auto v) { map_typed<decltype(v)>(op, y, a, b, c, s); });
  RN_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
__global__ void dropout_kernel(const T* x, T* y, Dims4 d, bool nhwc, uint64_t key,
                               uint32_t threshold, float keep_scale) {
  dropout_body<DevicePtr>(DeviceThread{}, x, y, d, nhwc, key, threshold, keep_scale);
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
  const Dims4 d = four ? Dims4{sh[0], sh[1], sh[2], sh[3]} : Dims4{total, 1, 1, 1};
  const bool nhwc = four && is_nhwc(x.desc());
  const LaunchShape ls = linear_launch(total);
  const uint32_t threshold = dropout_threshold(p);
  const float keep_scale = 1.f / (1.f - p);
  for_storage_type(x.dtype(), name, [&](auto v) {
    using T = decltype(v);
    dropout_kernel<T><<<grid_of(ls), block_of(ls), 0, s>>>(static_cast<const T*>(x.data()),
                                                           static_cast<T*>(y.data()), d, nhwc, key,
                                                           threshold, keep_scale);
  });
  RN_CUDA_CHECK(cudaGetLastError());
}

template <typename S, typename D>
__global__ void cast_kernel(const S* x, D* y, int64_t n) {
  cast_body<DevicePtr>(DeviceThread{}, x, y, n);
}

template <typename S, typename D>
__global__ void cast_many_kernel(const CastTensorList<DevicePtr, S, D> list) {
  cast_many_body(DeviceThread{}, list);
}

template <typename T>
__global__ void nonfinite_kernel(const T* x, int64_t n, int* flag) {
  nonfinite_body<DevicePtr>(DeviceThread{}, x, n, flag);
}

template <typename T>
__global__ void shortcut_kernel(bool fwd, const T* in, T* out, Dims4 o, bool out_nhwc, Strides4 is,
                                int64_t ic, int s, int64_t before) {
  shortcut_body<DevicePtr>(DeviceThread{}, fwd, in, out, o, out_nhwc, is, ic, s, before);
}

template <typename T>
__global__ void bias_add_kernel(T* y, const float* bias, int64_t rows, int64_t cols) {
  bias_add_body<DevicePtr>(DeviceThread{}, y, bias, rows, cols);
}

template <typename T>
__global__ void column_partial_kernel(const T* dy, float* partial, int64_t rows, int64_t cols,
                                      int64_t rows_per_part) {
  column_partial_body<DevicePtr>(DeviceThread{}, shared_memory<ColumnTile>(), dy, partial, rows,
                                 cols, rows_per_part);
}

__global__ void column_final_kernel(const float* partial, float* db, int64_t parts, int64_t cols) {
  column_final_body<DevicePtr>(DeviceThread{}, partial, db, parts, cols);
}

__global__ void inv_std_to_var_kernel(const float* inv, float* var, int64_t c, float eps) {
  inv_std_to_var_body<DevicePtr>(DeviceThread{}, inv, var, c, eps);
}

__global__ void var_to_inv_std_kernel(const float* var, float* inv, int64_t c, float eps) {
  var_to_inv_std_body<DevicePtr>(DeviceThread{}, var, inv, c, eps);
}

// One direction's list of casts (S -> D), launched when it holds kMultiTensors tensors and at
// the end.
template <typename S, typename D>
class CastBatch {
 public:
  static_assert(sizeof(CastTensorList<DevicePtr, S, D>) <= 4000,
                "a launch takes at most 4 KB of arguments");
  void add(const Tensor& src, Tensor& dst, cudaStream_t s) {
    const int k = multi_tensor_add(list_, src.numel());
    list_.src[k] = static_cast<const S*>(src.data());
    list_.dst[k] = static_cast<D*>(dst.data());
    if (list_.count == kMultiTensors) launch(s);
  }
  void launch(cudaStream_t s) {
    if (list_.count == 0) return;
    const LaunchShape ls = multi_tensor_launch(list_);
    cast_many_kernel<S, D><<<grid_of(ls), block_of(ls), 0, s>>>(list_);
    RN_CUDA_CHECK(cudaGetLastError());
    list_.count = 0;
  }

 private:
  CastTensorList<DevicePtr, S, D> list_{};
};

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
  // One list per direction: f32 -> bf16, f32 -> f16, bf16 -> f32, f16 -> f32. A pair of any
  // other types, or not in one dense layout (plain or NHWC on both sides), takes the single cast.
  cudaStream_t s = ctx_.stream();
  CastBatch<float, __nv_bfloat16> to_bf16;
  CastBatch<float, __half> to_f16;
  CastBatch<__nv_bfloat16, float> from_bf16;
  CastBatch<__half, float> from_f16;
  for (const CastPair& c : list) {
    const Tensor& src = *c.src;
    Tensor& dst = *c.dst;
    const DType from = src.dtype(), to = dst.dtype();
    const bool batched = same_dense_layout(src, dst) &&
                         ((from == DType::f32 && (to == DType::bf16 || to == DType::f16)) ||
                          (to == DType::f32 && (from == DType::bf16 || from == DType::f16)));
    if (!batched) {
      cast(src, dst);
      continue;
    }
    RN_CHECK(src.shape() == dst.shape(),
             "[cast] " << src.desc().str() << " -> " << dst.desc().str());
    if (src.numel() == 0) continue;
    if (to == DType::bf16)
      to_bf16.add(src, dst, s);
    else if (to == DType::f16)
      to_f16.add(src, dst, s);
    else if (from == DType::bf16)
      from_bf16.add(src, dst, s);
    else
      from_f16.add(src, dst, s);
  }
  to_bf16.launch(s), to_f16.launch(s), from_bf16.launch(s), from_f16.launch(s);
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
  const LaunchShape ls = linear_launch(n);
  for_storage_type(src.dtype(), "cast", [&](auto sv) {
    for_storage_type(dst.dtype(), "cast", [&](auto dv) {
      using S = decltype(sv);
      using D = decltype(dv);
      cast_kernel<S, D><<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(
          static_cast<const S*>(src.data()), static_cast<D*>(out.data()), n);
    });
  });
  RN_CUDA_CHECK(cudaGetLastError());
  if (out.data() != dst.data()) transform(out, dst);
}

bool CudaBackend::all_finite(const Tensor& t) {
  int* flag = device_result_.data_as<int>();
  RN_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), ctx_.stream()));
  const int64_t n = t.numel();
  const LaunchShape ls = linear_launch(n);
  for_storage_type(t.dtype(), "all_finite", [&](auto v) {
    using T = decltype(v);
    nonfinite_kernel<T>
        <<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(static_cast<const T*>(t.data()), n, flag);
  });
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
  pad_shortcut(true, x, stride, y);
}

void CudaBackend::pad_shortcut_backward(const Tensor& dy, int stride, Tensor& dx) {
  pad_shortcut(false, dy, stride, dx);
}

void CudaBackend::pad_shortcut(bool forward, const Tensor& in, int stride, Tensor& out) {
  // x is the narrower, larger tensor (forward's input, backward's output), y the padded one.
  const Shape& xs = forward ? in.shape() : out.shape();
  const Shape& ys = forward ? out.shape() : in.shape();
  RN_CHECK(in.dtype() == out.dtype() && xs[0] == ys[0] && ys[1] >= xs[1] &&
               ys[2] == (xs[2] + stride - 1) / stride && ys[3] == (xs[3] + stride - 1) / stride,
           "[shortcut] " << in.desc().str() << " cannot map to " << out.desc().str()
                         << " with stride " << stride);
  const int64_t before = (ys[1] - xs[1]) / 2;
  const Shape& os = out.shape();
  const Dims4 o{os[0], os[1], os[2], os[3]};
  const LaunchShape ls = linear_launch(out.numel());
  const Strides4 is = strides_of(in.desc());
  const bool nhwc = is_nhwc(out.desc());
  for_storage_type(out.dtype(), "shortcut", [&](auto v) {
    using T = decltype(v);
    shortcut_kernel<T><<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(
        forward, static_cast<const T*>(in.data()), static_cast<T*>(out.data()), o, nhwc, is,
        in.shape()[1], stride, before);
  });
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_bias_add(DType t, void* y, const float* bias, int64_t rows, int64_t cols,
                     cudaStream_t s) {
  const LaunchShape ls = linear_launch(rows * cols);
  for_storage_type(t, "bias", [&](auto v) {
    using T = decltype(v);
    bias_add_kernel<T><<<grid_of(ls), block_of(ls), 0, s>>>(static_cast<T*>(y), bias, rows, cols);
  });
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
  const LaunchShape ls = column_partial_launch(plan);
  float* part = partial.data_as<float>();
  for_storage_type(t, "bias", [&](auto v) {
    using T = decltype(v);
    column_partial_kernel<T><<<grid_of(ls), block_of(ls), 0, s>>>(static_cast<const T*>(dy), part,
                                                                  rows, cols, plan.rows_per_part);
  });
  const LaunchShape fs = linear_launch(cols);
  column_final_kernel<<<grid_of(fs), block_of(fs), 0, s>>>(part, db, plan.parts, cols);
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_inv_std_to_var(const float* inv_std, float* var, int64_t c, double eps,
                           cudaStream_t s) {
  const LaunchShape ls = linear_launch(c);
  inv_std_to_var_kernel<<<grid_of(ls), block_of(ls), 0, s>>>(inv_std, var, c,
                                                             static_cast<float>(eps));
  RN_CUDA_CHECK(cudaGetLastError());
}

void launch_var_to_inv_std(const float* var, float* inv_std, int64_t c, double eps,
                           cudaStream_t s) {
  const LaunchShape ls = linear_launch(c);
  var_to_inv_std_kernel<<<grid_of(ls), block_of(ls), 0, s>>>(var, inv_std, c,
                                                             static_cast<float>(eps));
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

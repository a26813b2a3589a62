// The CUDA backend's own batch norm (+ ReLU) on NHWC data, for the types cuDNN's batch norm does
// not document (bf16): an N x H x W x C tensor is `rows` x `cols`. The statistics take two
// deterministic passes: blocks of 32 columns x 8 row threads over parts of about 256 rows
// (column_sum_plan's grid) keep Welford moments in fp32, merged in a fixed order, then one block
// per channel merges its parts in fp64 (Chan's formula, batch_norm_moments.h). The output and the
// input gradient are one vectorised element-wise pass each. Everything computes in fp32 (fp64
// for the per-channel sums) whatever the storage type.
#include "core/backend/batch_norm_moments.h"
#include "core/backend/column_sum_plan.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_util.cuh"

namespace rn::cuda {
namespace {

constexpr int kTile = static_cast<int>(kColumnTile), kRowThreads = 8, kFinalThreads = 256;

// Forward, pass 1: the moments of each (row part, column), in partial[part][col][n, mean, m2].
template <typename T>
__global__ void moments_partial_kernel(const T* x, float* partial, int64_t rows, int64_t cols,
                                       int64_t rows_per_part) {
  __shared__ float tile[3][kRowThreads][kTile + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * rows_per_part;
  const int64_t last = min(rows, first + rows_per_part);
  Moments<float> m;
  if (j < cols)
    for (int64_t r = first + threadIdx.y; r < last; r += kRowThreads)
      moments_add(m, to_f(x[r * cols + j]));
  tile[0][threadIdx.y][threadIdx.x] = m.n;
  tile[1][threadIdx.y][threadIdx.x] = m.mean;
  tile[2][threadIdx.y][threadIdx.x] = m.m2;
  __syncthreads();
  if (threadIdx.y != 0 || j >= cols) return;
  for (int k = 1; k < kRowThreads; ++k)
    m = moments_merge(m, Moments<float>{tile[0][k][threadIdx.x], tile[1][k][threadIdx.x],
                                        tile[2][k][threadIdx.x]});
  float* out = partial + (static_cast<int64_t>(blockIdx.y) * cols + j) * 3;
  out[0] = m.n, out[1] = m.mean, out[2] = m.m2;
}

// Forward, pass 2: one block per channel merges its parts (each thread a strided share, then a
// tree in shared memory: a fixed order), and writes the batch mean, the biased variance and the
// affine map y = scale * x + shift (affine[c] = scale, affine[cols + c] = shift).
__global__ void moments_final_kernel(const float* partial, int64_t parts, int64_t cols,
                                     const float* gamma, const float* beta, float* mean, float* var,
                                     float* affine, float eps) {
  __shared__ double sn[kFinalThreads], smean[kFinalThreads], sm2[kFinalThreads];
  const int64_t j = blockIdx.x;
  Moments<double> m;
  for (int64_t p = threadIdx.x; p < parts; p += blockDim.x) {
    const float* in = partial + (p * cols + j) * 3;
    m = moments_merge(m, Moments<double>{in[0], in[1], in[2]});
  }
  sn[threadIdx.x] = m.n, smean[threadIdx.x] = m.mean, sm2[threadIdx.x] = m.m2;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const Moments<double> a{sn[threadIdx.x], smean[threadIdx.x], sm2[threadIdx.x]};
      const Moments<double> b{sn[threadIdx.x + s], smean[threadIdx.x + s], sm2[threadIdx.x + s]};
      const Moments<double> c = moments_merge(a, b);
      sn[threadIdx.x] = c.n, smean[threadIdx.x] = c.mean, sm2[threadIdx.x] = c.m2;
    }
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  const double v = sn[0] > 0 ? sm2[0] / sn[0] : 0.0;
  const double scale = gamma[j] / sqrt(v + eps);
  mean[j] = static_cast<float>(smean[0]);
  var[j] = static_cast<float>(v);
  affine[j] = static_cast<float>(scale);
  affine[cols + j] = static_cast<float>(beta[j] - smean[0] * scale);
}

// Inference: the affine map from given statistics.
__global__ void affine_from_stats_kernel(const float* gamma, const float* beta, const float* mean,
                                         const float* var, float* affine, int64_t cols, float eps) {
  for (int64_t j = thread_index(); j < cols; j += grid_stride()) {
    const float scale = gamma[j] * rsqrtf(var[j] + eps);
    affine[j] = scale;
    affine[cols + j] = beta[j] - mean[j] * scale;
  }
}

// y = scale[c] * x + shift[c] (then ReLU), kN elements per thread; the host takes the 16-byte
// Vec<T> width where the channels are a multiple of it (a vector never straddles two rows), else
// one element at a time.
template <typename T, int kN, bool kRelu>
__global__ void normalize_kernel(const T* x, T* y, const float* affine, int64_t total,
                                 int64_t cols) {
  using V = Vec<T, kN>;
  const int64_t nv = total / kN;
  for (int64_t i = thread_index(); i < nv; i += grid_stride()) {
    V in = reinterpret_cast<const V*>(x)[i], out;
    const int64_t c0 = (i * kN) % cols;
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      float o = fmaf(to_f(in.v[k]), affine[c0 + k], affine[cols + c0 + k]);
      if (kRelu) o = fmaxf(o, 0.f);
      out.v[k] = from_f<T>(o);
    }
    reinterpret_cast<V*>(y)[i] = out;
  }
}

// Backward, pass 1: per (row part, column), the sums of g and g * (x - mean), where g is dy
// with the fused ReLU's gradient applied (g = 0 where the forward's scale * x + shift <= 0, the
// forward's own arithmetic); partial[part][col][sum g, sum g (x - mean)].
template <typename T, bool kRelu>
__global__ void grad_partial_kernel(const T* x, const T* dy, const float* mean, const float* affine,
                                    float* partial, int64_t rows, int64_t cols,
                                    int64_t rows_per_part) {
  __shared__ float tile[2][kRowThreads][kTile + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * rows_per_part;
  const int64_t last = min(rows, first + rows_per_part);
  float sg = 0.f, sgx = 0.f;
  if (j < cols) {
    const float mu = mean[j];
    const float scale = kRelu ? affine[j] : 0.f, shift = kRelu ? affine[cols + j] : 0.f;
    for (int64_t r = first + threadIdx.y; r < last; r += kRowThreads) {
      const float xv = to_f(x[r * cols + j]);
      float g = to_f(dy[r * cols + j]);
      if (kRelu && fmaf(xv, scale, shift) <= 0.f) g = 0.f;
      sg += g;
      sgx += g * (xv - mu);
    }
  }
  tile[0][threadIdx.y][threadIdx.x] = sg;
  tile[1][threadIdx.y][threadIdx.x] = sgx;
  __syncthreads();
  if (threadIdx.y != 0 || j >= cols) return;
  for (int k = 1; k < kRowThreads; ++k)
    sg += tile[0][k][threadIdx.x], sgx += tile[1][k][threadIdx.x];
  float* out = partial + (static_cast<int64_t>(blockIdx.y) * cols + j) * 2;
  out[0] = sg, out[1] = sgx;
}

// Backward, pass 2: one block per channel sums its parts in fp64 (a fixed order) into
// dbeta = sum g and dgamma = sum g * x^, and the coefficients of
// dx = gamma inv_std (g - dbeta / n - x^ dgamma / n) = c1 (g - c2 - (x - mean) c3):
// coef[c] = c1, coef[cols + c] = c2, coef[2 cols + c] = c3.
__global__ void grad_final_kernel(const float* partial, int64_t parts, int64_t rows, int64_t cols,
                                  const float* gamma, const float* var, float* dgamma, float* dbeta,
                                  float* coef, float eps) {
  __shared__ double sg[kFinalThreads], sgx[kFinalThreads];
  const int64_t j = blockIdx.x;
  double a = 0, b = 0;
  for (int64_t p = threadIdx.x; p < parts; p += blockDim.x)
    a += partial[(p * cols + j) * 2], b += partial[(p * cols + j) * 2 + 1];
  sg[threadIdx.x] = a, sgx[threadIdx.x] = b;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      sg[threadIdx.x] += sg[threadIdx.x + s], sgx[threadIdx.x] += sgx[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  const double inv = 1.0 / sqrt(static_cast<double>(var[j]) + eps);
  const double n = static_cast<double>(rows);
  dbeta[j] = static_cast<float>(sg[0]);
  dgamma[j] = static_cast<float>(sgx[0] * inv);
  coef[j] = static_cast<float>(gamma[j] * inv);
  coef[cols + j] = static_cast<float>(sg[0] / n);
  coef[2 * cols + j] = static_cast<float>(sgx[0] * inv * inv / n);
}

// Backward, pass 3: dx = c1 (g - c2 - (x - mean) c3), g masked as in pass 1.
template <typename T, int kN, bool kRelu>
__global__ void input_grad_kernel(const T* x, const T* dy, T* dx, const float* mean,
                                  const float* affine, const float* coef, int64_t total,
                                  int64_t cols) {
  using V = Vec<T, kN>;
  const int64_t nv = total / kN;
  for (int64_t i = thread_index(); i < nv; i += grid_stride()) {
    const V xv = reinterpret_cast<const V*>(x)[i], gv = reinterpret_cast<const V*>(dy)[i];
    V out;
    const int64_t c0 = (i * kN) % cols;
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      const int64_t c = c0 + k;
      const float xf = to_f(xv.v[k]);
      float g = to_f(gv.v[k]);
      if (kRelu && fmaf(xf, affine[c], affine[cols + c]) <= 0.f) g = 0.f;
      out.v[k] = from_f<T>(coef[c] * (g - coef[cols + c] - (xf - mean[c]) * coef[2 * cols + c]));
    }
    reinterpret_cast<V*>(dx)[i] = out;
  }
}

// The widest vector (16 bytes) whose element count divides the channels and the buffers'
// alignment; 1 otherwise.
template <typename T>
int vector_width(int64_t cols, std::initializer_list<const void*> buffers) {
  constexpr int kWide = Vec<T>::kN;
  uintptr_t bits = 0;
  for (const void* b : buffers) bits |= reinterpret_cast<uintptr_t>(b);
  return cols % kWide == 0 && bits % alignof(Vec<T>) == 0 ? kWide : 1;
}

unsigned elementwise_grid(int64_t total, int width) {
  return grid_for(total / width + 1, kBlock);
}

template <typename T>
void normalize(const T* x, T* y, const float* affine, int64_t total, int64_t cols, bool relu,
               cudaStream_t s) {
  constexpr int kWide = Vec<T>::kN;
  const int w = vector_width<T>(cols, {x, y});
  const unsigned grid = elementwise_grid(total, w);
  if (w == kWide)
    relu ? normalize_kernel<T, kWide, true><<<grid, kBlock, 0, s>>>(x, y, affine, total, cols)
         : normalize_kernel<T, kWide, false><<<grid, kBlock, 0, s>>>(x, y, affine, total, cols);
  else
    relu ? normalize_kernel<T, 1, true><<<grid, kBlock, 0, s>>>(x, y, affine, total, cols)
         : normalize_kernel<T, 1, false><<<grid, kBlock, 0, s>>>(x, y, affine, total, cols);
}

template <typename T>
void forward_training(CudaContext& ctx, const NativeBatchNormArgs& a) {
  cudaStream_t s = ctx.stream();
  const ColumnSumPlan plan = column_sum_plan(a.rows, a.cols);
  Tensor partial = ctx.scratch(static_cast<size_t>(plan.parts * a.cols * 3) * sizeof(float));
  const dim3 grid(static_cast<unsigned>(plan.column_tiles), static_cast<unsigned>(plan.parts));
  moments_partial_kernel<<<grid, dim3(kTile, kRowThreads), 0, s>>>(
      static_cast<const T*>(a.x), partial.data_as<float>(), a.rows, a.cols, plan.rows_per_part);
  moments_final_kernel<<<static_cast<unsigned>(a.cols), kFinalThreads, 0, s>>>(
      partial.data_as<float>(), plan.parts, a.cols, a.gamma, a.beta, a.batch_mean, a.batch_var,
      a.affine, a.eps);
  normalize(static_cast<const T*>(a.x), static_cast<T*>(a.y), a.affine, a.rows * a.cols, a.cols,
            a.relu, s);
}

template <typename T>
void forward_inference(CudaContext& ctx, const NativeBatchNormArgs& a) {
  cudaStream_t s = ctx.stream();
  affine_from_stats_kernel<<<grid_for(a.cols, kBlock), kBlock, 0, s>>>(
      a.gamma, a.beta, a.mean, a.var, a.affine, a.cols, a.eps);
  normalize(static_cast<const T*>(a.x), static_cast<T*>(a.y), a.affine, a.rows * a.cols, a.cols,
            a.relu, s);
}

template <typename T>
void backward(CudaContext& ctx, const NativeBatchNormArgs& a) {
  cudaStream_t s = ctx.stream();
  const ColumnSumPlan plan = column_sum_plan(a.rows, a.cols);
  Tensor partial = ctx.scratch(static_cast<size_t>(plan.parts * a.cols * 2) * sizeof(float));
  Tensor coef = ctx.scratch(static_cast<size_t>(3 * a.cols) * sizeof(float));
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const dim3 grid(static_cast<unsigned>(plan.column_tiles), static_cast<unsigned>(plan.parts));
  const dim3 block(kTile, kRowThreads);
  float* part = partial.data_as<float>();
  if (a.relu)
    grad_partial_kernel<T, true>
        <<<grid, block, 0, s>>>(x, dy, a.mean, a.affine, part, a.rows, a.cols, plan.rows_per_part);
  else
    grad_partial_kernel<T, false>
        <<<grid, block, 0, s>>>(x, dy, a.mean, a.affine, part, a.rows, a.cols, plan.rows_per_part);
  grad_final_kernel<<<static_cast<unsigned>(a.cols), kFinalThreads, 0, s>>>(
      part, plan.parts, a.rows, a.cols, a.gamma, a.var, a.dgamma, a.dbeta, coef.data_as<float>(),
      a.eps);
  constexpr int kWide = Vec<T>::kN;
  const int64_t total = a.rows * a.cols;
  const int w = vector_width<T>(a.cols, {x, dy, dx});
  const unsigned eg = elementwise_grid(total, w);
  const float* c = coef.data_as<float>();
#define RN_INPUT_GRAD(N, RELU) \
  input_grad_kernel<T, N, RELU><<<eg, kBlock, 0, s>>>(x, dy, dx, a.mean, a.affine, c, total, a.cols)
  if (w == kWide)
    a.relu ? RN_INPUT_GRAD(kWide, true) : RN_INPUT_GRAD(kWide, false);
  else
    a.relu ? RN_INPUT_GRAD(1, true) : RN_INPUT_GRAD(1, false);
#undef RN_INPUT_GRAD
}

// Runs `run` with a value of the storage type's C++ type (its type selects the kernels).
template <typename Run>
void dispatch(const char* what, DType t, const NativeBatchNormArgs& a, Run run) {
  if (a.rows == 0 || a.cols == 0) return;
  switch (t) {
    case DType::f32:
      run(float{});
      break;
    case DType::bf16:
      run(__nv_bfloat16{});
      break;
    case DType::f16:
      run(__half{});
      break;
    default:
      RN_FAIL("[batch_norm] " << what << ": unsupported type " << dtype_name(t));
  }
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_native_batch_norm_training(CudaContext& ctx, DType t, const NativeBatchNormArgs& a) {
  dispatch("training forward", t, a, [&](auto v) { forward_training<decltype(v)>(ctx, a); });
}

void launch_native_batch_norm_inference(CudaContext& ctx, DType t, const NativeBatchNormArgs& a) {
  dispatch("inference", t, a, [&](auto v) { forward_inference<decltype(v)>(ctx, a); });
}

void launch_native_batch_norm_backward(CudaContext& ctx, DType t, const NativeBatchNormArgs& a) {
  dispatch("backward", t, a, [&](auto v) { backward<decltype(v)>(ctx, a); });
}

}  // namespace rn::cuda

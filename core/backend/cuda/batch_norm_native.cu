// The CUDA backend's own batch norm (+ ReLU) on NHWC data, for the types cuDNN's batch norm does
// not document (bf16): the __global__ wrappers of the bodies in kernels/batch_norm_kernels.h (their
// design is described there), and the host code that chooses widths and launch shapes.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/batch_norm_kernels.h"

namespace rn::cuda {
namespace {

template <typename T>
__global__ void moments_partial_kernel(const T* x, float* partial, int64_t rows, int64_t cols,
                                       int64_t rows_per_part) {
  moments_partial_body<DevicePtr>(DeviceThread{}, shared_memory<MomentsTile>(), x, partial, rows,
                                  cols, rows_per_part);
}

__global__ void moments_final_kernel(const float* partial, int64_t parts, int64_t cols,
                                     const float* gamma, const float* beta, float* mean, float* var,
                                     float* affine, float eps) {
  moments_final_body<DevicePtr>(DeviceThread{}, shared_memory<MomentsFinalShared>(), partial, parts,
                                cols, gamma, beta, mean, var, affine, eps);
}

__global__ void affine_from_stats_kernel(const float* gamma, const float* beta, const float* mean,
                                         const float* var, float* affine, int64_t cols, float eps) {
  affine_from_stats_body<DevicePtr>(DeviceThread{}, gamma, beta, mean, var, affine, cols, eps);
}

template <int N, bool kRelu, typename T>
__global__ void normalize_kernel(const T* x, T* y, const float* affine, int64_t total,
                                 int64_t cols) {
  normalize_body<N, kRelu, DevicePtr>(DeviceThread{}, x, y, affine, total, cols);
}

template <bool kRelu, typename T>
__global__ void grad_partial_kernel(const T* x, const T* dy, const float* mean, const float* affine,
                                    float* partial, int64_t rows, int64_t cols,
                                    int64_t rows_per_part) {
  grad_partial_body<kRelu, DevicePtr>(DeviceThread{}, shared_memory<GradTile>(), x, dy, mean,
                                      affine, partial, rows, cols, rows_per_part);
}

__global__ void grad_final_kernel(const float* partial, int64_t parts, int64_t rows, int64_t cols,
                                  const float* gamma, const float* var, float* dgamma, float* dbeta,
                                  float* coef, float eps) {
  grad_final_body<DevicePtr>(DeviceThread{}, shared_memory<GradFinalShared>(), partial, parts, rows,
                             cols, gamma, var, dgamma, dbeta, coef, eps);
}

template <int N, bool kRelu, typename T>
__global__ void input_grad_kernel(const T* x, const T* dy, T* dx, const float* mean,
                                  const float* affine, const float* coef, int64_t total,
                                  int64_t cols) {
  input_grad_body<N, kRelu, DevicePtr>(DeviceThread{}, x, dy, dx, mean, affine, coef, total, cols);
}

template <typename T>
void normalize(const T* x, T* y, const float* affine, int64_t total, int64_t cols, bool relu,
               cudaStream_t s) {
  constexpr int kWide = Vec<T>::kN;
  const int w = vector_width<T>(cols, x, y);
  const LaunchShape ls = batch_norm_elementwise_launch(total, w);
  const dim3 grid = grid_of(ls), block = block_of(ls);
  if (w == kWide)
    relu ? normalize_kernel<kWide, true><<<grid, block, 0, s>>>(x, y, affine, total, cols)
         : normalize_kernel<kWide, false><<<grid, block, 0, s>>>(x, y, affine, total, cols);
  else
    relu ? normalize_kernel<1, true><<<grid, block, 0, s>>>(x, y, affine, total, cols)
         : normalize_kernel<1, false><<<grid, block, 0, s>>>(x, y, affine, total, cols);
}

template <typename T>
void forward_training(CudaContext& ctx, const NativeBatchNormArgs& a) {
  cudaStream_t s = ctx.stream();
  const ColumnSumPlan plan = column_sum_plan(a.rows, a.cols);
  Tensor partial = ctx.scratch(static_cast<size_t>(plan.parts * a.cols * 3) * sizeof(float));
  const LaunchShape ls = column_partial_launch(plan), fs = per_channel_launch(a.cols);
  moments_partial_kernel<<<grid_of(ls), block_of(ls), 0, s>>>(
      static_cast<const T*>(a.x), partial.data_as<float>(), a.rows, a.cols, plan.rows_per_part);
  moments_final_kernel<<<grid_of(fs), block_of(fs), 0, s>>>(partial.data_as<float>(), plan.parts,
                                                            a.cols, a.gamma, a.beta, a.batch_mean,
                                                            a.batch_var, a.affine, a.eps);
  normalize(static_cast<const T*>(a.x), static_cast<T*>(a.y), a.affine, a.rows * a.cols, a.cols,
            a.relu, s);
}

template <typename T>
void forward_inference(CudaContext& ctx, const NativeBatchNormArgs& a) {
  cudaStream_t s = ctx.stream();
  const LaunchShape ls = linear_launch(a.cols);
  affine_from_stats_kernel<<<grid_of(ls), block_of(ls), 0, s>>>(a.gamma, a.beta, a.mean, a.var,
                                                                a.affine, a.cols, a.eps);
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
  const LaunchShape ls = column_partial_launch(plan), fs = per_channel_launch(a.cols);
  const dim3 grid = grid_of(ls), block = block_of(ls);
  float* part = partial.data_as<float>();
  if (a.relu)
    grad_partial_kernel<true>
        <<<grid, block, 0, s>>>(x, dy, a.mean, a.affine, part, a.rows, a.cols, plan.rows_per_part);
  else
    grad_partial_kernel<false>
        <<<grid, block, 0, s>>>(x, dy, a.mean, a.affine, part, a.rows, a.cols, plan.rows_per_part);
  grad_final_kernel<<<grid_of(fs), block_of(fs), 0, s>>>(part, plan.parts, a.rows, a.cols, a.gamma,
                                                         a.var, a.dgamma, a.dbeta,
                                                         coef.data_as<float>(), a.eps);
  constexpr int kWide = Vec<T>::kN;
  const int64_t total = a.rows * a.cols;
  const int w = vector_width<T>(a.cols, x, dy, dx);
  const LaunchShape es = batch_norm_elementwise_launch(total, w);
  const dim3 eg = grid_of(es), eb = block_of(es);
  const float* c = coef.data_as<float>();
#define RN_INPUT_GRAD(N, RELU) \
  input_grad_kernel<N, RELU><<<eg, eb, 0, s>>>(x, dy, dx, a.mean, a.affine, c, total, a.cols)
  if (w == kWide)
    a.relu ? RN_INPUT_GRAD(kWide, true) : RN_INPUT_GRAD(kWide, false);
  else
    a.relu ? RN_INPUT_GRAD(1, true) : RN_INPUT_GRAD(1, false);
#undef RN_INPUT_GRAD
}

// Runs `run` with a value of the storage type's C++ type (its type selects the kernels).
template <typename Run>
void dispatch(DType t, const NativeBatchNormArgs& a, Run run) {
  if (a.rows == 0 || a.cols == 0) return;
  for_storage_type(t, "batch_norm", run);
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_native_batch_norm_training(CudaContext& ctx, DType t, const NativeBatchNormArgs& a) {
  dispatch(t, a, [&](auto v) { forward_training<decltype(v)>(ctx, a); });
}

void launch_native_batch_norm_inference(CudaContext& ctx, DType t, const NativeBatchNormArgs& a) {
  dispatch(t, a, [&](auto v) { forward_inference<decltype(v)>(ctx, a); });
}

void launch_native_batch_norm_backward(CudaContext& ctx, DType t, const NativeBatchNormArgs& a) {
  dispatch(t, a, [&](auto v) { backward<decltype(v)>(ctx, a); });
}

}  // namespace rn::cuda

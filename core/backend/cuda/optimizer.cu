// SGD (momentum, Nesterov, weight decay) and LARS updates on fp32 master weights, in place: SGD
// per tensor or many tensors per launch. LARS reads its norms on the device, so an update never
// waits for the host.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/optimizer_kernels.h"

namespace rn::cuda {
namespace {

void check_update(const char* op, const Tensor& w, const Tensor& g, const Tensor& m) {
  RN_CHECK(w.desc().same_layout(g.desc()) && w.desc().same_layout(m.desc()),
           "[" << op << "] weight, gradient and momentum layouts differ: " << w.desc().str() << ", "
               << g.desc().str() << ", " << m.desc().str());
  RN_CHECK(w.dtype() == DType::f32,
           "[" << op << "] master weights must be f32, got " << w.desc().str());
}

template <int N>
__global__ void sgd_kernel(SgdStep step, float* w, const float* g, float* m, int64_t n) {
  sgd_body<N, DevicePtr>(DeviceThread{}, step, w, g, m, n);
}

__global__ void sgd_many_kernel(SgdStep step, const SgdTensorList<DevicePtr> list) {
  sgd_many_body(DeviceThread{}, step, list);
}

__global__ void norms_kernel(const float* w, const float* g, int64_t n, double* norms) {
  norms_body<DevicePtr>(DeviceThread{}, shared_memory<NormsShared>(), w, g, n, norms);
}

__global__ void lars_kernel(float* w, const float* g, float* m, int64_t n, const double* norms,
                            float lr, float mu, float wd, float eta) {
  lars_body<DevicePtr>(DeviceThread{}, w, g, m, n, norms, lr, mu, wd, eta);
}

SgdStep sgd_step(const SgdParams& p) {
  return SgdStep{p.lr, p.momentum, p.weight_decay, p.nesterov};
}

}  // namespace

void CudaBackend::sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) {
  check_update("sgd", w, g, m);
  const int64_t n = w.numel();
  float* wp = w.data_as<float>();
  const float* gp = g.data_as<float>();
  float* mp = m.data_as<float>();
  // float4 accesses where all three buffers allow them (a view may start anywhere).
  const int width = vector_width<float>(4, wp, gp, mp);
  const LaunchShape ls = sgd_launch(n, width);
  if (width == 4)
    sgd_kernel<4><<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(sgd_step(p), wp, gp, mp, n);
  else
    sgd_kernel<1><<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(sgd_step(p), wp, gp, mp, n);
  RN_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::sgd_update_many(const SgdParams& p, const std::vector<UpdateTensors>& list) {
  static_assert(sizeof(SgdTensorList<DevicePtr>) <= 4000,
                "a launch takes at most 4 KB of arguments");
  SgdTensorList<DevicePtr> batch{};
  auto launch = [&] {
    if (batch.count == 0) return;
    const LaunchShape ls = multi_tensor_launch(batch);
    sgd_many_kernel<<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(sgd_step(p), batch);
    RN_CUDA_CHECK(cudaGetLastError());
    batch.count = 0;
  };
  for (const UpdateTensors& u : list) {
    check_update("sgd", *u.w, *u.g, *u.m);
    const int64_t n = u.w->numel();
    if (n == 0) continue;
    float* w = u.w->data_as<float>();
    const float* g = u.g->data_as<float>();
    float* m = u.m->data_as<float>();
    // The batched body reads float4s: a tensor not 16-byte aligned takes the single update.
    if (vector_width<float>(4, w, g, m) != 4) {
      sgd_update(p, *u.w, *u.g, *u.m);
      continue;
    }
    const int k = multi_tensor_add(batch, n);
    batch.w[k] = w, batch.g[k] = g, batch.m[k] = m;
    if (batch.count == kMultiTensors) launch();
  }
  launch();
}

void CudaBackend::lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) {
  check_update("lars", w, g, m);
  const int64_t n = w.numel();
  Tensor norms = allocate(TensorDesc{Shape{4}, DType::f32, nullptr});  // two doubles
  RN_CUDA_CHECK(cudaMemsetAsync(norms.data(), 0, 2 * sizeof(double), ctx_.stream()));
  // Partial sums of at most 1024 blocks: one atomic each.
  const LaunchShape ns = norms_launch(n), ls = linear_launch(n);
  norms_kernel<<<grid_of(ns), block_of(ns), 0, ctx_.stream()>>>(
      w.data_as<float>(), g.data_as<float>(), n, norms.data_as<double>());
  lars_kernel<<<grid_of(ls), block_of(ls), 0, ctx_.stream()>>>(
      w.data_as<float>(), g.data_as<float>(), m.data_as<float>(), n, norms.data_as<double>(), p.lr,
      p.momentum, p.weight_decay, p.eta);
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

// SGD (momentum, Nesterov, weight decay) and LARS updates on fp32 master weights, in place: SGD
// per tensor or many tensors per launch. LARS reads its norms on the device, so an update never
// waits for the host.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_util.cuh"

namespace rn::cuda {
namespace {

void check_update(const char* op, const Tensor& w, const Tensor& g, const Tensor& m) {
  RN_CHECK(w.desc().same_layout(g.desc()) && w.desc().same_layout(m.desc()),
           "[" << op << "] weight, gradient and momentum layouts differ: " << w.desc().str() << ", "
               << g.desc().str() << ", " << m.desc().str());
  RN_CHECK(w.dtype() == DType::f32,
           "[" << op << "] master weights must be f32, got " << w.desc().str());
}

// float4 accesses where the size allows (every buffer is 256-byte aligned); the update is
// bound by memory traffic (three reads, two writes per element).
__global__ void sgd_kernel(float* w, const float* g, float* m, int64_t n, float lr, float mu,
                           float wd, bool nesterov) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t first = thread_index();
  auto step = [&](float& wv, float gv, float& mv) {
    const float d = gv + wd * wv;
    mv = mu * mv + d;
    wv -= lr * (nesterov ? d + mu * mv : mv);
  };
  const int64_t n4 = n / 4;
  for (int64_t i = first; i < n4; i += stride) {
    float4 wv = reinterpret_cast<float4*>(w)[i], mv = reinterpret_cast<float4*>(m)[i];
    const float4 gv = reinterpret_cast<const float4*>(g)[i];
    step(wv.x, gv.x, mv.x), step(wv.y, gv.y, mv.y), step(wv.z, gv.z, mv.z), step(wv.w, gv.w, mv.w);
    reinterpret_cast<float4*>(w)[i] = wv;
    reinterpret_cast<float4*>(m)[i] = mv;
  }
  for (int64_t i = n4 * 4 + first; i < n; i += stride) step(w[i], g[i], m[i]);
}

// Many tensors in one launch, as kernel arguments (64 tensors: 2.6 KB of the 4 KB a launch
// takes): each block updates one chunk of one tensor (multi_tensor_of_block).
struct SgdTensorList {
  float* w[kMultiTensors];
  const float* g[kMultiTensors];
  float* m[kMultiTensors];
  int64_t n[kMultiTensors];
  int64_t first_block[kMultiTensors + 1];  // first_block[count] = the grid size
  int count;
};

__global__ void sgd_many_kernel(const SgdTensorList list, float lr, float mu, float wd,
                                bool nesterov) {
  const int t = multi_tensor_of_block(list.first_block, list.count);
  const int64_t begin = (static_cast<int64_t>(blockIdx.x) - list.first_block[t]) * kMultiChunk;
  const int64_t end = min(list.n[t], begin + kMultiChunk);
  float* w = list.w[t];
  const float* g = list.g[t];
  float* m = list.m[t];
  auto step = [&](float& wv, float gv, float& mv) {
    const float d = gv + wd * wv;
    mv = mu * mv + d;
    wv -= lr * (nesterov ? d + mu * mv : mv);
  };
  // Whole float4s (the buffers are 16-byte aligned, checked on the host, and begin is a
  // multiple of 4), then the tensor's last 1-3 elements by the thread whose float4 they start.
  int64_t i = begin + threadIdx.x * 4;
  for (; i + 3 < end; i += blockDim.x * 4) {
    float4 wv = *reinterpret_cast<float4*>(w + i), mv = *reinterpret_cast<float4*>(m + i);
    const float4 gv = *reinterpret_cast<const float4*>(g + i);
    step(wv.x, gv.x, mv.x), step(wv.y, gv.y, mv.y), step(wv.z, gv.z, mv.z), step(wv.w, gv.w, mv.w);
    *reinterpret_cast<float4*>(w + i) = wv;
    *reinterpret_cast<float4*>(m + i) = mv;
  }
  for (int64_t k = i; k < end; ++k) step(w[k], g[k], m[k]);
}

// Sums of w^2 and g^2 into norms[0], norms[1] (zeroed before): per-block partial sums, then one
// atomic per block.
__global__ void norms_kernel(const float* w, const float* g, int64_t n, double* norms) {
  __shared__ double sw[kBlock], sg[kBlock];
  double a = 0, b = 0;
  for (int64_t i = thread_index(); i < n; i += grid_stride())
    a += double(w[i]) * w[i], b += double(g[i]) * g[i];
  sw[threadIdx.x] = a, sg[threadIdx.x] = b;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      sw[threadIdx.x] += sw[threadIdx.x + s], sg[threadIdx.x] += sg[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(&norms[0], sw[0]), atomicAdd(&norms[1], sg[0]);
}

__global__ void lars_kernel(float* w, const float* g, float* m, int64_t n, const double* norms,
                            float lr, float mu, float wd, float eta) {
  const double wn = sqrt(norms[0]), gn = sqrt(norms[1]);
  // A zero weight or gradient norm falls back to the plain learning rate.
  const float trust = (wn > 0 && gn > 0) ? static_cast<float>(eta * wn / (gn + wd * wn)) : 1.f;
  const float rate = lr * trust;
  for (int64_t i = thread_index(); i < n; i += grid_stride()) {
    m[i] = mu * m[i] + rate * (g[i] + wd * w[i]);
    w[i] -= m[i];
  }
}

}  // namespace

void CudaBackend::sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) {
  check_update("sgd", w, g, m);
  const int64_t n = w.numel();
  sgd_kernel<<<grid_for(n / 4 + 1, kBlock), kBlock, 0, ctx_.stream()>>>(
      w.data_as<float>(), g.data_as<float>(), m.data_as<float>(), n, p.lr, p.momentum,
      p.weight_decay, p.nesterov);
  RN_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::sgd_update_many(const SgdParams& p, const std::vector<UpdateTensors>& list) {
  static_assert(sizeof(SgdTensorList) <= 4000, "a launch takes at most 4 KB of arguments");
  SgdTensorList batch{};
  auto launch = [&] {
    if (batch.count == 0) return;
    sgd_many_kernel<<<static_cast<unsigned>(batch.first_block[batch.count]), kBlock, 0,
                      ctx_.stream()>>>(batch, p.lr, p.momentum, p.weight_decay, p.nesterov);
    RN_CUDA_CHECK(cudaGetLastError());
    batch.count = 0;
  };
  for (const UpdateTensors& u : list) {
    check_update("sgd", *u.w, *u.g, *u.m);
    const uintptr_t addresses = reinterpret_cast<uintptr_t>(u.w->data()) |
                                reinterpret_cast<uintptr_t>(u.g->data()) |
                                reinterpret_cast<uintptr_t>(u.m->data());
    RN_CHECK(addresses % 16 == 0, "[sgd] the batched update needs 16-byte aligned buffers");
    const int64_t n = u.w->numel();
    if (n == 0) continue;
    const int k = multi_tensor_add(batch, n);
    batch.w[k] = u.w->data_as<float>();
    batch.g[k] = u.g->data_as<float>();
    batch.m[k] = u.m->data_as<float>();
    if (batch.count == kMultiTensors) launch();
  }
  launch();
}

void CudaBackend::lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) {
  check_update("lars", w, g, m);
  const int64_t n = w.numel();
  Tensor norms = allocate(TensorDesc{Shape{4}, DType::f32, nullptr});  // two doubles
  RN_CUDA_CHECK(cudaMemsetAsync(norms.data(), 0, 2 * sizeof(double), ctx_.stream()));
  const unsigned grid = grid_for(n, kBlock);
  // Partial sums of at most 1024 blocks: one atomic each.
  const unsigned norm_grid = grid < 1024 ? grid : 1024;
  norms_kernel<<<norm_grid, kBlock, 0, ctx_.stream()>>>(w.data_as<float>(), g.data_as<float>(), n,
                                                        norms.data_as<double>());
  lars_kernel<<<grid, kBlock, 0, ctx_.stream()>>>(w.data_as<float>(), g.data_as<float>(),
                                                  m.data_as<float>(), n, norms.data_as<double>(),
                                                  p.lr, p.momentum, p.weight_decay, p.eta);
  RN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rn::cuda

// Max, average and global-average pooling on NHWC, forward and backward, as the project's own
// kernels: the op interface hands backward only the output gradient and a workspace, so max
// pooling keeps the position of each window's maximum (one byte per output) instead of the
// input and output that cuDNN's pooling backward would read again.
#include <cfloat>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_util.cuh"

namespace rn::cuda {
namespace {

__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void store(__half* p, float v) {
  *p = __float2half_rn(v);
}

struct Geometry {
  int64_t n, c, h, w, oh, ow;
  int kh, kw, s, pad;
  bool max;
  // PyTorch's count_include_pad divisor: the window clipped to the padded input.
  __device__ int divisor(int64_t y, int64_t x) const {
    const int64_t h0 = y * s - pad, w0 = x * s - pad;
    const int64_t h1 = min(h0 + kh, h + pad), w1 = min(w0 + kw, w + pad);
    return static_cast<int>((h1 - h0) * (w1 - w0));
  }
};

// One thread per output element in NHWC order: neighbouring threads take neighbouring channels,
// so every read of the window is coalesced.
template <typename T>
__global__ void pool_forward_kernel(Geometry g, const T* x, T* y, uint8_t* argmax) {
  const int64_t total = g.n * g.oh * g.ow * g.c;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    int64_t r = i;
    const int64_t c = r % g.c;
    r /= g.c;
    const int64_t ox = r % g.ow;
    r /= g.ow;
    const int64_t oy = r % g.oh, n = r / g.oh;
    const int64_t h0 = oy * g.s - g.pad, w0 = ox * g.s - g.pad;
    float best = -FLT_MAX, sum = 0.f;
    int arg = 0;
    for (int ky = 0; ky < g.kh; ++ky) {
      const int64_t hy = h0 + ky;
      if (hy < 0 || hy >= g.h) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const int64_t wx = w0 + kx;
        if (wx < 0 || wx >= g.w) continue;
        const float v = to_f(x[((n * g.h + hy) * g.w + wx) * g.c + c]);
        sum += v;
        if (v > best) best = v, arg = ky * g.kw + kx;
      }
    }
    if (g.max) {
      store(y + i, best);
      if (argmax) argmax[i] = static_cast<uint8_t>(arg);
    } else {
      store(y + i, sum / g.divisor(oy, ox));
    }
  }
}

__device__ __forceinline__ int64_t clamp_index(int64_t i, int64_t n) {
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

// One thread per input element, gathering from every window that covers it: no atomics, and
// the sum is deterministic.
template <typename T>
__global__ void pool_backward_kernel(Geometry g, const T* dy, const uint8_t* argmax, T* dx) {
  const int64_t total = g.n * g.h * g.w * g.c;
  for (int64_t i = thread_index(); i < total; i += grid_stride()) {
    int64_t r = i;
    const int64_t c = r % g.c;
    r /= g.c;
    const int64_t x = r % g.w;
    r /= g.w;
    const int64_t y = r % g.h, n = r / g.h;
    // Windows oy with oy*s - pad <= y < oy*s - pad + kh.
    const int64_t oy0 = clamp_index((y + g.pad - g.kh + g.s) / g.s, g.oh);
    const int64_t oy1 = clamp_index((y + g.pad) / g.s, g.oh);
    const int64_t ox0 = clamp_index((x + g.pad - g.kw + g.s) / g.s, g.ow);
    const int64_t ox1 = clamp_index((x + g.pad) / g.s, g.ow);
    float sum = 0.f;
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      const int64_t ky = y - (oy * g.s - g.pad);
      if (ky < 0 || ky >= g.kh) continue;
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t kx = x - (ox * g.s - g.pad);
        if (kx < 0 || kx >= g.kw) continue;
        const int64_t o = ((n * g.oh + oy) * g.ow + ox) * g.c + c;
        if (g.max)
          sum += argmax[o] == ky * g.kw + kx ? to_f(dy[o]) : 0.f;
        else
          sum += to_f(dy[o]) / g.divisor(oy, ox);
      }
    }
    store(dx + i, sum);
  }
}

class CudaPool final : public PoolOp {
 public:
  CudaPool(CudaBackend& be, const PoolParams& p, const TensorDesc& x, bool training) : be_(be) {
    RN_CHECK(x.shape.rank() == 4, "[pool] input must be N x C x H x W, got " << x.shape.str());
    g_.n = x.shape[0], g_.c = x.shape[1], g_.h = x.shape[2], g_.w = x.shape[3];
    g_.kh = g_.kw = p.kernel, g_.s = p.stride, g_.pad = p.pad;
    if (p.global)
      g_.kh = static_cast<int>(g_.h), g_.kw = static_cast<int>(g_.w), g_.s = 1, g_.pad = 0;
    g_.max = p.kind == PoolKind::max;
    RN_CHECK(!g_.max || g_.kh * g_.kw <= 256,
             "[pool] max pooling windows hold at most 256 elements, got " << g_.kh << "x" << g_.kw);
    g_.oh = (g_.h + 2 * g_.pad - g_.kh) / g_.s + 1;
    g_.ow = (g_.w + 2 * g_.pad - g_.kw) / g_.s + 1;
    RN_CHECK(g_.oh > 0 && g_.ow > 0,
             "[pool] input " << x.shape.str() << " too small for kernel " << g_.kh);
    x_desc_ = nhwc_desc(x.shape, x.dtype);
    out_desc_ = nhwc_desc(Shape{g_.n, g_.c, g_.oh, g_.ow}, x.dtype);
    if (training && g_.max)
      ws_desc_ = TensorDesc{Shape{(out_desc_.shape.numel() + 3) / 4}, DType::f32, nullptr};
  }

  const TensorDesc& output_desc() const override { return out_desc_; }
  const TensorDesc& workspace_desc() const override { return ws_desc_; }

  void forward(const Tensor& x, Tensor& y, Tensor* workspace) override {
    Tensor xs = be_.as_layout(x, x_desc_);
    RN_CHECK(y.desc().same_layout(out_desc_),
             "[pool] output must be " << out_desc_.str() << ", got " << y.desc().str());
    uint8_t* arg = nullptr;
    if (ws_desc_.shape.rank() > 0) {
      RN_CHECK(workspace != nullptr, "[pool] max pooling in training needs a workspace");
      arg = workspace->data_as<uint8_t>();
    }
    const unsigned grid = grid_for(out_desc_.shape.numel(), kBlock);
    cudaStream_t s = be_.context().stream();
    switch (x_desc_.dtype) {
#define RN_POOL_FWD(DT, T)                                                               \
  case DT:                                                                               \
    pool_forward_kernel<T><<<grid, kBlock, 0, s>>>(g_, static_cast<const T*>(xs.data()), \
                                                   static_cast<T*>(y.data()), arg);      \
    break;
      RN_POOL_FWD(DType::f32, float)
      RN_POOL_FWD(DType::bf16, __nv_bfloat16)
      RN_POOL_FWD(DType::f16, __half)
      default:
        RN_FAIL("[pool] unsupported type " << dtype_name(x_desc_.dtype));
    }
    RN_CUDA_CHECK(cudaGetLastError());
  }

  void backward(const Tensor& dy, const Tensor* workspace, Tensor& dx) override {
    Tensor dys = be_.as_layout(dy, out_desc_);
    Tensor dxs = dx.desc().same_layout(x_desc_) ? dx : be_.allocate(x_desc_);
    const uint8_t* arg = nullptr;
    if (g_.max) {
      RN_CHECK(workspace != nullptr, "[pool] max pooling backward needs the forward's workspace");
      arg = workspace->data_as<uint8_t>();
    }
    const unsigned grid = grid_for(x_desc_.shape.numel(), kBlock);
    cudaStream_t s = be_.context().stream();
    switch (x_desc_.dtype) {
#define RN_POOL_BWD(DT, T)                                                                      \
  case DT:                                                                                      \
    pool_backward_kernel<T><<<grid, kBlock, 0, s>>>(g_, static_cast<const T*>(dys.data()), arg, \
                                                    static_cast<T*>(dxs.data()));               \
    break;
      RN_POOL_BWD(DType::f32, float)
      RN_POOL_BWD(DType::bf16, __nv_bfloat16)
      RN_POOL_BWD(DType::f16, __half)
      default:
        RN_FAIL("[pool] unsupported type " << dtype_name(x_desc_.dtype));
    }
    RN_CUDA_CHECK(cudaGetLastError());
    if (dxs.data() != dx.data()) be_.reorder(dxs, dx);
  }

 private:
  CudaBackend& be_;
  Geometry g_;
  TensorDesc x_desc_, out_desc_, ws_desc_;
};

}  // namespace

std::unique_ptr<PoolOp> make_pool(CudaBackend& be, const PoolParams& p, const TensorDesc& x,
                                  bool training) {
  return std::make_unique<CudaPool>(be, p, x, training);
}

}  // namespace rn::cuda

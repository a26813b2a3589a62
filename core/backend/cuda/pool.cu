// Max, average and global-average pooling on NHWC, forward and backward, as the project's own
// kernels: the op interface hands backward only the output gradient and a workspace, so max
// pooling keeps the position of each window's maximum (one byte per output) instead of the
// input and output that cuDNN's pooling backward would read again.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/kernel_launch.cuh"
#include "core/backend/cuda/kernels/pool_kernels.h"

namespace rn::cuda {
namespace {

template <typename T>
__global__ void pool_forward_kernel(PoolGeometry g, const T* x, T* y, uint8_t* argmax) {
  pool_forward_body<DevicePtr>(DeviceThread{}, g, x, y, argmax);
}

template <typename T>
__global__ void pool_backward_kernel(PoolGeometry g, const T* dy, const uint8_t* argmax, T* dx) {
  pool_backward_body<DevicePtr>(DeviceThread{}, g, dy, argmax, dx);
}

class CudaPool final : public PoolOp {
 public:
  CudaPool(CudaBackend& be, const PoolParams& p, const TensorDesc& x, bool training)
      : PoolOp(x.shape), be_(be) {
    g_ = pool_geometry(p, x.shape);
    x_desc_ = nhwc_desc(x.shape, x.dtype);
    out_desc_ = nhwc_desc(Shape{g_.n, g_.c, g_.oh, g_.ow}, x.dtype);
    if (training && g_.max)
      ws_desc_ = TensorDesc{Shape{(out_desc_.shape.numel() + 3) / 4}, DType::f32, nullptr};
  }

  const TensorDesc& output_desc() const override { return out_desc_; }
  const TensorDesc& workspace_desc() const override { return ws_desc_; }

  void forward_impl(const Tensor& x, Tensor& y, Tensor* workspace) override {
    Tensor xs = be_.as_layout(x, x_desc_);
    RN_CHECK(y.desc().same_layout(out_desc_),
             "[pool] output must be " << out_desc_.str() << ", got " << y.desc().str());
    uint8_t* arg = nullptr;
    if (ws_desc_.shape.rank() > 0) {
      RN_CHECK(workspace != nullptr, "[pool] max pooling in training needs a workspace");
      arg = workspace->data_as<uint8_t>();
    }
    const LaunchShape ls = linear_launch(out_desc_.shape.numel());
    cudaStream_t s = be_.context().stream();
    for_storage_type(x_desc_.dtype, "pool", [&](auto v) {
      using T = decltype(v);
      pool_forward_kernel<T><<<grid_of(ls), block_of(ls), 0, s>>>(
          g_, static_cast<const T*>(xs.data()), static_cast<T*>(y.data()), arg);
    });
    RN_CUDA_CHECK(cudaGetLastError());
  }

  void backward_impl(const Tensor& dy, const Tensor* workspace, Tensor& dx) override {
    Tensor dys = be_.as_layout(dy, out_desc_);
    Tensor dxs = dx.desc().same_layout(x_desc_) ? dx : be_.allocate(x_desc_);
    const uint8_t* arg = nullptr;
    if (g_.max) {
      RN_CHECK(workspace != nullptr, "[pool] max pooling backward needs the forward's workspace");
      arg = workspace->data_as<uint8_t>();
    }
    const LaunchShape ls = linear_launch(x_desc_.shape.numel());
    cudaStream_t s = be_.context().stream();
    for_storage_type(x_desc_.dtype, "pool", [&](auto v) {
      using T = decltype(v);
      pool_backward_kernel<T><<<grid_of(ls), block_of(ls), 0, s>>>(
          g_, static_cast<const T*>(dys.data()), arg, static_cast<T*>(dxs.data()));
    });
    RN_CUDA_CHECK(cudaGetLastError());
    if (dxs.data() != dx.data()) be_.reorder(dxs, dx);
  }

 private:
  CudaBackend& be_;
  PoolGeometry g_;
  TensorDesc x_desc_, out_desc_, ws_desc_;
};

}  // namespace

std::unique_ptr<PoolOp> make_pool(CudaBackend& be, const PoolParams& p, const TensorDesc& x,
                                  bool training) {
  return std::make_unique<CudaPool>(be, p, x, training);
}

}  // namespace rn::cuda

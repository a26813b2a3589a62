// The CUDA implementation of the Backend interface: cuDNN convolution and batch norm, cuBLAS
// linear layers, and the project's own kernels for pooling, element-wise ops, loss, optimizers
// and casts. Activations are NHWC; every call is queued on the context's one stream.
#pragma once

#include <memory>

#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_common.h"

namespace rn::cuda {

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, MathMode math);
  ~CudaBackend() override;
  Device device() const override { return Device{DeviceKind::cuda, ctx_.device()}; }
  std::string name() const override;

  Tensor allocate(const TensorDesc& desc) override { return ctx_.allocate(desc); }
  Tensor allocate_persistent(const TensorDesc& desc) override;
  LayoutPtr layout_like(const TensorDesc& like, const Shape& shape) override;
  Tensor upload(const Tensor& host) override;
  Tensor upload_persistent(const Tensor& host) override;
  Tensor download(const Tensor& t) override;
  Tensor allocate_pinned(const TensorDesc& desc) override;
  void upload_ahead(const Tensor& host, Tensor& dst) override;

  std::unique_ptr<ConvOp> make_conv(const ConvParams& p, const TensorDesc& x,
                                    bool training) override;
  std::unique_ptr<BatchNormOp> make_batch_norm(const BatchNormParams& p, const TensorDesc& x,
                                               bool training) override;
  std::unique_ptr<PoolOp> make_pool(const PoolParams& p, const TensorDesc& x,
                                    bool training) override;
  std::unique_ptr<LinearOp> make_linear(const LinearParams& p, const TensorDesc& x) override;

  void relu_forward(const Tensor& x, Tensor& y) override;
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void relu_backward_add(const Tensor& y, const Tensor& a, const Tensor& b, Tensor& dx) override;
  void add(const Tensor& a, const Tensor& b, Tensor& y, bool relu) override;
  void add_inplace(Tensor& y, const Tensor& x) override;
  void axpby(Tensor& y, float a, const Tensor& x, float b) override;
  void sigmoid_forward(const Tensor& x, Tensor& y) override;
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void mul(const Tensor& a, const Tensor& b, Tensor& y, float alpha, float beta) override;
  void scale_to(const Tensor& x, float factor, Tensor& y) override;
  void dropout_forward(const Tensor& x, float p, uint64_t key, Tensor& y) override;
  void dropout_backward(const Tensor& dy, float p, uint64_t key, Tensor& dx) override;
  void pad_shortcut_forward(const Tensor& x, int stride, Tensor& y) override;
  void pad_shortcut_backward(const Tensor& dy, int stride, Tensor& dx) override;
  void channel_affine_add(Tensor& y, const Tensor& x, const Tensor& scale,
                          const Tensor& shift) override;

  void queue_softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                   const CrossEntropyParams& p, Tensor* dlogits) override;
  LossStats queued_loss_stats() override;
  LossStats softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                  const CrossEntropyParams& p, Tensor* dlogits) override;

  void sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) override;
  void sgd_update_many(const SgdParams& p, const std::vector<UpdateTensors>& list) override;
  void lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) override;

  void fill(Tensor& t, float value) override;
  void scale(Tensor& t, float factor) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void reorder(const Tensor& src, Tensor& dst) override;
  void cast(const Tensor& src, Tensor& dst) override;
  void cast_many(const std::vector<CastPair>& list) override;
  bool all_finite(const Tensor& t) override;
  void copy_bytes(const Tensor& src, size_t src_offset, Tensor& dst, size_t dst_offset,
                  size_t bytes) override;
  void synchronize() override;

  CudaContext& context() { return ctx_; }
  MathMode math_mode() const { return math_; }
  // `t` in layout `want` (same shape and dtype): itself when it already is, else a pooled copy.
  Tensor as_layout(const Tensor& t, const TensorDesc& want);

 private:
  // Same-dtype layout change (NCHW <-> NHWC): a tiled transpose (kernels/layout_kernels.h).
  void transform(const Tensor& src, Tensor& dst);
  // The option-A shortcut's zero-padding map, forward (x -> y) or backward (dy -> dx).
  void pad_shortcut(bool forward, const Tensor& in, int stride, Tensor& out);

  CudaContext ctx_;
  MathMode math_;
  // Pinned host words the loss and finiteness checks return through (one copy, one sync).
  void* host_result_ = nullptr;
  Tensor device_result_;
  // The loss's own pinned words (a queued loss is read after other checks used host_result_),
  // its batch size and classes, and the event after its copy back.
  void* host_loss_ = nullptr;
  int64_t loss_n_ = 0, loss_k_ = 0;
  cudaEvent_t loss_done_ = nullptr;
  // upload_ahead: the copy stream, the compute stream's position at the previous call (what the
  // next copy waits for) and the end of the last copy (what compute waits for).
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t compute_mark_ = nullptr, copy_done_ = nullptr;
  bool has_mark_ = false;
};

// Page-locked host memory (cudaHostAlloc): the source of asynchronous uploads.
class PinnedAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) noexcept override;
};

// The op objects, one family per file (conv.cpp, batch_norm.cpp, pool.cu, linear.cpp).
std::unique_ptr<ConvOp> make_conv(CudaBackend& be, const ConvParams& p, const TensorDesc& x,
                                  bool training);
std::unique_ptr<BatchNormOp> make_batch_norm(CudaBackend& be, const BatchNormParams& p,
                                             const TensorDesc& x);
std::unique_ptr<PoolOp> make_pool(CudaBackend& be, const PoolParams& p, const TensorDesc& x,
                                  bool training);
std::unique_ptr<LinearOp> make_linear(CudaBackend& be, const LinearParams& p, const TensorDesc& x);

// Kernels the op files launch (defined in eltwise.cu).
void launch_bias_add(DType t, void* y, const float* bias, int64_t rows, int64_t cols,
                     cudaStream_t s);
// db[j] = sum over rows of dy[r][j] (dy: rows x cols of type t), in two deterministic passes
// over a partial-sum buffer from the context's pool, on the grid of column_sum_plan.
void launch_column_sum(CudaContext& ctx, DType t, const void* dy, float* db, int64_t rows,
                       int64_t cols);
// The project's own NHWC batch norm (batch_norm_native.cu): x, y, dy, dx are rows x cols
// (N*H*W x C) of one storage type; the per-channel vectors are f32. `affine` (2 cols floats) is
// the forward's y = scale * x + shift, written by the forward and read by the backward's ReLU
// mask, so the two agree exactly; `relu` fuses the ReLU that follows.
struct NativeBatchNormArgs {
  int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  bool relu = false;
  const void* x = nullptr;
  void* y = nullptr;
  const void* dy = nullptr;
  void* dx = nullptr;
  const float *gamma = nullptr, *beta = nullptr;
  const float *mean = nullptr, *var = nullptr;        // the statistics inference and backward use
  float *batch_mean = nullptr, *batch_var = nullptr;  // the training forward's
  float* affine = nullptr;
  float *dgamma = nullptr, *dbeta = nullptr;
};
// Training forward: the batch mean and biased variance into batch_mean / batch_var, affine,
// then y.
void launch_native_batch_norm_training(CudaContext& ctx, DType t, const NativeBatchNormArgs& a);
// Inference with the given mean / var (affine is scratch here).
void launch_native_batch_norm_inference(CudaContext& ctx, DType t, const NativeBatchNormArgs& a);
// Backward from the given mean / var (and, with relu, the forward's affine): dx, dgamma, dbeta.
void launch_native_batch_norm_backward(CudaContext& ctx, DType t, const NativeBatchNormArgs& a);
// var = 1 / inv_std^2 - eps (cuDNN saves the inverse standard deviation; the interface wants
// the biased variance), and back for backward.
void launch_inv_std_to_var(const float* inv_std, float* var, int64_t c, double eps, cudaStream_t s);
void launch_var_to_inv_std(const float* var, float* inv_std, int64_t c, double eps, cudaStream_t s);

}  // namespace rn::cuda

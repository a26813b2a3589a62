// Batch normalization on cuDNN, fused with the ReLU that follows it where cuDNN offers it
// (CUDNN_BATCHNORM_OPS_BN_ACTIVATION on NHWC, with the reserve space as the workspace). The
// scale, shift and statistics stay fp32 whatever the activations' type, as cuDNN requires.
#include "core/backend/cuda/cuda_backend.h"

namespace rn::cuda {
namespace {

class CudaBatchNorm final : public BatchNormOp {
 public:
  CudaBatchNorm(CudaBackend& be, const BatchNormParams& p, const TensorDesc& x)
      : be_(be), ctx_(be.context()), p_(p) {
    RN_CHECK(x.shape.rank() == 4,
             "[batch_norm] input must be N x C x H x W, got " << x.shape.str());
    x_desc_ = nhwc_desc(x.shape, x.dtype);
    channels_ = x.shape[1];
    set_tensor_desc(xd_, x_desc_);
    RN_CUDNN_CHECK(
        cudnnSetActivationDescriptor(act_, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    // cuDNN documents the fused BN + ReLU kernel for NHWC half-precision data only; where a
    // configuration is refused at run time the op falls back (see configure()).
    const bool try_fused = p.fuse_relu && x.dtype != DType::f32;
    if (!(try_fused &&
          configure(CUDNN_BATCHNORM_OPS_BN_ACTIVATION, CUDNN_BATCHNORM_SPATIAL_PERSISTENT)) &&
        !configure(CUDNN_BATCHNORM_OPS_BN, CUDNN_BATCHNORM_SPATIAL_PERSISTENT) &&
        !configure(CUDNN_BATCHNORM_OPS_BN, CUDNN_BATCHNORM_SPATIAL))
      RN_FAIL("[batch_norm] cuDNN offers no batch norm for " << x_desc_.str());
    // The layer keeps the reserve space from forward to backward when fused with ReLU.
    if (p.fuse_relu)
      ws_desc_ =
          TensorDesc{Shape{static_cast<int64_t>((std::max<size_t>(reserve_bytes_, 4) + 3) / 4)},
                     DType::f32, nullptr};
    inv_std_ = be.allocate_persistent(TensorDesc{Shape{channels_}, DType::f32, nullptr});
    running_ = be.allocate_persistent(TensorDesc{Shape{2 * channels_}, DType::f32, nullptr});
  }

  const TensorDesc& output_desc() const override { return x_desc_; }
  const TensorDesc& workspace_desc() const override { return ws_desc_; }

  void forward_training(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                        Tensor& mean, Tensor& var, Tensor* workspace) override {
    Tensor xs = be_.as_layout(x, x_desc_);
    check_out(y);
    RN_CHECK(!p_.fuse_relu || workspace != nullptr, "[batch_norm] fused ReLU needs a workspace");
    cudnnStatus_t st = forward_ex(xs, gamma, beta, y, mean, workspace);
    while (st == CUDNN_STATUS_NOT_SUPPORTED && fall_back())
      st = forward_ex(xs, gamma, beta, y, mean, workspace);
    RN_CHECK(st == CUDNN_STATUS_SUCCESS,
             "[batch_norm] cudnnBatchNormalizationForwardTrainingEx: " << cudnnGetErrorString(st)
                                                                       << " for " << x_desc_.str());
    launch_inv_std_to_var(inv_std_.data_as<float>(), var.data_as<float>(), channels_, p_.eps,
                          ctx_.stream());
    if (p_.fuse_relu && ops_ == CUDNN_BATCHNORM_OPS_BN) be_.relu_forward(y, y);
    // Backward of the fused op reads the output and the shift again.
    if (p_.fuse_relu) saved_y_ = y, saved_beta_ = beta;
  }

  void forward_inference(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const Tensor& mean, const Tensor& var, Tensor& y) override {
    Tensor xs = be_.as_layout(x, x_desc_);
    check_out(y);
    const float one = 1.f, zero = 0.f;
    RN_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
        ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd_, xs.data(), xd_, y.data(), bnd_,
        gamma.data(), beta.data(), mean.data(), var.data(), p_.eps));
    if (p_.fuse_relu) be_.relu_forward(y, y);
  }

  void backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
                const Tensor& var, const Tensor* workspace, Tensor& dx, Tensor& dgamma,
                Tensor& dbeta) override {
    RN_CHECK(reserve_.defined(), "[batch_norm] backward without a training forward");
    Tensor xs = be_.as_layout(x, x_desc_), dys = be_.as_layout(dy, x_desc_);
    Tensor dxs = dx.desc().same_layout(x_desc_) ? dx : be_.allocate(x_desc_);
    if (p_.fuse_relu && ops_ == CUDNN_BATCHNORM_OPS_BN) {
      // ReLU ran as its own kernel: its gradient first, from the saved output.
      Tensor g = be_.allocate(x_desc_);
      be_.relu_backward(saved_y_, dys, g);
      dys = g;
    }
    launch_var_to_inv_std(var.data_as<float>(), inv_std_.data_as<float>(), channels_, p_.eps,
                          ctx_.stream());
    Tensor ws = ctx_.scratch(bwd_ws_bytes_);
    const bool act = ops_ == CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
    const float one = 1.f, zero = 0.f;
    RN_CUDNN_CHECK(cudnnBatchNormalizationBackwardEx(
        ctx_.cudnn(), mode_, ops_, &one, &zero, &one, &zero, xd_, xs.data(),
        act ? xd_.get() : nullptr, act ? saved_y_.data() : nullptr, xd_, dys.data(), nullptr,
        nullptr, xd_, dxs.data(), bnd_, gamma.data(), act ? saved_beta_.data() : nullptr,
        dgamma.data(), dbeta.data(), p_.eps, mean.data(), inv_std_.data(), activation(), ws.data(),
        bwd_ws_bytes_, reserve_.data(), reserve_bytes_));
    if (dxs.data() != dx.data()) be_.reorder(dxs, dx);
    reserve_ = Tensor(), saved_y_ = Tensor(), saved_beta_ = Tensor();
  }

 private:
  // Takes the (ops, mode) configuration and its workspace and reserve sizes; false when cuDNN
  // refuses it for this input.
  bool configure(cudnnBatchNormOps_t ops, cudnnBatchNormMode_t mode) {
    ops_ = ops, mode_ = mode;
    return cudnnDeriveBNTensorDescriptor(bnd_, xd_, mode_) == CUDNN_STATUS_SUCCESS &&
           cudnnGetBatchNormalizationTrainingExReserveSpaceSize(
               ctx_.cudnn(), mode_, ops_, activation(), xd_, &reserve_bytes_) ==
               CUDNN_STATUS_SUCCESS &&
           cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
               ctx_.cudnn(), mode_, ops_, xd_, nullptr, xd_, bnd_, activation(), &fwd_ws_bytes_) ==
               CUDNN_STATUS_SUCCESS &&
           cudnnGetBatchNormalizationBackwardExWorkspaceSize(
               ctx_.cudnn(), mode_, ops_, xd_, xd_, xd_, nullptr, xd_, bnd_, activation(),
               &bwd_ws_bytes_) == CUDNN_STATUS_SUCCESS;
  }

  // The next configuration after a run-time refusal: unfused, then the plain spatial kernels.
  // False when none is left.
  bool fall_back() {
    if (ops_ == CUDNN_BATCHNORM_OPS_BN_ACTIVATION &&
        configure(CUDNN_BATCHNORM_OPS_BN, CUDNN_BATCHNORM_SPATIAL_PERSISTENT))
      return true;
    return mode_ != CUDNN_BATCHNORM_SPATIAL &&
           configure(CUDNN_BATCHNORM_OPS_BN, CUDNN_BATCHNORM_SPATIAL);
  }

  cudnnStatus_t forward_ex(const Tensor& xs, const Tensor& gamma, const Tensor& beta, Tensor& y,
                           Tensor& mean, Tensor* workspace) {
    // The fused op's reserve space is the layer's workspace (kept until backward); otherwise the
    // op keeps its own.
    const bool fused = ops_ == CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
    reserve_ = fused ? *workspace : ctx_.scratch(reserve_bytes_);
    Tensor ws = ctx_.scratch(fwd_ws_bytes_);
    const float one = 1.f, zero = 0.f;
    // Running statistics are the caller's (PyTorch's momentum and unbiased variance): the
    // caller's mean and variance come from the saved batch mean and inverse standard deviation,
    // and cuDNN's own running averages go to a scratch pair the op never reads.
    return cudnnBatchNormalizationForwardTrainingEx(
        ctx_.cudnn(), mode_, ops_, &one, &zero, xd_, xs.data(), nullptr, nullptr, xd_, y.data(),
        bnd_, gamma.data(), beta.data(), 1.0, running_.data_as<float>(),
        running_.data_as<float>() + channels_, p_.eps, mean.data(), inv_std_.data(), activation(),
        ws.data(), fwd_ws_bytes_, reserve_.data(), reserve_bytes_);
  }

  cudnnActivationDescriptor_t activation() const {
    return ops_ == CUDNN_BATCHNORM_OPS_BN_ACTIVATION ? act_.get() : nullptr;
  }
  void check_out(const Tensor& t) const {
    RN_CHECK(t.desc().same_layout(x_desc_),
             "[batch_norm] output must be " << x_desc_.str() << ", got " << t.desc().str());
  }

  CudaBackend& be_;
  CudaContext& ctx_;
  BatchNormParams p_;
  TensorDesc x_desc_, ws_desc_;
  int64_t channels_ = 0;
  TensorDescriptor xd_, bnd_;
  ActivationDescriptor act_;
  cudnnBatchNormOps_t ops_ = CUDNN_BATCHNORM_OPS_BN;
  // Persistent per-channel kernels first: PyTorch's choice for channels-last batch norm.
  cudnnBatchNormMode_t mode_ = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
  size_t reserve_bytes_ = 0, fwd_ws_bytes_ = 0, bwd_ws_bytes_ = 0;
  Tensor inv_std_, running_, reserve_, saved_y_, saved_beta_;
};

}  // namespace

std::unique_ptr<BatchNormOp> make_batch_norm(CudaBackend& be, const BatchNormParams& p,
                                             const TensorDesc& x) {
  return std::make_unique<CudaBatchNorm>(be, p, x);
}

}  // namespace rn::cuda

// Batch normalization on cuDNN or the project's own kernels. The ways it can run are tried best
// first, as cuda_batch_norm_paths() lists them (core/backend/batch_norm_paths.h, where the choice
// is tested without a GPU): the NHWC kernels fused with the ReLU that follows
// (CUDNN_BATCHNORM_OPS_BN_ACTIVATION, its reserve space as the layer's workspace), the persistent
// NHWC kernels, the plain spatial ones, and, for bf16, which cuDNN's batch norm does not document,
// the project's own NHWC kernels (batch_norm_native.cu) or fp32 kernels on an fp32 copy. A
// configuration refused at plan time or at the first forward is replaced by the next; a backward
// refused at run time falls back to the legacy spatial backward, which needs only the saved
// statistics. The scale, shift and statistics stay fp32 throughout.
#include <cstdlib>

#include "core/backend/batch_norm_paths.h"
#include "core/backend/cuda/cuda_backend.h"

namespace rn::cuda {
namespace {

static_assert(kCudnnStatusNotSupported == CUDNN_STATUS_NOT_SUPPORTED &&
                  CUDNN_STATUS_CATEGORY(CUDNN_STATUS_NOT_SUPPORTED_SHAPE) ==
                      CUDNN_STATUS_NOT_SUPPORTED &&
                  cudnn_status_is_refusal(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT) &&
                  !cudnn_status_is_refusal(CUDNN_STATUS_BAD_PARAM),
              "cudnn_status_is_refusal follows cudnn_graph.h's status categories");

class CudaBatchNorm final : public BatchNormOp {
 public:
  CudaBatchNorm(CudaBackend& be, const BatchNormParams& p, const TensorDesc& x)
      : BatchNormOp(x.shape), be_(be), ctx_(be.context()), p_(p) {
    RN_CHECK(x.shape.rank() == 4,
             "[batch_norm] input must be N x C x H x W, got " << x.shape.str());
    x_desc_ = nhwc_desc(x.shape, x.dtype);
    channels_ = x.shape[1];
    paths_ =
        cuda_batch_norm_paths(x.dtype, p.fuse_relu, std::getenv("RESNET_CUDA_BATCH_NORM_PATH"));
    RN_CUDNN_CHECK(
        cudnnSetActivationDescriptor(act_, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    while (!configure(paths_[next_]))
      if (++next_ == paths_.size())
        RN_FAIL("[batch_norm] cuDNN offers no batch norm for " << x_desc_.str());
    // The layer keeps the reserve space from forward to backward when fused with ReLU.
    if (p.fuse_relu)
      ws_desc_ =
          TensorDesc{Shape{static_cast<int64_t>((std::max<size_t>(reserve_bytes_, 4) + 3) / 4)},
                     DType::f32, nullptr};
    inv_std_ = be.allocate_persistent(TensorDesc{Shape{channels_}, DType::f32, nullptr});
    running_ = be.allocate_persistent(TensorDesc{Shape{2 * channels_}, DType::f32, nullptr});
    affine_ = be.allocate_persistent(TensorDesc{Shape{2 * channels_}, DType::f32, nullptr});
  }

  const TensorDesc& output_desc() const override { return x_desc_; }
  const TensorDesc& workspace_desc() const override { return ws_desc_; }

  void forward_training_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                             Tensor& mean, Tensor& var, Tensor* workspace) override {
    check_out(y);
    RN_CHECK(!p_.fuse_relu || workspace != nullptr, "[batch_norm] fused ReLU needs a workspace");
    Tensor xs = be_.as_layout(x, x_desc_);
    if (native_) {
      NativeBatchNormArgs a = native_args(xs);
      a.y = y.data(), a.gamma = gamma.data_as<float>(), a.beta = beta.data_as<float>();
      a.batch_mean = mean.data_as<float>(), a.batch_var = var.data_as<float>();
      a.affine = affine_.data_as<float>();  // kept for backward's ReLU mask
      launch_native_batch_norm_training(ctx_, x_desc_.dtype, a);
      forward_done_ = true;
      return;
    }
    cudnnStatus_t st = forward_ex(xs, gamma, beta, y, mean, workspace);
    // A configuration cuDNN accepted at plan time may still refuse to run (cuDNN 9: a sub-code of
    // CUDNN_STATUS_NOT_SUPPORTED): take the next.
    while (cudnn_status_is_refusal(st) && next_ + 1 < paths_.size()) {
      bool ok = false;
      while (!ok && ++next_ < paths_.size()) ok = configure(paths_[next_]);
      if (!ok) break;
      st = forward_ex(xs, gamma, beta, y, mean, workspace);
    }
    RN_CHECK(st == CUDNN_STATUS_SUCCESS,
             "[batch_norm] cudnnBatchNormalizationForwardTrainingEx: " << cudnnGetErrorString(st)
                                                                       << " for " << x_desc_.str());
    launch_inv_std_to_var(inv_std_.data_as<float>(), var.data_as<float>(), channels_, p_.eps,
                          ctx_.stream());
    if (p_.fuse_relu && ops_ == CUDNN_BATCHNORM_OPS_BN) be_.relu_forward(y, y);
    // Backward of the fused op reads the output and the shift again; the unfused one applies
    // ReLU's gradient from the output.
    if (p_.fuse_relu) saved_y_ = y, saved_beta_ = beta;
  }

  void forward_inference_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& mean, const Tensor& var, Tensor& y) override {
    check_out(y);
    if (native_) {
      NativeBatchNormArgs a = native_args(be_.as_layout(x, x_desc_));
      Tensor affine = ctx_.scratch(2 * static_cast<size_t>(channels_) * sizeof(float));
      a.y = y.data(), a.gamma = gamma.data_as<float>(), a.beta = beta.data_as<float>();
      a.mean = mean.data_as<float>(), a.var = var.data_as<float>();
      a.affine = affine.data_as<float>();
      launch_native_batch_norm_inference(ctx_, x_desc_.dtype, a);
      return;
    }
    Tensor xs = compute_copy(be_.as_layout(x, x_desc_));
    Tensor ys = cast_ ? be_.allocate(compute_desc()) : y;
    const float one = 1.f, zero = 0.f;
    RN_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
        ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd_, xs.data(), xd_, ys.data(), bnd_,
        gamma.data(), beta.data(), mean.data(), var.data(), p_.eps));
    if (cast_) be_.cast(ys, y);
    if (p_.fuse_relu) be_.relu_forward(y, y);
  }

  void backward_impl(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
                     const Tensor& var, const Tensor* workspace, Tensor& dx, Tensor& dgamma,
                     Tensor& dbeta) override {
    RN_CHECK(forward_done_, "[batch_norm] backward without a training forward");
    forward_done_ = false;
    Tensor dys = be_.as_layout(dy, x_desc_);
    if (native_) {
      const Tensor xs = be_.as_layout(x, x_desc_);
      NativeBatchNormArgs a = native_args(xs);
      Tensor dxs = dx.desc().same_layout(x_desc_) ? dx : be_.allocate(x_desc_);
      a.dy = dys.data(), a.dx = dxs.data(), a.gamma = gamma.data_as<float>();
      a.mean = mean.data_as<float>(), a.var = var.data_as<float>();
      a.affine = affine_.data_as<float>();
      a.dgamma = dgamma.data_as<float>(), a.dbeta = dbeta.data_as<float>();
      launch_native_batch_norm_backward(ctx_, x_desc_.dtype, a);
      if (dxs.data() != dx.data()) be_.reorder(dxs, dx);
      return;
    }
    const bool act = ops_ == CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
    if (p_.fuse_relu && !act) dys = relu_grad(dys);
    launch_var_to_inv_std(var.data_as<float>(), inv_std_.data_as<float>(), channels_, p_.eps,
                          ctx_.stream());
    Tensor xs = compute_copy(be_.as_layout(x, x_desc_));
    Tensor dyc = compute_copy(dys);
    Tensor dxs = !cast_ && dx.desc().same_layout(x_desc_) ? dx : be_.allocate(compute_desc());
    const float one = 1.f, zero = 0.f;
    cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
    if (!legacy_backward_) {
      Tensor ws = ctx_.scratch(bwd_ws_bytes_);
      st = cudnnBatchNormalizationBackwardEx(
          ctx_.cudnn(), mode_, ops_, &one, &zero, &one, &zero, xd_, xs.data(),
          act ? xd_.get() : nullptr, act ? saved_y_.data() : nullptr, xd_, dyc.data(), nullptr,
          nullptr, xd_, dxs.data(), bnd_, gamma.data(), act ? saved_beta_.data() : nullptr,
          dgamma.data(), dbeta.data(), p_.eps, mean.data(), inv_std_.data(), activation(),
          ws.data(), bwd_ws_bytes_, reserve_.data(), reserve_bytes_);
      // Refused at run time: from now on the legacy spatial backward, which reads only the
      // saved mean and inverse standard deviation (the fused ReLU's gradient first, from the
      // saved output).
      if (cudnn_status_is_refusal(st)) legacy_backward_ = true;
    }
    if (legacy_backward_) {
      if (act) dyc = compute_copy(relu_grad(dys));
      RN_CUDNN_CHECK(cudnnBatchNormalizationBackward(
          ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, xd_, xs.data(), xd_,
          dyc.data(), xd_, dxs.data(), bnd_, gamma.data(), dgamma.data(), dbeta.data(), p_.eps,
          mean.data(), inv_std_.data()));
    } else {
      RN_CHECK(st == CUDNN_STATUS_SUCCESS,
               "[batch_norm] cudnnBatchNormalizationBackwardEx: " << cudnnGetErrorString(st)
                                                                  << " for " << x_desc_.str());
    }
    if (dxs.data() != dx.data()) cast_ ? be_.cast(dxs, dx) : be_.reorder(dxs, dx);
    reserve_ = Tensor(), saved_y_ = Tensor(), saved_beta_ = Tensor();
  }

 private:
  // Takes one path's (ops, mode) and, for the fp32 copy, the fp32 descriptor, with its workspace
  // and reserve sizes; false when cuDNN refuses it for this input.
  bool configure(CudaBatchNormPath path) {
    native_ = path == CudaBatchNormPath::native;
    if (native_) {
      reserve_bytes_ = fwd_ws_bytes_ = bwd_ws_bytes_ = 0;
      cast_ = false;
      return true;
    }
    cast_ = path == CudaBatchNormPath::f32_copy;
    ops_ = path == CudaBatchNormPath::fused_relu_persistent ? CUDNN_BATCHNORM_OPS_BN_ACTIVATION
                                                            : CUDNN_BATCHNORM_OPS_BN;
    mode_ = path == CudaBatchNormPath::spatial ? CUDNN_BATCHNORM_SPATIAL
                                               : CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
    set_tensor_desc(xd_, compute_desc());
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

  cudnnStatus_t forward_ex(const Tensor& xs, const Tensor& gamma, const Tensor& beta, Tensor& y,
                           Tensor& mean, Tensor* workspace) {
    // The fused op's reserve space is the layer's workspace (kept until backward); otherwise the
    // op keeps its own.
    const bool fused = ops_ == CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
    reserve_ = fused ? *workspace : ctx_.scratch(reserve_bytes_);
    forward_done_ = true;
    Tensor ws = ctx_.scratch(fwd_ws_bytes_);
    Tensor xc = compute_copy(xs);
    Tensor yc = cast_ ? be_.allocate(compute_desc()) : y;
    const float one = 1.f, zero = 0.f;
    // Running statistics are the caller's (PyTorch's momentum and unbiased variance): the
    // caller's mean and variance come from the saved batch mean and inverse standard deviation,
    // and cuDNN's own running averages go to a scratch pair the op never reads.
    const cudnnStatus_t st = cudnnBatchNormalizationForwardTrainingEx(
        ctx_.cudnn(), mode_, ops_, &one, &zero, xd_, xc.data(), nullptr, nullptr, xd_, yc.data(),
        bnd_, gamma.data(), beta.data(), 1.0, running_.data_as<float>(),
        running_.data_as<float>() + channels_, p_.eps, mean.data(), inv_std_.data(), activation(),
        ws.data(), fwd_ws_bytes_, reserve_.data(), reserve_bytes_);
    if (st == CUDNN_STATUS_SUCCESS && cast_) be_.cast(yc, y);
    return st;
  }

  // The native kernels' arguments for the NHWC tensor `xs` (rows x channels).
  NativeBatchNormArgs native_args(const Tensor& xs) const {
    NativeBatchNormArgs a;
    a.rows = xs.numel() / std::max<int64_t>(channels_, 1);
    a.cols = channels_;
    a.eps = static_cast<float>(p_.eps);
    a.relu = p_.fuse_relu;
    a.x = xs.data();
    return a;
  }

  // The type cuDNN computes on: the activations' own, or fp32 on the f32_copy path.
  TensorDesc compute_desc() const { return cast_ ? nhwc_desc(x_desc_.shape, DType::f32) : x_desc_; }
  Tensor compute_copy(const Tensor& t) {
    if (!cast_) return t;
    Tensor c = be_.allocate(compute_desc());
    be_.cast(t, c);
    return c;
  }
  // ReLU's gradient from the saved output, in the activations' type.
  Tensor relu_grad(const Tensor& dys) {
    Tensor g = be_.allocate(x_desc_);
    be_.relu_backward(saved_y_, dys, g);
    return g;
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
  std::vector<CudaBatchNormPath> paths_;
  size_t next_ = 0;
  bool cast_ = false, legacy_backward_ = false, native_ = false, forward_done_ = false;
  TensorDescriptor xd_, bnd_;
  ActivationDescriptor act_;
  cudnnBatchNormOps_t ops_ = CUDNN_BATCHNORM_OPS_BN;
  cudnnBatchNormMode_t mode_ = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
  size_t reserve_bytes_ = 0, fwd_ws_bytes_ = 0, bwd_ws_bytes_ = 0;
  // affine_: the native forward's scale and shift per channel, for its backward's ReLU mask.
  Tensor inv_std_, running_, affine_, reserve_, saved_y_, saved_beta_;
};

}  // namespace

std::unique_ptr<BatchNormOp> make_batch_norm(CudaBackend& be, const BatchNormParams& p,
                                             const TensorDesc& x) {
  return std::make_unique<CudaBatchNorm>(be, p, x);
}

}  // namespace rn::cuda

// Batch normalization on oneDNN, optionally fused with the ReLU that follows it (the bitmask
// workspace lets backward apply ReLU's gradient without keeping the output).
#include "core/backend/cpu/cpu_ops.h"

namespace rn::cpu {
namespace {

using dnnl::normalization_flags;
using dnnl::prop_kind;

class CpuBatchNorm final : public BatchNormOp {
 public:
  CpuBatchNorm(DnnlContext& ctx, const BatchNormParams& p, const TensorDesc& x)
      : BatchNormOp(x.shape), ctx_(ctx), p_(p), x_desc_(x), md_(md_of(x)) {
    RN_CHECK(x.shape.rank() == 4,
             "[batch_norm] input must be N x C x H x W, got " << x.shape.str());
    flags_ = normalization_flags::use_scale | normalization_flags::use_shift;
    if (p.fuse_relu) flags_ = flags_ | normalization_flags::fuse_norm_relu;
    dnnl::batch_normalization_forward::desc d(prop_kind::forward_training, md_,
                                              static_cast<float>(p.eps), flags_);
    train_pd_ = RN_DNNL_CHECK(
        dnnl::batch_normalization_forward::primitive_desc(d, DnnlContext::attr(), ctx.engine()));
    stat_md_ = train_pd_.mean_desc();
    ws_desc_ = p.fuse_relu
                   ? desc_of(Shape{static_cast<int64_t>(train_pd_.workspace_desc().get_size())},
                             train_pd_.workspace_desc())
                   : TensorDesc{};
  }

  const TensorDesc& output_desc() const override { return x_desc_; }
  const TensorDesc& workspace_desc() const override { return ws_desc_; }

  void forward_training_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                             Tensor& mean, Tensor& var, Tensor* workspace) override {
    check(x);
    if (!train_.valid()) {
      std::vector<std::pair<int, memory::desc>> args = {
          {DNNL_ARG_SRC, md_},           {DNNL_ARG_DST, md_},        {DNNL_ARG_MEAN, stat_md_},
          {DNNL_ARG_VARIANCE, stat_md_}, {DNNL_ARG_SCALE, stat_md_}, {DNNL_ARG_SHIFT, stat_md_}};
      if (p_.fuse_relu) args.push_back({DNNL_ARG_WORKSPACE, train_pd_.workspace_desc()});
      train_ = BoundPrimitive(dnnl::batch_normalization_forward(train_pd_), ctx_.engine(), args,
                              train_pd_.scratchpad_desc().get_size());
    }
    train_.bind(DNNL_ARG_SRC, x.data())
        .bind(DNNL_ARG_DST, y.data())
        .bind(DNNL_ARG_MEAN, mean.data())
        .bind(DNNL_ARG_VARIANCE, var.data())
        .bind(DNNL_ARG_SCALE, gamma.data())
        .bind(DNNL_ARG_SHIFT, beta.data());
    if (p_.fuse_relu) {
      RN_CHECK(workspace != nullptr, "[batch_norm] fused ReLU needs a workspace");
      train_.bind(DNNL_ARG_WORKSPACE, workspace->data());
    }
    train_.run(ctx_);
  }

  void forward_inference_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& mean, const Tensor& var, Tensor& y) override {
    check(x);
    if (!infer_.valid()) {
      dnnl::batch_normalization_forward::desc d(prop_kind::forward_inference, md_,
                                                static_cast<float>(p_.eps),
                                                flags_ | normalization_flags::use_global_stats);
      auto pd = RN_DNNL_CHECK(
          dnnl::batch_normalization_forward::primitive_desc(d, DnnlContext::attr(), ctx_.engine()));
      infer_ = BoundPrimitive(dnnl::batch_normalization_forward(pd), ctx_.engine(),
                              {{DNNL_ARG_SRC, md_},
                               {DNNL_ARG_DST, md_},
                               {DNNL_ARG_MEAN, stat_md_},
                               {DNNL_ARG_VARIANCE, stat_md_},
                               {DNNL_ARG_SCALE, stat_md_},
                               {DNNL_ARG_SHIFT, stat_md_}},
                              pd.scratchpad_desc().get_size());
    }
    infer_.bind(DNNL_ARG_SRC, x.data())
        .bind(DNNL_ARG_DST, y.data())
        .bind(DNNL_ARG_MEAN, mean.data())
        .bind(DNNL_ARG_VARIANCE, var.data())
        .bind(DNNL_ARG_SCALE, gamma.data())
        .bind(DNNL_ARG_SHIFT, beta.data())
        .run(ctx_);
  }

  void backward_impl(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
                     const Tensor& var, const Tensor* workspace, Tensor& dx, Tensor& dgamma,
                     Tensor& dbeta) override {
    check(x);
    if (!bwd_.valid()) {
      dnnl::batch_normalization_backward::desc d(prop_kind::backward, md_, md_,
                                                 static_cast<float>(p_.eps), flags_);
      auto pd = RN_DNNL_CHECK(dnnl::batch_normalization_backward::primitive_desc(
          d, DnnlContext::attr(), ctx_.engine(), train_pd_));
      std::vector<std::pair<int, memory::desc>> args = {{DNNL_ARG_SRC, md_},
                                                        {DNNL_ARG_DIFF_DST, md_},
                                                        {DNNL_ARG_MEAN, stat_md_},
                                                        {DNNL_ARG_VARIANCE, stat_md_},
                                                        {DNNL_ARG_SCALE, stat_md_},
                                                        {DNNL_ARG_DIFF_SRC, md_},
                                                        {DNNL_ARG_SHIFT, stat_md_},
                                                        {DNNL_ARG_DIFF_SCALE, stat_md_},
                                                        {DNNL_ARG_DIFF_SHIFT, stat_md_}};
      if (p_.fuse_relu) args.push_back({DNNL_ARG_WORKSPACE, train_pd_.workspace_desc()});
      bwd_ = BoundPrimitive(dnnl::batch_normalization_backward(pd), ctx_.engine(), args,
                            pd.scratchpad_desc().get_size());
    }
    bwd_.bind(DNNL_ARG_SRC, x.data())
        .bind(DNNL_ARG_DIFF_DST, dy_.get(ctx_, dy, md_of(dy.desc()), md_))
        .bind(DNNL_ARG_MEAN, mean.data())
        .bind(DNNL_ARG_VARIANCE, var.data())
        .bind(DNNL_ARG_SCALE, gamma.data())
        // oneDNN 2.6 refuses to run backward with use_shift unless a shift is bound, though it
        // never reads it; gamma's buffer stands in.
        .bind(DNNL_ARG_SHIFT, gamma.data())
        .bind(DNNL_ARG_DIFF_SRC, dx.data())
        .bind(DNNL_ARG_DIFF_SCALE, dgamma.data())
        .bind(DNNL_ARG_DIFF_SHIFT, dbeta.data());
    if (p_.fuse_relu) {
      RN_CHECK(workspace != nullptr, "[batch_norm] fused ReLU needs a workspace");
      bwd_.bind(DNNL_ARG_WORKSPACE, workspace->data());
    }
    bwd_.run(ctx_);
    dy_.release();
  }

 private:
  void check(const Tensor& x) const {
    RN_CHECK(x.desc().same_layout(x_desc_),
             "[batch_norm] planned for " << x_desc_.str() << ", got " << x.desc().str());
  }

  DnnlContext& ctx_;
  BatchNormParams p_;
  TensorDesc x_desc_, ws_desc_;
  memory::desc md_, stat_md_;
  normalization_flags flags_;
  dnnl::batch_normalization_forward::primitive_desc train_pd_;
  BoundPrimitive train_, infer_, bwd_;
  InputAdapter dy_;
};

}  // namespace

std::unique_ptr<BatchNormOp> make_batch_norm(DnnlContext& ctx, const BatchNormParams& p,
                                             const TensorDesc& x, bool) {
  return std::make_unique<CpuBatchNorm>(ctx, p, x);
}

}  // namespace rn::cpu

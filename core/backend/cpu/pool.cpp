// Max, average and global-average pooling on oneDNN, forward and backward.
#include "core/backend/cpu/cpu_ops.h"

namespace rn::cpu {
namespace {

using dnnl::algorithm;
using dnnl::prop_kind;

class CpuPool final : public PoolOp {
 public:
  CpuPool(DnnlContext& ctx, const PoolParams& p, const TensorDesc& x, bool training)
      : PoolOp(x.shape), ctx_(ctx), x_desc_(x), x_md_(md_of(x)) {
    RN_CHECK(x.shape.rank() == 4, "[pool] input must be N x C x H x W, got " << x.shape.str());
    const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
    int64_t kh = p.kernel, kw = p.kernel, s = p.stride, pad = p.pad;
    if (p.global) kh = h, kw = w, s = 1, pad = 0;
    const int64_t oh = (h + 2 * pad - kh) / s + 1, ow = (w + 2 * pad - kw) / s + 1;
    RN_CHECK(oh > 0 && ow > 0, "[pool] input " << x.shape.str() << " too small for kernel " << kh);
    y_shape_ = Shape{n, c, oh, ow};
    // PyTorch's AvgPool2d counts padding by default (count_include_pad=True).
    alg_ =
        p.kind == PoolKind::max ? algorithm::pooling_max : algorithm::pooling_avg_include_padding;
    stride_ = {s, s};
    kernel_ = {kh, kw};
    pad_ = {pad, pad};
    const bool need_ws = training && p.kind == PoolKind::max;
    dnnl::pooling_forward::desc d(
        need_ws ? prop_kind::forward_training : prop_kind::forward_inference, alg_, x_md_,
        memory::desc(to_dims(y_shape_), dnnl_type(x.dtype), Tag::any), stride_, kernel_, pad_,
        pad_);
    fwd_pd_ =
        RN_DNNL_CHECK(dnnl::pooling_forward::primitive_desc(d, DnnlContext::attr(), ctx.engine()));
    y_md_ = fwd_pd_.dst_desc();
    out_desc_ = desc_of(y_shape_, y_md_, x.dtype);
    std::vector<std::pair<int, memory::desc>> args = {{DNNL_ARG_SRC, x_md_}, {DNNL_ARG_DST, y_md_}};
    if (need_ws) {
      auto ws = fwd_pd_.workspace_desc();
      ws_desc_ = desc_of(Shape{static_cast<int64_t>(ws.get_size())}, ws);
      args.push_back({DNNL_ARG_WORKSPACE, ws});
    }
    fwd_ = BoundPrimitive(dnnl::pooling_forward(fwd_pd_), ctx.engine(), args,
                          fwd_pd_.scratchpad_desc().get_size());
  }

  const TensorDesc& output_desc() const override { return out_desc_; }
  const TensorDesc& workspace_desc() const override { return ws_desc_; }

  void forward_impl(const Tensor& x, Tensor& y, Tensor* workspace) override {
    RN_CHECK(x.desc().same_layout(x_desc_),
             "[pool] planned for " << x_desc_.str() << ", got " << x.desc().str());
    fwd_.bind(DNNL_ARG_SRC, x.data()).bind(DNNL_ARG_DST, y.data());
    if (ws_desc_.shape.rank() > 0) {
      RN_CHECK(workspace != nullptr, "[pool] max pooling in training needs a workspace");
      fwd_.bind(DNNL_ARG_WORKSPACE, workspace->data());
    }
    fwd_.run(ctx_);
  }

  void backward_impl(const Tensor& dy, const Tensor* workspace, Tensor& dx) override {
    if (!bwd_.valid()) {
      dnnl::pooling_backward::desc d(alg_, x_md_, y_md_, stride_, kernel_, pad_, pad_);
      auto pd = RN_DNNL_CHECK(
          dnnl::pooling_backward::primitive_desc(d, DnnlContext::attr(), ctx_.engine(), fwd_pd_));
      std::vector<std::pair<int, memory::desc>> args = {{DNNL_ARG_DIFF_DST, y_md_},
                                                        {DNNL_ARG_DIFF_SRC, x_md_}};
      if (ws_desc_.shape.rank() > 0) args.push_back({DNNL_ARG_WORKSPACE, fwd_pd_.workspace_desc()});
      bwd_ = BoundPrimitive(dnnl::pooling_backward(pd), ctx_.engine(), args,
                            pd.scratchpad_desc().get_size());
    }
    bwd_.bind(DNNL_ARG_DIFF_DST, dy_.get(ctx_, dy, md_of(dy.desc()), y_md_))
        .bind(DNNL_ARG_DIFF_SRC, dx_.get(ctx_, dx, md_of(dx.desc()), x_md_));
    if (ws_desc_.shape.rank() > 0) {
      RN_CHECK(workspace != nullptr, "[pool] max pooling backward needs the forward's workspace");
      bwd_.bind(DNNL_ARG_WORKSPACE, workspace->data());
    }
    bwd_.run(ctx_);
    dx_.finish(ctx_, dx);
    dy_.release();
  }

 private:
  DnnlContext& ctx_;
  TensorDesc x_desc_, out_desc_, ws_desc_;
  memory::desc x_md_, y_md_;
  Shape y_shape_;
  algorithm alg_;
  memory::dims stride_, kernel_, pad_;
  dnnl::pooling_forward::primitive_desc fwd_pd_;
  BoundPrimitive fwd_, bwd_;
  InputAdapter dy_;
  OutputAdapter dx_;
};

}  // namespace

std::unique_ptr<PoolOp> make_pool(DnnlContext& ctx, const PoolParams& p, const TensorDesc& x,
                                  bool training) {
  return std::make_unique<CpuPool>(ctx, p, x, training);
}

}  // namespace rn::cpu

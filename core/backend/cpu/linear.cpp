// Fully connected layer on oneDNN's inner product, on plain N x K data (the head of every
// network sees N x C after global pooling, so a reorder of that small tensor is the only cost).
#include "core/backend/cpu/cpu_ops.h"

namespace rn::cpu {
namespace {

using dnnl::prop_kind;

class CpuLinear final : public LinearOp {
 public:
  CpuLinear(DnnlContext& ctx, const LinearParams& p, const TensorDesc& x)
      : LinearOp(p, x.shape), ctx_(ctx), p_(p) {
    const auto& s = x.shape;
    RN_CHECK(s.rank() == 2 || (s.rank() == 4 && s[2] == 1 && s[3] == 1),
             "[linear] input must be N x K or N x K x 1 x 1, got " << s.str());
    n_ = s[0];
    k_ = s[1];
    x_shape_ = s;
    x_md_ = plain_md({n_, k_});
    w_md_ = plain_md({p.out_features, k_});
    y_md_ = plain_md({n_, p.out_features});
    b_md_ = plain_md({p.out_features});
    out_desc_ = TensorDesc{Shape{n_, p.out_features}, DType::f32, nullptr};
    auto d = p.bias ? dnnl::inner_product_forward::desc(prop_kind::forward_training, x_md_, w_md_,
                                                        b_md_, y_md_)
                    : dnnl::inner_product_forward::desc(prop_kind::forward_training, x_md_, w_md_,
                                                        y_md_);
    fwd_pd_ = RN_DNNL_CHECK(
        dnnl::inner_product_forward::primitive_desc(d, DnnlContext::attr(), ctx.engine()));
    std::vector<std::pair<int, memory::desc>> args = {
        {DNNL_ARG_SRC, x_md_}, {DNNL_ARG_WEIGHTS, w_md_}, {DNNL_ARG_DST, y_md_}};
    if (p.bias) args.push_back({DNNL_ARG_BIAS, b_md_});
    fwd_ = BoundPrimitive(dnnl::inner_product_forward(fwd_pd_), ctx.engine(), args,
                          fwd_pd_.scratchpad_desc().get_size());
  }

  const TensorDesc& output_desc() const override { return out_desc_; }

  void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    fwd_.bind(DNNL_ARG_SRC, x_.get(ctx_, x, md_of(x.desc()), x_md4(x)))
        .bind(DNNL_ARG_WEIGHTS, w.data())
        .bind(DNNL_ARG_DST, y.data());
    if (p_.bias) fwd_.bind(DNNL_ARG_BIAS, bias->data());
    fwd_.run(ctx_);
    x_.release();
  }

  void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) override {
    if (!bwd_data_.valid()) {
      dnnl::inner_product_backward_data::desc d(x_md_, w_md_, y_md_);
      auto pd = RN_DNNL_CHECK(dnnl::inner_product_backward_data::primitive_desc(
          d, DnnlContext::attr(), ctx_.engine(), fwd_pd_));
      bwd_data_ = BoundPrimitive(
          dnnl::inner_product_backward_data(pd), ctx_.engine(),
          {{DNNL_ARG_DIFF_SRC, x_md_}, {DNNL_ARG_WEIGHTS, w_md_}, {DNNL_ARG_DIFF_DST, y_md_}},
          pd.scratchpad_desc().get_size());
    }
    bwd_data_.bind(DNNL_ARG_DIFF_DST, dy.data())
        .bind(DNNL_ARG_WEIGHTS, w.data())
        .bind(DNNL_ARG_DIFF_SRC, dx_.get(ctx_, dx, md_of(dx.desc()), x_md4(dx)))
        .run(ctx_);
    dx_.finish(ctx_, dx);
  }

  void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                             Tensor* dbias) override {
    if (!bwd_weights_.valid()) {
      auto d = p_.bias ? dnnl::inner_product_backward_weights::desc(x_md_, w_md_, b_md_, y_md_)
                       : dnnl::inner_product_backward_weights::desc(x_md_, w_md_, y_md_);
      auto pd = RN_DNNL_CHECK(dnnl::inner_product_backward_weights::primitive_desc(
          d, DnnlContext::attr(), ctx_.engine(), fwd_pd_));
      std::vector<std::pair<int, memory::desc>> args = {
          {DNNL_ARG_SRC, x_md_}, {DNNL_ARG_DIFF_WEIGHTS, w_md_}, {DNNL_ARG_DIFF_DST, y_md_}};
      if (p_.bias) args.push_back({DNNL_ARG_DIFF_BIAS, b_md_});
      bwd_weights_ = BoundPrimitive(dnnl::inner_product_backward_weights(pd), ctx_.engine(), args,
                                    pd.scratchpad_desc().get_size());
    }
    bwd_weights_.bind(DNNL_ARG_SRC, xw_.get(ctx_, x, md_of(x.desc()), x_md4(x)))
        .bind(DNNL_ARG_DIFF_DST, dy.data())
        .bind(DNNL_ARG_DIFF_WEIGHTS, dw.data());
    if (p_.bias) bwd_weights_.bind(DNNL_ARG_DIFF_BIAS, dbias->data());
    bwd_weights_.run(ctx_);
    xw_.release();
  }

 private:
  // The plain descriptor with the tensor's own rank, whose bytes equal the N x K matrix.
  memory::desc x_md4(const Tensor& t) const { return plain_md(to_dims(t.shape())); }

  DnnlContext& ctx_;
  LinearParams p_;
  int64_t n_ = 0, k_ = 0;
  Shape x_shape_;
  memory::desc x_md_, w_md_, y_md_, b_md_;
  TensorDesc out_desc_;
  dnnl::inner_product_forward::primitive_desc fwd_pd_;
  BoundPrimitive fwd_, bwd_data_, bwd_weights_;
  InputAdapter x_, xw_;
  OutputAdapter dx_;
};

}  // namespace

std::unique_ptr<LinearOp> make_linear(DnnlContext& ctx, const LinearParams& p,
                                      const TensorDesc& x) {
  return std::make_unique<CpuLinear>(ctx, p, x);
}

}  // namespace rn::cpu

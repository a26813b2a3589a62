// Convolution on oneDNN: forward, backward-data and backward-weights, with groups. The
// primitives choose their layouts (format_tag::any); inputs in another layout are reordered once
// at the edge, and the backward primitives are created on first use. In bf16 the activations and
// weights are bf16 (oneDNN picks the AMX kernels' nhwc), the bias and the weight gradient f32.
// Winograd: oneDNN's on AVX-512, the project's own (winograd_conv.h) where oneDNN has none.
#include <algorithm>
#include <memory>
#include <string>

#include "core/backend/cpu/cpu_ops.h"
#include "core/backend/cpu/winograd_conv.h"

namespace rn::cpu {
namespace {

using dnnl::prop_kind;

// ConvAlgorithm::automatic: whether Winograd beats the direct kernels on a 3x3 convolution of
// stride 1 with input `x` (N x C x H x W) and `k` output channels. Measured per shape on oneDNN
// 2.6's primitives, 2 cores of an AVX-512 machine, Winograd over direct in direct-equivalent
// GFLOP/s: backward-weights wins on every ResNet shape tried (1.6-3.4x); forward and
// backward-data lose where the layer is 16 channels wide (0.75x at 128 x 16 x 28 x 28: too
// little work per transformed tile) and win from 32 up (1.3-2.8x). Whole networks:
// launch/benchmarks.md.
// A model rather than a timing at start-up, so that the choice, and with it every weight, is
// the same on every rank and in every run: resume stays exact.
bool winograd_wins(ConvPass pass, const Shape& x, int64_t k) {
  if (pass == ConvPass::backward_weights) return true;
  return std::min(x[1], k) >= 32;
}

// The same for the project's own Winograd (winograd.h), which runs where oneDNN has none
// (AVX2). Measured on 2 cores of an AVX2 EPYC, each pass against oneDNN's direct kernel on
// nChw8c: with the fused products (winograd_conv.h) at 16 channels (N 128, 28x28) 1.3x in forward
// and backward-data, 1.5-2.1x in backward-weights; at 32 channels (14x14) 1.6-1.8x; at 64
// 1.6-2.3x; from 128 up (N 32, the matmul products) 1.4-2.3x. Below 16 channels the transforms
// outweigh the products.
bool own_winograd_wins(const Shape& x, int64_t k) {
  return std::min(x[1], k) >= 16;
}

class CpuConv final : public ConvOp {
 public:
  CpuConv(DnnlContext& ctx, const ConvParams& p, const TensorDesc& x, bool training)
      : ConvOp(p, x.shape),
        ctx_(ctx),
        p_(p),
        x_shape_(x.shape),
        dt_(dnnl_type(x.dtype)),
        dtype_(x.dtype) {
    RN_CHECK(x.shape.rank() == 4, "[conv] input must be N x C x H x W, got " << x.shape.str());
    const int64_t c = x.shape[1];
    y_shape_ = conv_output_shape(p, x.shape);
    w_shape_ = Shape{p.out_channels, c / p.groups, p.kernel, p.kernel};
    w_dims_ = p.groups > 1 ? memory::dims{p.groups, p.out_channels / p.groups, c / p.groups,
                                          p.kernel, p.kernel}
                           : to_dims(w_shape_);
    RN_CHECK(x.dtype == DType::f32 || x.dtype == DType::bf16,
             "[conv] the CPU backend takes f32 or bf16 inputs, got " << x.str());
    auto any = [&](const memory::dims& d) { return memory::desc(d, dt_, Tag::any); };
    desc_args_ = {{p.stride, p.stride}, {p.dilation - 1, p.dilation - 1}, {p.pad, p.pad}};
    training_ = training;
    // The direct primitive decides the layouts the network sees (the weights' included), so
    // that the choice of algorithm changes no tensor outside this op.
    fwd_pd_ = RN_DNNL_CHECK(forward_pd(dnnl::algorithm::convolution_direct, any(w_dims_)));
    x_md_ = fwd_pd_.src_desc();
    w_md_ = fwd_pd_.weights_desc();
    y_md_ = fwd_pd_.dst_desc();
    out_desc_ = desc_of(y_shape_, y_md_, dtype_);
    w_desc_ = desc_of(w_shape_, w_md_, dtype_);
    dnnl::convolution_forward::primitive_desc run = fwd_pd_;
    if (wants_winograd(ConvPass::forward) && winograd_hint()) run = wino_fwd_pd_;
    if (own_winograd(ConvPass::forward))
      own_fwd_ = std::make_unique<WinogradConv>(ctx, own_geo_, ConvPass::forward);
    chose(ConvPass::forward, run != fwd_pd_ || own_fwd_);
    if (own_fwd_) return;
    fwd_x_md_ = run.src_desc();
    fwd_w_md_ = run.weights_desc();
    fwd_y_md_ = run.dst_desc();
    std::vector<std::pair<int, memory::desc>> args = {
        {DNNL_ARG_SRC, fwd_x_md_}, {DNNL_ARG_WEIGHTS, fwd_w_md_}, {DNNL_ARG_DST, fwd_y_md_}};
    if (p.bias) args.push_back({DNNL_ARG_BIAS, run.bias_desc()});
    fwd_ = BoundPrimitive(dnnl::convolution_forward(run), ctx.engine(), args,
                          run.scratchpad_desc().get_size());
  }

  const TensorDesc& output_desc() const override { return out_desc_; }
  const TensorDesc& weight_desc() const override { return w_desc_; }
  bool weight_grad_f32() const override { return true; }
  const char* algorithm(ConvPass pass) const override { return algorithm_[static_cast<int>(pass)]; }

  void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    if (own_fwd_) {
      own_fwd_->forward(fwd_x_.get(ctx_, x, md_of(x.desc()), x_md_),
                        fwd_w_.get(ctx_, w, weight_md(w), plain_md(w_dims_)),
                        fwd_y_.get(ctx_, y, md_of(y.desc()), y_md_));
      fwd_y_.finish(ctx_, y);
      fwd_x_.release(), fwd_w_.release();
      return;
    }
    fwd_.bind(DNNL_ARG_SRC, fwd_x_.get(ctx_, x, md_of(x.desc()), fwd_x_md_))
        .bind(DNNL_ARG_WEIGHTS, fwd_w_.get(ctx_, w, weight_md(w), fwd_w_md_))
        .bind(DNNL_ARG_DST, fwd_y_.get(ctx_, y, md_of(y.desc()), fwd_y_md_));
    if (p_.bias) {
      fwd_.bind(DNNL_ARG_BIAS, bias->data());
    }
    fwd_.run(ctx_);
    fwd_y_.finish(ctx_, y);
    fwd_x_.release(), fwd_w_.release();
  }

  void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) override {
    if (!bwd_data_.valid() && !own_bd_) make_backward_data();
    if (own_bd_) {
      own_bd_->forward(bd_dy_.get(ctx_, dy, md_of(dy.desc()), y_md_),
                       bd_w_.get(ctx_, w, weight_md(w), plain_md(w_dims_)),
                       bd_dx_.get(ctx_, dx, md_of(dx.desc()), x_md_));
      bd_dx_.finish(ctx_, dx);
      bd_dy_.release(), bd_w_.release();
      return;
    }
    bwd_data_.bind(DNNL_ARG_DIFF_DST, bd_dy_.get(ctx_, dy, md_of(dy.desc()), bd_dy_md_))
        .bind(DNNL_ARG_WEIGHTS, bd_w_.get(ctx_, w, weight_md(w), bd_w_md_))
        .bind(DNNL_ARG_DIFF_SRC, bd_dx_.get(ctx_, dx, md_of(dx.desc()), bd_dx_md_))
        .run(ctx_);
    bd_dx_.finish(ctx_, dx);
    bd_dy_.release(), bd_w_.release();
  }

  void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                             Tensor* dbias) override {
    if (!bwd_weights_.valid() && !own_bw_) make_backward_weights();
    if (own_bw_) {
      own_bw_->backward_weights(bw_x_.get(ctx_, x, md_of(x.desc()), x_md_),
                                bw_dy_.get(ctx_, dy, md_of(dy.desc()), y_md_),
                                bw_dw_.get(ctx_, dw, weight_md(dw), plain_md(w_dims_)));
      bw_dw_.finish(ctx_, dw);
      bw_x_.release(), bw_dy_.release();
      return;
    }
    // As a matrix product dW = dY^T X, dY is the product's first operand and X its second; with
    // a stride, X's sampled positions are gathered first.
    const void* xp = bw_x_.get(ctx_, x, md_of(x.desc()), bw_x_md_);
    Tensor sampled;
    if (bw_matmul_ && p_.stride > 1) {
      sampled = ctx_.allocate(bw_sampled_desc_);
      bw_sample_.run(ctx_, xp, sampled.data());
      xp = sampled.data();
    }
    bwd_weights_.bind(bw_matmul_ ? DNNL_ARG_WEIGHTS : DNNL_ARG_SRC, xp)
        .bind(bw_matmul_ ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST,
              bw_dy_.get(ctx_, dy, md_of(dy.desc()), bw_dy_md_))
        .bind(bw_matmul_ ? DNNL_ARG_DST : DNNL_ARG_DIFF_WEIGHTS,
              bw_dw_.get(ctx_, dw, weight_md(dw), bw_dw_md_));
    if (p_.bias) {
      bwd_weights_.bind(DNNL_ARG_DIFF_BIAS, dbias->data());
    }
    bwd_weights_.run(ctx_);
    bw_dw_.finish(ctx_, dw);
    bw_x_.release(), bw_dy_.release();
  }

 private:
  struct DescArgs {
    memory::dims stride, dilate, pad;
  };

  memory::desc weight_md(const Tensor& w) const {
    return w.layout() ? md_of(w.desc()) : plain_md(w_dims_, w.dtype());
  }

  dnnl::convolution_forward::primitive_desc forward_pd(dnnl::algorithm alg,
                                                       const memory::desc& wmd) const {
    const auto kind = training_ ? prop_kind::forward_training : prop_kind::forward_inference;
    const memory::desc x = activation_md(to_dims(x_shape_)), y = activation_md(to_dims(y_shape_));
    auto d = p_.bias ? dnnl::convolution_forward::desc(
                           kind, alg, x, wmd,
                           memory::desc({p_.out_channels}, memory::data_type::f32, Tag::a), y,
                           desc_args_.stride, desc_args_.dilate, desc_args_.pad, desc_args_.pad)
                     : dnnl::convolution_forward::desc(kind, alg, x, wmd, y, desc_args_.stride,
                                                       desc_args_.dilate, desc_args_.pad,
                                                       desc_args_.pad);
    return dnnl::convolution_forward::primitive_desc(d, DnnlContext::attr(), ctx_.engine());
  }

  // oneDNN 2.6's Winograd kernels (and the own) take fp32 3x3 convolutions of stride 1, without
  // groups or dilation; whether this layer's pass runs one follows the backend's ConvAlgorithm.
  bool wants_winograd(ConvPass pass) {
    if (dt_ != memory::data_type::f32 || p_.kernel != 3 || p_.stride != 1 || p_.dilation != 1 ||
        p_.groups != 1)
      return false;
    switch (ctx_.conv_algorithm()) {
      case ConvAlgorithm::direct:
        return false;
      case ConvAlgorithm::winograd:
        return true;
      default:
        return winograd_hint() ? winograd_wins(pass, x_shape_, p_.out_channels)
                               : own_winograd_wins(x_shape_, p_.out_channels);
    }
  }

  // Records what `pass` runs, for algorithm() and the backend's count.
  void chose(ConvPass pass, bool winograd) {
    algorithm_[static_cast<int>(pass)] = winograd ? "winograd" : "direct";
    ctx_.count_conv(pass, winograd);
  }

  // The Winograd forward primitive, also the hint its backward primitives are made with; false
  // where oneDNN has no Winograd kernel for this layer here (another ISA, say).
  bool winograd_hint() {
    if (wino_tried_) return static_cast<bool>(wino_fwd_pd_);
    wino_tried_ = true;
    try {
      // In the master weights' own layout: with `any`, inference would ask for oneDNN's
      // pre-transformed Winograd format, which no reorder here makes.
      wino_fwd_pd_ = forward_pd(dnnl::algorithm::convolution_winograd, w_md_);
    } catch (const dnnl::error&) {
      wino_fwd_pd_ = {};
    }
    return static_cast<bool>(wino_fwd_pd_);
  }

  // Whether `pass` runs the project's own Winograd (core/backend/cpu/winograd.h): it wants
  // Winograd, oneDNN has none for this layer, and the own can take it: fp32 activations that the
  // direct kernels keep in nChw8c (AVX2), channels in whole blocks of 8, no bias (the last
  // decided once).
  bool own_winograd(ConvPass pass) {
    if (!wants_winograd(pass) || winograd_hint()) return false;
    if (own_ok_ < 0) {
      const auto f32 = memory::data_type::f32;
      const bool blocked = x_md_ == memory::desc(to_dims(x_shape_), f32, Tag::nChw8c) &&
                           y_md_ == memory::desc(to_dims(y_shape_), f32, Tag::nChw8c);
      own_ok_ = blocked && !p_.bias && x_shape_[1] % winograd::kBlock == 0 &&
                p_.out_channels % winograd::kBlock == 0 && p_.pad <= 2;
      if (own_ok_)
        own_geo_ = winograd::geometry(x_shape_[0], x_shape_[1], p_.out_channels, x_shape_[2],
                                      x_shape_[3], p_.pad);
    }
    return own_ok_ > 0;
  }

  // Activations: oneDNN's choice (nChw16c on AVX-512), except where nhwc is faster:
  //  - bf16 on AMX: oneDNN 2.6's AMX convolution kernels (brgconv, jit:avx512_core_amx_bf16)
  //    take nhwc only, and with `any` the AVX512-BF16 kernel and its nChw16c win the dispatch;
  //  - grouped convolutions whose channels per group are not a multiple of 16 (ResNeXt's 32x4d,
  //    or 2x20d): `any` gives them a 4-channel blocking (nChw4c) that no batch-norm kernel
  //    takes, so batch norm falls back to oneDNN's reference code (62% of a ResNeXt-50 bf16
  //    step, 20x slower than the JIT kernel on 40 channels); in nhwc they run on brgconv and
  //    ResNeXt-50 trains 1.6x (fp32) and 2.6x (bf16) faster.
  // On AVX512-BF16 without AMX, ResNet-50 trains as fast in nChw16c as in nhwc.
  memory::desc activation_md(const memory::dims& d) const {
    const bool amx = dt_ == memory::data_type::bf16 && ctx_.amx();
    const bool odd_groups = p_.groups > 1 && ((x_shape_[1] / p_.groups) % 16 != 0 ||
                                              (p_.out_channels / p_.groups) % 16 != 0);
    return memory::desc(d, dt_, amx || odd_groups ? Tag::nhwc : Tag::any);
  }

  // Backward data keeps the forward's weight layout when oneDNN has a fast kernel for it, so the
  // weights are not reordered every step; otherwise it takes the layout oneDNN prefers.
  void make_backward_data() {
    auto make = [&](dnnl::algorithm alg, const memory::desc& wmd,
                    const dnnl::convolution_forward::primitive_desc& hint) {
      dnnl::convolution_backward_data::desc d(alg, activation_md(to_dims(x_shape_)), wmd,
                                              activation_md(to_dims(y_shape_)), desc_args_.stride,
                                              desc_args_.dilate, desc_args_.pad, desc_args_.pad);
      return dnnl::convolution_backward_data::primitive_desc(d, DnnlContext::attr(), ctx_.engine(),
                                                             hint);
    };
    dnnl::convolution_backward_data::primitive_desc pd;
    if (wants_winograd(ConvPass::backward_data) && winograd_hint()) {
      try {
        pd = make(dnnl::algorithm::convolution_winograd, memory::desc(w_dims_, dt_, Tag::any),
                  wino_fwd_pd_);
      } catch (const dnnl::error&) {
        pd = {};
      }
    }
    if (own_winograd(ConvPass::backward_data))
      own_bd_ = std::make_unique<WinogradConv>(ctx_, own_geo_, ConvPass::backward_data);
    chose(ConvPass::backward_data, pd || own_bd_);
    if (own_bd_) return;
    if (!pd) {
      try {
        pd = make(dnnl::algorithm::convolution_direct, w_md_, fwd_pd_);
        if (is_reference_impl(pd.impl_info_str())) pd = {};
      } catch (const dnnl::error&) {
      }
    }
    if (!pd)
      pd = RN_DNNL_CHECK(
          make(dnnl::algorithm::convolution_direct, memory::desc(w_dims_, dt_, Tag::any), fwd_pd_));
    bd_dx_md_ = pd.diff_src_desc();
    bd_w_md_ = pd.weights_desc();
    bd_dy_md_ = pd.diff_dst_desc();
    bwd_data_ = BoundPrimitive(dnnl::convolution_backward_data(pd), ctx_.engine(),
                               {{DNNL_ARG_DIFF_SRC, bd_dx_md_},
                                {DNNL_ARG_WEIGHTS, bd_w_md_},
                                {DNNL_ARG_DIFF_DST, bd_dy_md_}},
                               pd.scratchpad_desc().get_size());
  }

  // The weight gradient is f32 whatever the activations (oneDNN accumulates bf16 products in
  // f32 and can write them so), so that it lands beside its f32 master weight without a cast.
  void make_backward_weights() {
    const auto f32 = memory::data_type::f32;
    if (make_backward_weights_matmul()) return;
    auto make = [&](dnnl::algorithm alg, const memory::desc& wmd,
                    const dnnl::convolution_forward::primitive_desc& hint) {
      memory::desc x_any = activation_md(to_dims(x_shape_)),
                   y_any = activation_md(to_dims(y_shape_));
      auto d = p_.bias ? dnnl::convolution_backward_weights::desc(
                             alg, x_any, wmd, memory::desc({p_.out_channels}, f32, Tag::a), y_any,
                             desc_args_.stride, desc_args_.dilate, desc_args_.pad, desc_args_.pad)
                       : dnnl::convolution_backward_weights::desc(
                             alg, x_any, wmd, y_any, desc_args_.stride, desc_args_.dilate,
                             desc_args_.pad, desc_args_.pad);
      return dnnl::convolution_backward_weights::primitive_desc(d, DnnlContext::attr(),
                                                                ctx_.engine(), hint);
    };
    dnnl::convolution_backward_weights::primitive_desc pd;
    if (wants_winograd(ConvPass::backward_weights) && winograd_hint()) {
      try {
        pd = make(dnnl::algorithm::convolution_winograd, memory::desc(w_dims_, f32, Tag::any),
                  wino_fwd_pd_);
      } catch (const dnnl::error&) {
        pd = {};
      }
    }
    if (own_winograd(ConvPass::backward_weights))
      own_bw_ = std::make_unique<WinogradConv>(ctx_, own_geo_, ConvPass::backward_weights);
    chose(ConvPass::backward_weights, pd || own_bw_);
    if (own_bw_) return;
    if (!pd) {
      try {
        // The weights' layout in f32: where the weight gradient goes, beside its f32 master.
        pd = make(dnnl::algorithm::convolution_direct, retyped(w_md_, f32), fwd_pd_);
        if (is_reference_impl(pd.impl_info_str())) pd = {};
      } catch (const dnnl::error&) {
      }
    }
    if (!pd)
      pd = RN_DNNL_CHECK(
          make(dnnl::algorithm::convolution_direct, memory::desc(w_dims_, f32, Tag::any), fwd_pd_));
    bw_x_md_ = pd.src_desc();
    bw_dw_md_ = pd.diff_weights_desc();
    bw_dy_md_ = pd.diff_dst_desc();
    std::vector<std::pair<int, memory::desc>> args = {{DNNL_ARG_SRC, bw_x_md_},
                                                      {DNNL_ARG_DIFF_WEIGHTS, bw_dw_md_},
                                                      {DNNL_ARG_DIFF_DST, bw_dy_md_}};
    if (p_.bias) args.push_back({DNNL_ARG_DIFF_BIAS, pd.diff_bias_desc()});
    bwd_weights_ = BoundPrimitive(dnnl::convolution_backward_weights(pd), ctx_.engine(), args,
                                  pd.scratchpad_desc().get_size());
  }

  // A 1x1 convolution on nhwc activations (bf16 on AMX) is a matrix product over the output
  // positions: dW[oc][ic] = sum_m dY[m][oc] X[m][ic], dY^T read through its strides, and with a
  // stride s, X taken at every s-th row and column (gathered by a strided reorder into a pooled
  // buffer: a quarter of X at stride 2). On 2 cores of an AMX Xeon, oneDNN 2.6's AMX
  // backward-weights kernel ran ResNet-50's 1x1 shapes of stride 1 at 310-970 GFLOP/s and those
  // of stride 2 at 280-530, its AMX matmul (brgemm) the same products at 1280-1710. The gradient
  // comes out in the plain oihw layout, reordered (a small copy) into the weights' own.
  bool make_backward_weights_matmul() {
    const bool nhwc = dt_ == memory::data_type::bf16 && ctx_.amx();
    if (!nhwc || p_.kernel != 1 || p_.pad != 0 || p_.dilation != 1 || p_.groups != 1 || p_.bias)
      return false;
    const memory::dim m = y_shape_[0] * y_shape_[2] * y_shape_[3];
    const memory::dim ic = x_shape_[1], oc = p_.out_channels;
    const auto f32 = memory::data_type::f32;
    if (p_.stride > 1) {
      // X at the sampled positions, as an N x C x OH x OW view of the nhwc input. oneDNN takes
      // the view only where OH strides fit in the image (an even side at stride 2); otherwise
      // the convolution kernel stays.
      const memory::dim w = x_shape_[3], s = p_.stride;
      Shape sampled = y_shape_;
      sampled[1] = ic;
      const memory::desc packed(to_dims(sampled), dt_, Tag::nhwc);
      try {
        const memory::desc view(to_dims(sampled), dt_,
                                memory::dims{x_shape_[2] * w * ic, 1, s * w * ic, s * ic});
        bw_sample_ = Reorderer(ctx_, view, packed);
      } catch (const dnnl::error&) {
        return false;
      } catch (const Error&) {
        return false;
      }
      bw_sampled_desc_ = desc_of(sampled, packed, dtype_);
    }
    const memory::desc dy_t({oc, m}, dt_, memory::dims{1, oc});
    const memory::desc x({m, ic}, dt_, memory::dims{ic, 1});
    const memory::desc dw({oc, ic}, f32, memory::dims{ic, 1});
    dnnl::matmul::primitive_desc pd;
    try {
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(dy_t, x, dw), DnnlContext::attr(),
                                        ctx_.engine());
    } catch (const dnnl::error&) {
      return false;
    }
    if (is_reference_impl(pd.impl_info_str())) return false;
    bw_x_md_ = memory::desc(to_dims(x_shape_), dt_, Tag::nhwc);
    bw_dy_md_ = memory::desc(to_dims(y_shape_), dt_, Tag::nhwc);
    bw_dw_md_ = memory::desc(w_dims_, f32, Tag::oihw);
    bwd_weights_ = BoundPrimitive(dnnl::matmul(pd), ctx_.engine(),
                                  {{DNNL_ARG_SRC, dy_t}, {DNNL_ARG_WEIGHTS, x}, {DNNL_ARG_DST, dw}},
                                  pd.scratchpad_desc().get_size());
    bw_matmul_ = true;
    chose(ConvPass::backward_weights, false);
    return true;
  }

  DnnlContext& ctx_;
  ConvParams p_;
  Shape x_shape_, y_shape_, w_shape_;
  memory::data_type dt_;
  DType dtype_;
  memory::dims w_dims_;
  DescArgs desc_args_;
  bool training_ = true;
  dnnl::convolution_forward::primitive_desc fwd_pd_;  // direct: the layouts the network sees
  dnnl::convolution_forward::primitive_desc wino_fwd_pd_;
  bool wino_tried_ = false;
  // The own Winograd: whether it can run here (-1 not decided yet), its geometry, and the
  // passes that run it.
  int own_ok_ = -1;
  winograd::Geometry own_geo_;
  std::unique_ptr<WinogradConv> own_fwd_, own_bd_, own_bw_;
  const char* algorithm_[3] = {"", "", ""};  // of each ConvPass
  memory::desc x_md_, w_md_, y_md_;
  memory::desc fwd_x_md_, fwd_w_md_, fwd_y_md_;  // of the primitive forward runs
  TensorDesc out_desc_, w_desc_;
  BoundPrimitive fwd_, bwd_data_, bwd_weights_;
  bool bw_matmul_ = false;  // bwd_weights_ is the matmul of make_backward_weights_matmul
  Reorderer bw_sample_;     // with a stride: X's sampled positions into a packed buffer
  TensorDesc bw_sampled_desc_;
  InputAdapter fwd_x_, fwd_w_, bd_dy_, bd_w_, bw_x_, bw_dy_;
  OutputAdapter fwd_y_, bd_dx_, bw_dw_;
  memory::desc bd_dx_md_, bd_w_md_, bd_dy_md_, bw_x_md_, bw_dw_md_, bw_dy_md_;
};

}  // namespace

std::unique_ptr<ConvOp> make_conv(DnnlContext& ctx, const ConvParams& p, const TensorDesc& x,
                                  bool training) {
  return std::make_unique<CpuConv>(ctx, p, x, training);
}

}  // namespace rn::cpu

// Convolution on cuDNN: forward, backward-data and backward-weights, with groups, NHWC
// activations and OHWI weights (the tensor-core layouts). The fastest algorithm of each problem
// is measured once (cudnnFind...Ex, on the layer's own buffers, with a search workspace taken and
// given back outside the pool) and cached in the context for every layer of that shape; the
// chosen algorithm's workspace comes from the pool at each call, so a step allocates nothing.
#include <vector>

#include "core/backend/cuda/cuda_backend.h"

namespace rn::cuda {
namespace {

// Device memory for one algorithm search, taken outside the pool and given back at once: the
// search measures candidates on the real buffers within this workspace (cudnnFind...Ex), instead
// of letting cuDNN allocate its own while the pool holds what the first step took. Where the
// limit does not fit next to the pool any more, half as much is tried, down to none.
class SearchWorkspace {
 public:
  explicit SearchWorkspace(size_t limit) : bytes_(limit) {
    while (bytes_ > 0 && cudaMalloc(&ptr_, bytes_) != cudaSuccess) {
      cudaGetLastError();
      ptr_ = nullptr;
      bytes_ = bytes_ > (size_t{1} << 20) ? bytes_ / 2 : 0;
    }
  }
  ~SearchWorkspace() {
    if (ptr_) RN_CUDA_CHECK_PRINT(cudaFree(ptr_));
  }
  SearchWorkspace(const SearchWorkspace&) = delete;
  SearchWorkspace& operator=(const SearchWorkspace&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// The first measured algorithm that succeeded within the workspace limit (cuDNN sorts by time).
template <typename Perf>
const Perf& pick(const std::vector<Perf>& perf, int returned, size_t limit, const char* what) {
  for (int i = 0; i < returned; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= limit) return perf[i];
  RN_FAIL("[conv] cuDNN found no " << what << " algorithm within " << limit
                                   << " bytes of workspace");
}

class CudaConv final : public ConvOp {
 public:
  CudaConv(CudaBackend& be, const ConvParams& p, const TensorDesc& x, bool training)
      : ConvOp(p, x.shape), be_(be), ctx_(be.context()), p_(p), training_(training) {
    RN_CHECK(x.shape.rank() == 4, "[conv] input must be N x C x H x W, got " << x.shape.str());
    RN_CHECK(x.dtype != DType::i32, "[conv] integer input " << x.str());
    const int64_t c = x.shape[1];
    const DType t = x.dtype;
    x_desc_ = nhwc_desc(x.shape, t);
    out_desc_ = nhwc_desc(conv_output_shape(p, x.shape), t);
    w_desc_ = nhwc_desc(Shape{p.out_channels, c / p.groups, p.kernel, p.kernel}, t);
    set_tensor_desc(xd_, x_desc_);
    set_tensor_desc(yd_, out_desc_);
    RN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd_, cudnn_type(t), CUDNN_TENSOR_NHWC, p.out_channels,
                                              static_cast<int>(c / p.groups), p.kernel, p.kernel));
    // Accumulation in fp32 for every storage type (bf16 and fp16 included).
    RN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd_, p.pad, p.pad, p.stride, p.stride,
                                                   p.dilation, p.dilation, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    RN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd_, p.groups));
    // The backend's math mode: fp32 with TF32 tensor cores (cuDNN's default math on Ampere and
    // later) or in full fp32 (FMA math: no tensor cores); bf16 / fp16 on tensor cores.
    const MathChoice m = math_choice(t, be.math_mode());
    search_math_ = !m.tensor_cores   ? CUDNN_FMA_MATH
                   : t == DType::f32 ? CUDNN_DEFAULT_MATH
                                     : CUDNN_TENSOR_OP_MATH;
    key_ = str_cat(dtype_name(t), " x", x.shape.str(), " w", w_desc_.shape.str(), " s", p.stride,
                   " p", p.pad, " d", p.dilation, " g", p.groups);
  }

  const TensorDesc& output_desc() const override { return out_desc_; }
  const TensorDesc& weight_desc() const override { return w_desc_; }

  void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    ConvAlgos& a = ctx_.conv_algos(key_);
    Tensor xs = be_.as_layout(x, x_desc_), ws_w = be_.as_layout(w, w_desc_);
    // A plain (NCHW) input, the network's first layer's, is converted once per step: backward
    // weights reuses this NHWC copy of the same tensor.
    converted_x_ = training_ && xs.data() != x.data() ? xs : Tensor();
    converted_from_ = x.data();
    Tensor ys = y.desc().same_layout(out_desc_) ? y : be_.allocate(out_desc_);
    if (!a.has_fwd) {
      int count = 0, returned = 0;
      RN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(ctx_.cudnn(), &count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(count));
      // Each search starts from the widest math type; the winner's is set before each call.
      RN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, search_math_));
      const SearchWorkspace sw(ctx_.workspace_limit());
      RN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
          ctx_.cudnn(), xd_, xs.data(), wd_, ws_w.data(), cd_, yd_, ys.data(), count, &returned,
          perf.data(), sw.data(), sw.bytes()));
      const auto& best = pick(perf, returned, sw.bytes(), "forward");
      a.fwd = best.algo, a.fwd_math = best.mathType, a.has_fwd = true;
    }
    RN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, a.fwd_math));
    size_t ws_bytes = 0;
    RN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(ctx_.cudnn(), xd_, wd_, cd_, yd_, a.fwd,
                                                           &ws_bytes));
    Tensor ws = ctx_.scratch(ws_bytes);
    const float one = 1.f, zero = 0.f;
    RN_CUDNN_CHECK(cudnnConvolutionForward(ctx_.cudnn(), &one, xd_, xs.data(), wd_, ws_w.data(),
                                           cd_, a.fwd, ws.data(), ws_bytes, &zero, yd_, ys.data()));
    if (p_.bias) {
      // NHWC: the output is a (N*H*W) x O matrix and the bias one row of it.
      launch_bias_add(out_desc_.dtype, ys.data(), bias->data_as<float>(),
                      out_desc_.shape.numel() / p_.out_channels, p_.out_channels, ctx_.stream());
    }
    if (ys.data() != y.data()) be_.reorder(ys, y);
  }

  void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) override {
    ConvAlgos& a = ctx_.conv_algos(key_);
    Tensor dys = be_.as_layout(dy, out_desc_), wl = be_.as_layout(w, w_desc_);
    Tensor dxs = dx.desc().same_layout(x_desc_) ? dx : be_.allocate(x_desc_);
    if (!a.has_bwd_data) {
      int count = 0, returned = 0;
      RN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(ctx_.cudnn(), &count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(count));
      // Each search starts from the widest math type; the winner's is set before each call.
      RN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, search_math_));
      const SearchWorkspace sw(ctx_.workspace_limit());
      RN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
          ctx_.cudnn(), wd_, wl.data(), yd_, dys.data(), cd_, xd_, dxs.data(), count, &returned,
          perf.data(), sw.data(), sw.bytes()));
      const auto& best = pick(perf, returned, sw.bytes(), "backward-data");
      a.bwd_data = best.algo, a.bwd_data_math = best.mathType, a.has_bwd_data = true;
    }
    RN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, a.bwd_data_math));
    size_t ws_bytes = 0;
    RN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(ctx_.cudnn(), wd_, yd_, cd_, xd_,
                                                                a.bwd_data, &ws_bytes));
    Tensor ws = ctx_.scratch(ws_bytes);
    const float one = 1.f, zero = 0.f;
    RN_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx_.cudnn(), &one, wd_, wl.data(), yd_, dys.data(),
                                                cd_, a.bwd_data, ws.data(), ws_bytes, &zero, xd_,
                                                dxs.data()));
    if (dxs.data() != dx.data()) be_.reorder(dxs, dx);
  }

  void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                             Tensor* dbias) override {
    ConvAlgos& a = ctx_.conv_algos(key_);
    Tensor xs = converted_x_.defined() && converted_from_ == x.data() ? converted_x_
                                                                      : be_.as_layout(x, x_desc_);
    converted_x_ = Tensor();
    Tensor dys = be_.as_layout(dy, out_desc_);
    Tensor dws = dw.desc().same_layout(w_desc_) ? dw : be_.allocate(w_desc_);
    if (!a.has_bwd_filter) {
      int count = 0, returned = 0;
      RN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(ctx_.cudnn(), &count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(count));
      // Each search starts from the widest math type; the winner's is set before each call.
      RN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, search_math_));
      const SearchWorkspace sw(ctx_.workspace_limit());
      // The search writes dws; the call below overwrites it.
      RN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
          ctx_.cudnn(), xd_, xs.data(), yd_, dys.data(), cd_, wd_, dws.data(), count, &returned,
          perf.data(), sw.data(), sw.bytes()));
      const auto& best = pick(perf, returned, sw.bytes(), "backward-filter");
      a.bwd_filter = best.algo, a.bwd_filter_math = best.mathType, a.has_bwd_filter = true;
    }
    RN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, a.bwd_filter_math));
    size_t ws_bytes = 0;
    RN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(ctx_.cudnn(), xd_, yd_, cd_, wd_,
                                                                  a.bwd_filter, &ws_bytes));
    Tensor ws = ctx_.scratch(ws_bytes);
    const float one = 1.f, zero = 0.f;
    RN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx_.cudnn(), &one, xd_, xs.data(), yd_,
                                                  dys.data(), cd_, a.bwd_filter, ws.data(),
                                                  ws_bytes, &zero, wd_, dws.data()));
    if (dws.data() != dw.data()) be_.reorder(dws, dw);
    if (p_.bias) {
      launch_column_sum(ctx_, out_desc_.dtype, dys.data(), dbias->data_as<float>(),
                        out_desc_.shape.numel() / p_.out_channels, p_.out_channels);
    }
  }

 private:
  CudaBackend& be_;
  CudaContext& ctx_;
  ConvParams p_;
  bool training_;
  TensorDesc x_desc_, out_desc_, w_desc_;
  TensorDescriptor xd_, yd_;
  FilterDescriptor wd_;
  ConvolutionDescriptor cd_;
  cudnnMathType_t search_math_ = CUDNN_DEFAULT_MATH;
  std::string key_;
  Tensor converted_x_;  // forward's NHWC copy of a plain input, until backward weights
  const void* converted_from_ = nullptr;
};

}  // namespace

std::unique_ptr<ConvOp> make_conv(CudaBackend& be, const ConvParams& p, const TensorDesc& x,
                                  bool training) {
  return std::make_unique<CudaConv>(be, p, x, training);
}

}  // namespace rn::cuda

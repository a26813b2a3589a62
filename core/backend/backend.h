// The op set: one interface, implemented on oneDNN (core/backend/cpu) and cuDNN
// (core/backend/cuda). Ops with expensive set-up (convolution, batch norm, pooling, linear) are
// planned once per input shape and return an op object that runs forward and backward many times.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/backend/ops.h"
#include "core/tensor.h"

namespace rn {

// The output N x out_channels x OH x OW of convolution `p` on an N x C x H x W input; checks that
// the groups divide both channel counts and that the input is large enough for the kernel.
Shape conv_output_shape(const ConvParams& p, const Shape& x);

// The op objects: a backend plans one for an input shape and runs it many times. Their public
// methods are not virtual: they check every tensor against the plan the same way on every
// backend (its shape, and that the optional ones the plan needs are there; one line naming the
// op, the argument, the planned and the given shapes), then call the backend's *_impl. A
// backend checks only what is its own (layouts, element types it cannot take).

class ConvOp {
 public:
  virtual ~ConvOp() = default;
  virtual const TensorDesc& output_desc() const = 0;
  // The layout the op would like its weights kept in (the parameter is stored that way).
  virtual const TensorDesc& weight_desc() const = 0;
  // Whether backward_weights writes an f32 gradient (in weight_desc()'s layout family) when the
  // weights are bf16 / f16, so that it goes straight beside the f32 master; else it is written in
  // weight_desc() and cast.
  virtual bool weight_grad_f32() const { return false; }
  // The algorithm of a pass, where the backend chooses one ("direct", "winograd"); "" for a
  // pass not planned yet (the backward passes are planned at their first call) or a backend
  // that does not say.
  virtual const char* algorithm(ConvPass) const { return ""; }
  void forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
  void backward_data(const Tensor& dy, const Tensor& w, Tensor& dx);
  void backward_weights(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias);

 protected:
  ConvOp(const ConvParams& p, const Shape& x);

 private:
  virtual void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
  virtual void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) = 0;
  virtual void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                                     Tensor* dbias) = 0;
  Shape x_, bias_;  // bias_: empty without a bias
};

// Batch statistics for training; running statistics are updated by the caller from `mean`/`var`.
class BatchNormOp {
 public:
  virtual ~BatchNormOp() = default;
  virtual const TensorDesc& output_desc() const = 0;
  virtual const TensorDesc& workspace_desc() const = 0;  // empty shape when not fused with ReLU
  // Training: batch statistics into mean/var (biased variance), y = gamma * x^ + beta [relu].
  void forward_training(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                        Tensor& mean, Tensor& var, Tensor* workspace);
  // Inference with the given (running) statistics.
  void forward_inference(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const Tensor& mean, const Tensor& var, Tensor& y);
  void backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
                const Tensor& var, const Tensor* workspace, Tensor& dx, Tensor& dgamma,
                Tensor& dbeta);

 protected:
  explicit BatchNormOp(const Shape& x);

 private:
  virtual void forward_training_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                     Tensor& y, Tensor& mean, Tensor& var, Tensor* workspace) = 0;
  virtual void forward_inference_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& mean, const Tensor& var, Tensor& y) = 0;
  virtual void backward_impl(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& mean, const Tensor& var, const Tensor* workspace,
                             Tensor& dx, Tensor& dgamma, Tensor& dbeta) = 0;
  // gamma, beta, the statistics and their gradients: one value per channel.
  void check_channels(const char* arg, const Tensor& t) const;
  Shape x_, channels_;
};

class PoolOp {
 public:
  virtual ~PoolOp() = default;
  virtual const TensorDesc& output_desc() const = 0;
  virtual const TensorDesc& workspace_desc() const = 0;  // max pooling in training only
  void forward(const Tensor& x, Tensor& y, Tensor* workspace);
  void backward(const Tensor& dy, const Tensor* workspace, Tensor& dx);

 protected:
  explicit PoolOp(const Shape& x) : x_(x) {}

 private:
  virtual void forward_impl(const Tensor& x, Tensor& y, Tensor* workspace) = 0;
  virtual void backward_impl(const Tensor& dy, const Tensor* workspace, Tensor& dx) = 0;
  Shape x_;
};

// y = x W^T + b on N x K inputs (an N x C x 1 x 1 input is taken as N x C).
class LinearOp {
 public:
  virtual ~LinearOp() = default;
  virtual const TensorDesc& output_desc() const = 0;
  void forward(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
  void backward_data(const Tensor& dy, const Tensor& w, Tensor& dx);
  void backward_weights(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias);

 protected:
  LinearOp(const LinearParams& p, const Shape& x);

 private:
  virtual void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
  virtual void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) = 0;
  virtual void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                                     Tensor* dbias) = 0;
  Shape x_, w_, bias_;  // bias_: empty without a bias
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;

  // A buffer for `desc`, recycled through the backend's pool (no system allocation in steady
  // state).
  virtual Tensor allocate(const TensorDesc& desc) = 0;
  // A buffer that lives as long as the model (parameters, optimizer state, running statistics):
  // taken outside the pool, so that replacing it returns the memory at once.
  virtual Tensor allocate_persistent(const TensorDesc& desc) = 0;
  // The layout of `like`'s family (same format tag) for another shape of the same rank.
  virtual LayoutPtr layout_like(const TensorDesc& like, const Shape& shape) = 0;
  // The plain (row-major) host tensor `t` copied to this device, and back.
  virtual Tensor upload(const Tensor& host) = 0;
  virtual Tensor upload_persistent(const Tensor& host) = 0;
  virtual Tensor download(const Tensor& t) = 0;  // plain host copy, whatever the layout
  // Host memory the device reads fastest: page-locked on CUDA (cudaHostAlloc), where an upload
  // from it is asynchronous and runs at the bus's full speed; ordinary host memory elsewhere.
  virtual Tensor allocate_pinned(const TensorDesc& desc) {
    return Tensor::zeros(desc.shape, desc.dtype);
  }
  // Copies the plain host tensor `host` into the plain device tensor `dst` (same desc) ahead of
  // the compute that reads it: on CUDA on a copy stream, overlapping the compute already queued,
  // and compute queued later waits for it. The copy itself waits for the compute queued before
  // the previous upload_ahead, so that with two device buffers in turn a buffer is refilled
  // only once the step that read it is done. `host` must stay unchanged until synchronize().
  // Elsewhere the copy happens at once.
  virtual void upload_ahead(const Tensor& host, Tensor& dst) { copy(upload(host), dst); }

  // The algorithm convolutions planned from now on use (ConvAlgorithm); automatic by default.
  virtual void set_conv_algorithm(ConvAlgorithm) {}
  // What the convolutions planned so far run, per pass ("forward: 12 of 19 Winograd, ..."); ""
  // for a backend that does not choose.
  virtual std::string conv_algorithm_summary() const { return ""; }
  virtual std::unique_ptr<ConvOp> make_conv(const ConvParams& p, const TensorDesc& x,
                                            bool training) = 0;
  virtual std::unique_ptr<BatchNormOp> make_batch_norm(const BatchNormParams& p,
                                                       const TensorDesc& x, bool training) = 0;
  virtual std::unique_ptr<PoolOp> make_pool(const PoolParams& p, const TensorDesc& x,
                                            bool training) = 0;
  virtual std::unique_ptr<LinearOp> make_linear(const LinearParams& p, const TensorDesc& x) = 0;

  // Element-wise ops. Operands must have the same desc (layouts included); padded blocks are
  // zero and stay zero.
  virtual void relu_forward(const Tensor& x, Tensor& y) = 0;
  virtual void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;  // from output
  // dx = y > 0 ? a + b : 0: ReLU's backward of a gradient that arrives as a sum.
  virtual void relu_backward_add(const Tensor& y, const Tensor& a, const Tensor& b, Tensor& dx) = 0;
  virtual void add(const Tensor& a, const Tensor& b, Tensor& y, bool relu) = 0;  // y = a + b [relu]
  virtual void add_inplace(Tensor& y, const Tensor& x) = 0;                      // y += x
  virtual void axpby(Tensor& y, float a, const Tensor& x, float b) = 0;          // y = a*x + b*y
  // y = 1 / (1 + exp(-x)); padded blocks stay zero.
  virtual void sigmoid_forward(const Tensor& x, Tensor& y) = 0;
  // dx = dy * y * (1 - y), from the output y.
  virtual void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;
  // The element-wise product y = a * (alpha * b + beta): a * b, and a * (1 - b) for gates.
  virtual void mul(const Tensor& a, const Tensor& b, Tensor& y, float alpha = 1.f,
                   float beta = 0.f) = 0;
  // y = factor * x (x unchanged; `scale` is the in-place form).
  virtual void scale_to(const Tensor& x, float factor, Tensor& y) = 0;
  // Inverted dropout: y = x * keep / (1 - p), keep drawn by dropout_keep(key, the element's
  // N x C x H x W index), so the mask is the same on every backend and layout. Backward is the
  // same map applied to dy with the same key.
  virtual void dropout_forward(const Tensor& x, float p, uint64_t key, Tensor& y) = 0;
  virtual void dropout_backward(const Tensor& dy, float p, uint64_t key, Tensor& dx) = 0;
  // Shortcut option A: identity subsampled by `stride`, zero-padded from x's channels to y's,
  // the new channels split evenly before and after (as the CIFAR ResNets of the paper).
  virtual void pad_shortcut_forward(const Tensor& x, int stride, Tensor& y) = 0;
  virtual void pad_shortcut_backward(const Tensor& dy, int stride, Tensor& dx) = 0;
  // y += scale[c] * x + shift[c], per channel of N x C x H x W tensors of one layout; scale and
  // shift are plain C-vectors (the cross-replica batch norm's gradient correction).
  virtual void channel_affine_add(Tensor& y, const Tensor& x, const Tensor& scale,
                                  const Tensor& shift) = 0;

  // Softmax cross-entropy on N x K logits; writes d(mean loss)/d(logits) when `dlogits` is given.
  virtual LossStats softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                          const CrossEntropyParams& p, Tensor* dlogits) = 0;
  // The same, its statistics read later by queued_loss_stats(): the GPU backend queues the
  // kernel and the copy back and waits only there, so that a training step waits for the device
  // once, at its end, instead of between forward and backward. One loss queued at a time.
  virtual void queue_softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                           const CrossEntropyParams& p, Tensor* dlogits) {
    queued_loss_ = softmax_cross_entropy(logits, labels, p, dlogits);
  }
  virtual LossStats queued_loss_stats() { return queued_loss_; }

  // Optimizer updates; w, g, m share one desc.
  virtual void sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) = 0;
  // The same update on many tensors at once (the CUDA backend launches one kernel per 64
  // tensors instead of one per tensor); by default one sgd_update each.
  struct UpdateTensors {
    Tensor* w;
    const Tensor* g;
    Tensor* m;
  };
  virtual void sgd_update_many(const SgdParams& p, const std::vector<UpdateTensors>& list) {
    for (const UpdateTensors& t : list) sgd_update(p, *t.w, *t.g, *t.m);
  }
  virtual void lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) = 0;

  virtual void fill(Tensor& t, float value) = 0;
  virtual void scale(Tensor& t, float factor) = 0;
  virtual void copy(const Tensor& src, Tensor& dst) = 0;     // same desc
  virtual void reorder(const Tensor& src, Tensor& dst) = 0;  // same shape, any layouts
  virtual void cast(const Tensor& src, Tensor& dst) = 0;     // same shape, f32 <-> bf16 / f16
  // Many casts at once, either way between f32 and bf16 / f16 (the CUDA backend casts up to 64
  // tensors per launch); by default one cast each.
  struct CastPair {
    const Tensor* src;
    Tensor* dst;
  };
  virtual void cast_many(const std::vector<CastPair>& list) {
    for (const CastPair& c : list) cast(*c.src, *c.dst);
  }
  // Whether every element is finite (no inf, no NaN): the overflow check of fp16 loss scaling.
  virtual bool all_finite(const Tensor& t) = 0;
  // Raw bytes between two buffers of this backend (gradient buckets pack and unpack with it).
  virtual void copy_bytes(const Tensor& src, size_t src_offset, Tensor& dst, size_t dst_offset,
                          size_t bytes) = 0;

  virtual void synchronize() = 0;

 private:
  LossStats queued_loss_;
};

std::unique_ptr<Backend> make_cpu_backend(int threads);
// The instruction set oneDNN runs on this CPU (its effective ISA, after ONEDNN_MAX_CPU_ISA):
// "avx512_core_amx", "avx512_core_bf16", "avx512_core", "avx2", ...
std::string cpu_isa_name();
// Why `compute` cannot run on `device` ("" when it can): bf16 on the CPU needs AMX or
// AVX512-BF16 (elsewhere oneDNN would emulate it many times slower), f16 runs on CUDA only.
std::string precision_unsupported(Device device, DType compute);
// Whether bf16 is faster than fp32 on this CPU, and why, in words that finish "bf16 (or fp32):
// ...". With AMX it is; with AVX512-BF16 alone, where ~10 ms of bf16 dot products give at least
// kBf16MinRatio times the multiply-adds of fp32 FMAs (`ratio`; an EPYC gives about 2, some Xeons
// 0.5, where oneDNN's bf16 convolutions run at half the fp32 rate); without either it is not.
constexpr double kBf16MinRatio = 1.5;
struct Bf16Verdict {
  bool faster = false;
  double ratio = 0;  // measured bf16 / fp32 multiply-add rate; 0 where not measured
  std::string why;
};
Bf16Verdict cpu_bf16_verdict();
// The fp32 peak of `threads` cores in GFLOP/s: ~10 ms of the widest FMAs they have (AVX-512 or
// AVX2) on that many threads at once (one per core: the clock all of them sustain), best of
// five, two flops per multiply-add; 0 where not measured (another architecture).
double cpu_fp32_peak_gflops(int threads);
// Throws where the project was built without CUDA. `math`: TF32 for fp32 or not (MathMode).
std::unique_ptr<Backend> make_cuda_backend(int device_index, MathMode math = MathMode::fast);
bool cuda_available();
// The PCI bus id of the GPU a CUDA backend of `device_index` takes ("0000:65:00.0"), or "" where
// this process sees no GPU (or was built without CUDA).
std::string cuda_gpu_of(int device_index);
// What this process loads and sees of CUDA, as (name, value) lines: the driver's and runtime's
// versions, the cuDNN and cuBLAS it loaded at run time (which may differ from the headers it was
// built with), and each GPU; one line saying why where there is none.
std::vector<std::pair<std::string, std::string>> cuda_runtime_report();
std::unique_ptr<Backend> make_backend(Device device, int threads);

}  // namespace rn

// The oneDNN implementation of the Backend interface.
#pragma once

#include <vector>

#include "core/backend/backend.h"
#include "core/backend/cpu/dnnl_common.h"

namespace rn::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  Device device() const override { return Device{}; }
  std::string name() const override;

  Tensor allocate(const TensorDesc& desc) override { return ctx_.allocate(desc); }
  Tensor allocate_persistent(const TensorDesc& desc) override;
  LayoutPtr layout_like(const TensorDesc& like, const Shape& shape) override;
  Tensor upload(const Tensor& host) override;
  Tensor upload_persistent(const Tensor& host) override;
  Tensor download(const Tensor& t) override;

  void set_conv_algorithm(ConvAlgorithm a) override { ctx_.set_conv_algorithm(a); }
  std::string conv_algorithm_summary() const override;
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

  LossStats softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                  const CrossEntropyParams& p, Tensor* dlogits) override;

  void sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) override;
  void lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) override;

  void fill(Tensor& t, float value) override;
  void scale(Tensor& t, float factor) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void reorder(const Tensor& src, Tensor& dst) override;
  void cast(const Tensor& src, Tensor& dst) override;
  bool all_finite(const Tensor& t) override;
  void copy_bytes(const Tensor& src, size_t src_offset, Tensor& dst, size_t dst_offset,
                  size_t bytes) override;
  void synchronize() override {}

  int threads() const { return threads_; }

 private:
  Reorderer& reorderer(const memory::desc& from, const memory::desc& to);

  DnnlContext ctx_;
  int threads_;
  std::vector<Reorderer> reorders_;  // few distinct pairs: a linear search is enough
};

}  // namespace rn::cpu

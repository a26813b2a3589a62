// Fully connected layer on cuBLAS, in fp32 (TF32 tensor cores where the backend's math mode allows
// them, MathMode::fast; full fp32 with MathMode::exact): the head of every network
// sees N x C after global pooling, a small matrix whose precision is worth more than its time.
// Row-major N x K data is column-major K x N to cuBLAS, so each product is written transposed.
#include "core/backend/cuda/cuda_backend.h"

namespace rn::cuda {
namespace {

class CudaLinear final : public LinearOp {
 public:
  CudaLinear(CudaBackend& be, const LinearParams& p, const TensorDesc& x)
      : LinearOp(p, x.shape), be_(be), ctx_(be.context()), p_(p) {
    const auto& s = x.shape;
    RN_CHECK(s.rank() == 2 || (s.rank() == 4 && s[2] == 1 && s[3] == 1),
             "[linear] input must be N x K or N x K x 1 x 1, got " << s.str());
    RN_CHECK(x.dtype == DType::f32, "[linear] runs in f32; got " << x.str());
    n_ = s[0];
    k_ = s[1];
    out_desc_ = TensorDesc{Shape{n_, p.out_features}, DType::f32, nullptr};
    compute_ = math_choice(DType::f32, be.math_mode()).tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                            : CUBLAS_COMPUTE_32F;
  }

  const TensorDesc& output_desc() const override { return out_desc_; }

  void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    check_matrix(x);
    // y^T (O x N) = W (K x O col-major)^T * x^T (K x N).
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, p_.out_features, n_, k_, w.data(), k_, x.data(), k_, y.data(),
         p_.out_features);
    if (p_.bias) {
      launch_bias_add(DType::f32, y.data(), bias->data_as<float>(), n_, p_.out_features,
                      ctx_.stream());
    }
  }

  void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) override {
    check_matrix(dx);
    // dx^T (K x N) = W (K x O) * dy^T (O x N).
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, k_, n_, p_.out_features, w.data(), k_, dy.data(),
         p_.out_features, dx.data(), k_);
  }

  void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                             Tensor* dbias) override {
    check_matrix(x);
    // dW^T (K x O) = x^T (K x N) * dy (N x O).
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, k_, p_.out_features, n_, x.data(), k_, dy.data(),
         p_.out_features, dw.data(), k_);
    if (p_.bias) {
      launch_column_sum(ctx_, DType::f32, dy.data(), dbias->data_as<float>(), n_, p_.out_features);
    }
  }

 private:
  // An N x K x 1 x 1 tensor, NHWC or not, has the bytes of the N x K matrix.
  void check_matrix(const Tensor& t) const {
    RN_CHECK(t.numel() == n_ * k_ && t.dtype() == DType::f32,
             "[linear] planned for " << n_ << " x " << k_ << " f32, got " << t.desc().str());
  }

  void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
            const void* a, int64_t lda, const void* b, int64_t ldb, void* c, int64_t ldc) {
    const float one = 1.f, zero = 0.f;
    RN_CUBLAS_CHECK(cublasGemmEx(ctx_.cublas(), ta, tb, static_cast<int>(m), static_cast<int>(n),
                                 static_cast<int>(k), &one, a, CUDA_R_32F, static_cast<int>(lda), b,
                                 CUDA_R_32F, static_cast<int>(ldb), &zero, c, CUDA_R_32F,
                                 static_cast<int>(ldc), compute_, CUBLAS_GEMM_DEFAULT));
  }

  cublasComputeType_t compute_ = CUBLAS_COMPUTE_32F;
  CudaBackend& be_;
  CudaContext& ctx_;
  LinearParams p_;
  int64_t n_ = 0, k_ = 0;
  TensorDesc out_desc_;
};

}  // namespace

std::unique_ptr<LinearOp> make_linear(CudaBackend& be, const LinearParams& p, const TensorDesc& x) {
  return std::make_unique<CudaLinear>(be, p, x);
}

}  // namespace rn::cuda

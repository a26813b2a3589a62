// Shared pieces of the CUDA tests: a fixture holding a CPU and a CUDA backend that skips where
// no GPU is usable, transfers in any dtype, and the tolerances of each storage type.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "core/backend/backend.h"
#include "tests/core/gradient_check.h"

namespace rn::test {

// Comparison bounds of a CUDA result against the CPU backend's fp32 one. fp32 convolutions and
// matrix products may use TF32 (10-bit mantissa); bf16 keeps 8 bits, fp16 11.
struct Tolerance {
  double atol, rtol;
};
inline Tolerance tolerance_of(DType t) {
  switch (t) {
    case DType::bf16:
      return {6e-2, 4e-2};
    case DType::f16:
      return {2e-2, 1e-2};
    default:
      return {1e-2, 1e-2};
  }
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override { SetUp(MathMode::fast); }
  void SetUp(MathMode math) {
    if (!cuda_available())
      GTEST_SKIP() << "no usable CUDA GPU (built without CUDA, no driver, or no device)";
    cpu_ = make_cpu_backend(1);
    gpu_ = make_cuda_backend(0, math);
  }

  // Host values (row-major f32) on the GPU, plain, in dtype `t`.
  Tensor to_gpu(const Shape& s, const std::vector<float>& v, DType t = DType::f32) {
    Tensor f = gpu_->upload(Tensor::from_vector(s, v));
    if (t == DType::f32) return f;
    Tensor out = gpu_->allocate(TensorDesc{s, t, nullptr});
    gpu_->cast(f, out);
    return out;
  }
  // The same, in the layout (and dtype) of `desc`.
  Tensor to_gpu_as(const TensorDesc& desc, const std::vector<float>& v) {
    Tensor t = gpu_->allocate(desc);
    gpu_->reorder(to_gpu(desc.shape, v, desc.dtype), t);
    return t;
  }
  // Row-major f32 values of a GPU tensor of any layout and dtype.
  std::vector<float> from_gpu(const Tensor& t) {
    Tensor f = t;
    if (t.dtype() != DType::f32) {
      f = gpu_->allocate(TensorDesc{t.shape(), DType::f32, nullptr});
      gpu_->cast(t, f);
    }
    return gpu_->download(f).to_vector();
  }
  std::vector<float> from_cpu(const Tensor& t) { return cpu_->download(t).to_vector(); }
  Tensor to_cpu(const Shape& s, const std::vector<float>& v) {
    return cpu_->upload(Tensor::from_vector(s, v));
  }

  // Compare with a tolerance scaled to the largest expected magnitude (a sum of many products
  // carries its rounding in absolute, not relative, terms).
  ::testing::AssertionResult close(const std::vector<float>& gpu, const std::vector<float>& cpu,
                                   DType t, double scale = 1.0) {
    double mx = 0;
    for (float v : cpu) mx = std::max(mx, static_cast<double>(std::abs(v)));
    const Tolerance tol = tolerance_of(t);
    return all_close(gpu, cpu, tol.atol * scale * std::max(1.0, mx), tol.rtol);
  }

  std::unique_ptr<Backend> cpu_, gpu_;
};

}  // namespace rn::test

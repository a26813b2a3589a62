// Shared pieces of the kernel-body tests: the storage types they run over, comparisons that name
// the worst element, and the CPU backend whose ops are the kernels' twins.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "tests/core/backend/cuda/kernel_emulator.h"

namespace rn::cuda::emu {

using StorageTypes = ::testing::Types<float, Bf16, Half>;

// The CPU twin's tolerance for results stored in T: a few units in the last place of T.
template <typename T>
constexpr float storage_eps() {
  if constexpr (std::is_same_v<T, Bf16>) return 8e-3f;
  if constexpr (std::is_same_v<T, Half>) return 2e-3f;
  return 2e-6f;
}

// Values as T holds them: rounded into T and read back.
template <typename T>
std::vector<float> as_stored(const std::vector<float>& v) {
  return loaded(stored<T>(v));
}

// Every value of `got` within atol + rtol * |want| of `want`; the failure names the worst one.
inline ::testing::AssertionResult close(const std::vector<float>& got,
                                        const std::vector<float>& want, float rtol,
                                        float atol = 0.f) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << got.size() << " values, expected " << want.size();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(got[i]) && std::isnan(want[i]);
    const double excess =
        both_nan ? 0.0
        : std::isnan(got[i]) || std::isnan(want[i])
            ? std::numeric_limits<double>::infinity()
            : std::fabs(double(got[i]) - want[i]) - atol - rtol * std::fabs(want[i]);
    if (excess > worst) worst = excess, at = i;
  }
  if (worst > 0)
    return ::testing::AssertionFailure() << "element " << at << " is " << got[at] << ", expected "
                                         << want[at] << " (" << got.size() << " values)";
  return ::testing::AssertionSuccess();
}

// A storage type's name for messages.
template <typename T>
const char* type_name() {
  if constexpr (std::is_same_v<T, Bf16>) return "bf16";
  if constexpr (std::is_same_v<T, Half>) return "f16";
  return "f32";
}

// NCHW <-> NHWC on host vectors (the layout the CUDA ops keep activations in).
inline std::vector<float> to_nhwc(const std::vector<float>& v, const Dims4& d) {
  std::vector<float> out(v.size());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t p = 0; p < d.h * d.w; ++p)
        out[(n * d.h * d.w + p) * d.c + c] = v[(n * d.c + c) * d.h * d.w + p];
  return out;
}
inline std::vector<float> from_nhwc(const std::vector<float>& v, const Dims4& d) {
  std::vector<float> out(v.size());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t p = 0; p < d.h * d.w; ++p)
        out[(n * d.c + c) * d.h * d.w + p] = v[(n * d.h * d.w + p) * d.c + c];
  return out;
}

// The values of T-typed emulated memory from `offset`, `n` of them, as floats.
template <typename T>
std::vector<float> read(const Buffer<T>& b, int64_t offset = 0, int64_t n = -1) {
  const std::vector<T> all = b.values();
  if (n < 0) n = b.size() - offset;
  return loaded(std::vector<T>(all.begin() + offset, all.begin() + offset + n));
}

// Host plain f32 tensors for the CPU twin.
inline Tensor host_tensor(const Shape& s, const std::vector<float>& v) {
  return Tensor::from_vector(s, v);
}

}  // namespace rn::cuda::emu

// The element types the CPU element-wise loops run on: f32, and bf16 stored as its upper 16 bits
// (computed in f32, rounded to nearest even on store), chosen from a tensor's dtype at run time.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/check.h"
#include "core/tensor.h"

namespace rn::cpu {

struct Bf16 {
  uint16_t bits;
};

inline float to_f32(float v) {
  return v;
}
inline float to_f32(Bf16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <typename T>
inline T from_f32(float v);
template <>
inline float from_f32<float>(float v) {
  return v;
}
// Round to nearest even, as oneDNN's reorders do; NaN stays NaN (quiet).
template <>
inline Bf16 from_f32<Bf16>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return Bf16{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return Bf16{static_cast<uint16_t>(u >> 16)};
}

// Calls f(T{}) with T the element type of `t` (float or Bf16); other types are an error of `op`.
template <typename F>
void with_element_type(const char* op, const Tensor& t, F&& f) {
  switch (t.dtype()) {
    case DType::f32:
      f(float{});
      return;
    case DType::bf16:
      f(Bf16{});
      return;
    default:
      RN_FAIL("[" << op << "] the CPU backend takes f32 or bf16, got " << t.desc().str());
  }
}

}  // namespace rn::cpu

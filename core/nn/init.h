// Deterministic parameter initialisation (He et al. 2015 for convolutions, PyTorch's defaults for
// linear layers), from a counter-based generator so that the same seed gives the same weights
// on every machine and standard library.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace rn::nn {

class InitRng {
 public:
  explicit InitRng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  // Weight vectors of zeros, nothing drawn: a network's shapes without the seconds that drawing
  // a large one's weights takes (wide_resnet101_2: 127 M normal draws).
  static InitRng zeros() {
    InitRng r(0);
    r.draw_ = false;
    return r;
  }
  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next_u64() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                            // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  std::vector<float> normal_vector(int64_t n, double std) {
    std::vector<float> v(n);
    if (!draw_) return v;
    for (auto& x : v) x = static_cast<float>(normal() * std);
    return v;
  }
  std::vector<float> uniform_vector(int64_t n, double bound) {
    std::vector<float> v(n);
    if (!draw_) return v;
    for (auto& x : v) x = static_cast<float>((2 * uniform() - 1) * bound);
    return v;
  }

 private:
  uint64_t state_;
  bool draw_ = true;
};

}  // namespace rn::nn

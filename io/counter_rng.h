// Counter-based random numbers: every draw is a pure function of (seed, counters), so data
// order and augmentation never depend on thread timing, worker count or rank count.
#pragma once

#include <cstdint>

namespace rn::io {

// The SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective mix with full avalanche.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Domain tags keep the sampler's and the augmenter's streams independent under one seed.
enum class RngStream : uint64_t {
  shuffle = 0x53485546464c45ull,
  augment = 0x4155474d454e54ull,
  substitute = 0x5355425354ull,
  dropout = 0x44524f504f5554ull,
};

// Hashes (seed, stream, a, b) to 64 bits; chaining through splitmix64 at each step keeps
// neighbouring counters (sample i and i+1, epoch e and e+1) uncorrelated.
inline uint64_t counter_hash(uint64_t seed, RngStream stream, uint64_t a, uint64_t b = 0) {
  uint64_t h = splitmix64(seed ^ static_cast<uint64_t>(stream));
  h = splitmix64(h ^ a);
  return splitmix64(h ^ (b * 0xd1b54a32d192ed03ull));
}

// A sequential generator over one key, for the Fisher-Yates shuffle of an epoch.
class CounterRng {
 public:
  explicit CounterRng(uint64_t key) : key_(key) {}

  uint64_t next() { return splitmix64(key_ + 0x9e3779b97f4a7c15ull * ++counter_); }

  // Uniform in [0, n) without modulo bias (Lemire's multiply-shift with rejection).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = -n % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

}  // namespace rn::io

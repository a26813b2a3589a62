// The dropout mask as a pure function of (key, element): both backends draw the same mask for
// the same key whatever the layout, and backward draws it again instead of storing it.
#pragma once

#include <cstdint>

#include "core/backend/host_device.h"

namespace rn {

// The SplitMix64 finaliser (Steele, Lea, Flood 2014).
RN_HOST_DEVICE inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Dropping probability p as a threshold on 24 random bits.
RN_HOST_DEVICE inline uint32_t dropout_threshold(float p) {
  return static_cast<uint32_t>(static_cast<double>(p) * 16777216.0);
}

// Whether the element at `logical` (its N x C x H x W row-major index) is kept.
RN_HOST_DEVICE inline bool dropout_keep(uint64_t key, int64_t logical, uint32_t threshold) {
  return static_cast<uint32_t>(
             mix64(key ^ (static_cast<uint64_t>(logical) * 0xd1b54a32d192ed03ull)) >> 40) >=
         threshold;
}

}  // namespace rn

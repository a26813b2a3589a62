// Whether bf16 pays on this CPU: with AMX it does; with AVX512-BF16 alone it depends on the
// processor (an EPYC runs vdpbf16ps at twice the multiply-adds of its fp32 FMAs, some Xeons at
// half of them), so a few milliseconds of both instructions decide, as launch/scripts/simd_peak.c
// measures them. The fp32 FMA loop also gives the peak a step profile compares against.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "core/backend/backend.h"
#include "core/check.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace rn {
namespace {

#if defined(__x86_64__)
constexpr int kChains = 24;  // independent accumulators: throughput, not latency
// The chains written out, so that each stays in a register (a loop over them was interchanged
// with the rounds and went through memory, measuring latency instead).
// clang-format off
#define RN_REPEAT12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define RN_REPEAT24(X) \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
  X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
// clang-format on
constexpr long kRounds = 100000;  // about 10 ms for the three rounds of both

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Stores the accumulators where the compiler cannot drop the loops that made them.
__attribute__((target("avx512f"))) void keep(const __m512* acc) {
  __m512 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  asm volatile("" : : "r"(lanes) : "memory");
}

// Multiply-adds per second of 512-bit fp32 FMAs (16 per instruction).
__attribute__((target("avx512f"))) double fp32_fma_rate(long rounds = kRounds) {
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  const auto t0 = std::chrono::steady_clock::now();
  for (long n = 0; n < rounds; ++n) {
#define RN_FMA(i) acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
    RN_REPEAT24(RN_FMA)
#undef RN_FMA
  }
  const double s = seconds_since(t0);
  keep(acc);
  return rounds * kChains * 16.0 / s;
}

// The same with 256-bit FMAs (8 per instruction), for CPUs without AVX-512: 12 chains, as AVX2
// has 16 registers.
__attribute__((target("avx2,fma"))) double fp32_fma_rate_avx2(long rounds) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m256 x = _mm256_set1_ps(1.0001f), y = _mm256_set1_ps(0.9999f);
  const auto t0 = std::chrono::steady_clock::now();
  for (long n = 0; n < rounds; ++n) {
#define RN_FMA(i) acc[i] = _mm256_fmadd_ps(x, y, acc[i]);
    RN_REPEAT12(RN_FMA)
#undef RN_FMA
  }
  const double s = seconds_since(t0);
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  asm volatile("" : : "r"(lanes) : "memory");
  return rounds * kChains * 8.0 / s;
}

// Multiply-adds per second of 512-bit bf16 dot products (32 per instruction).
__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_rate() {
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const auto t0 = std::chrono::steady_clock::now();
  for (long n = 0; n < kRounds; ++n) {
#define RN_DOT(i) acc[i] = _mm512_dpbf16_ps(acc[i], x, x);
    RN_REPEAT24(RN_DOT)
#undef RN_DOT
  }
  const double s = seconds_since(t0);
  keep(acc);
  return kRounds * kChains * 32.0 / s;
}
#endif

}  // namespace

double cpu_fp32_peak_gflops(int threads) {
#if defined(__x86_64__)
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
  constexpr long kPeakRounds = 2000000;  // some 10 ms a run
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<double> rate(static_cast<size_t>(std::max(threads, 1)));
    std::vector<std::thread> pool;
    for (size_t t = 0; t < rate.size(); ++t)
      pool.emplace_back([&rate, t, avx512] {
        rate[t] = avx512 ? fp32_fma_rate(kPeakRounds) : fp32_fma_rate_avx2(kPeakRounds);
      });
    for (std::thread& t : pool) t.join();
    double sum = 0;
    for (double r : rate) sum += r;
    best = std::max(best, sum);
  }
  return 2 * best / 1e9;
#else
  return 0;
#endif
}

Bf16Verdict cpu_bf16_verdict() {
  const std::string isa = cpu_isa_name();
  if (!precision_unsupported(Device{}, DType::bf16).empty())
    return {false, 0, str_cat("oneDNN runs ", isa, " here, without AMX or AVX512-BF16")};
  if (isa == "avx512_core_amx") return {true, 0, "this CPU has AMX (oneDNN: avx512_core_amx)"};
#if defined(__x86_64__)
  // The best of three of each, alternating, so that a clock change hits both alike.
  double fp32 = 0, bf16 = 0;
  for (int i = 0; i < 3; ++i) {
    fp32 = std::max(fp32, fp32_fma_rate());
    bf16 = std::max(bf16, bf16_dot_rate());
  }
  const double ratio = bf16 / fp32;
  char shown[16];
  std::snprintf(shown, sizeof shown, "%.2f", ratio);
  return {
      ratio >= kBf16MinRatio, ratio,
      str_cat("this CPU's bf16 dot products do ", shown,
              "x the multiply-adds per second of its fp32 FMAs ", "(oneDNN: ", isa, ", no AMX)")};
#else
  return {true, 0, str_cat("oneDNN runs ", isa, " here")};
#endif
}

}  // namespace rn

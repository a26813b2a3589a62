// The processor's own multiply-add peak on one core, the limit oneDNN's convolutions run against:
// 512-bit fp32 FMA (vfmadd231ps, 32 flops) and bf16 dot products (vdpbf16ps, 64 flops), each
// over 24 independent accumulators so that latency does not hide the throughput.
//   gcc -O2 -mavx512f -mavx512bf16 launch/scripts/simd_peak.c -o /tmp/simd_peak && /tmp/simd_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

enum { kChains = 24 };
static const long kInstructions = 480000000;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float total(const __m512* acc) {
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += _mm512_reduce_add_ps(acc[i]);
  return s;
}

// Laid out by hand: clang-format does not settle on one layout of this macro.
// clang-format off
#define REPEAT24(X) \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
  X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
// clang-format on

int main(void) {
  __m512 acc[kChains];
  const __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  const __m512bh xb = (__m512bh)_mm512_set1_epi16(0x3f80), yb = xb;  // bf16 1.0

  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_setzero_ps();
  double t0 = now();
  for (long n = 0; n < kInstructions / kChains; ++n) {
#define FMA(i) acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
    REPEAT24(FMA)
  }
  double s = now() - t0;
  printf("fp32 vfmadd231ps zmm: %6.2f G/s  %6.1f GFLOP/s per core  (%g)\n", kInstructions / s / 1e9,
         kInstructions * 32.0 / s / 1e9, total(acc));

  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_setzero_ps();
  t0 = now();
  for (long n = 0; n < kInstructions / kChains; ++n) {
#define DP(i) acc[i] = _mm512_dpbf16_ps(acc[i], xb, yb);
    REPEAT24(DP)
  }
  s = now() - t0;
  printf("bf16 vdpbf16ps zmm:   %6.2f G/s  %6.1f GFLOP/s per core  (%g)\n", kInstructions / s / 1e9,
         kInstructions * 64.0 / s / 1e9, total(acc));
  return 0;
}

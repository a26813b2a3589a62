// The grid emulator itself: the host bf16 / f16 conversions, the faults it must raise (an index
// outside its buffer, a misaligned vector, a barrier not every thread reaches, a barrier in a
// launch without them), barrier phases through shared memory, and a body whose index is shifted
// by one failing where its correct twin passes.
#include "tests/core/backend/cuda/kernel_emulator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace rn::cuda::emu {
namespace {

std::string fault_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const KernelFault& e) {
    return e.what();
  }
  return "";
}

TEST(KernelEmulatorTest, HalfConversionsRoundToNearestEven) {
  EXPECT_EQ(float_to_half(1.f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.f), 0xc000);
  EXPECT_EQ(float_to_half(65504.f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.f), 0x7bff);                         // below the midpoint to 65536
  EXPECT_EQ(float_to_half(65520.f), 0x7c00);                         // rounds to infinity
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -24)), 0x0001);            // the smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -25)), 0x0000);            // a tie to even: zero
  EXPECT_EQ(float_to_half(std::ldexp(3.f, -26)), 0x0001);            // above the tie
  EXPECT_EQ(float_to_half(1.f + std::ldexp(1.f, -11)), 0x3c00);      // tie, even below
  EXPECT_EQ(float_to_half(1.f + 3 * std::ldexp(1.f, -11)), 0x3c02);  // tie, even above
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -14)), 0x0400);            // the smallest normal
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400);        // subnormal rounds up to it
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
  // Every half value survives the trip through float (NaNs stay NaN).
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), h) << std::hex << h;
  }
}

TEST(KernelEmulatorTest, Bf16ConversionsRoundToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.f), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.f + std::ldexp(1.f, -8)), 0x3f80);          // tie, even below
  EXPECT_EQ(float_to_bf16(1.f + 3 * std::ldexp(1.f, -8)), 0x3f82);      // tie, even above
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to infinity
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_float(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), b) << std::hex << b;
  }
}

TEST(KernelEmulatorTest, AnIndexOutsideItsBufferNamesKernelThreadAndIndex) {
  Grid grid;
  Buffer<float> y("y", 300);
  auto p = y.ptr();
  const std::string what = fault_of([&] {
    grid.run("fill_one_too_many", linear_launch(301), [&](const EmulatedThread& th) {
      if (th.global_x() <= 300) p[th.global_x()] = 1.f;
    });
  });
  EXPECT_NE(what.find("[kernel fill_one_too_many] block (1,0,0) thread (44,0,0)"),
            std::string::npos)
      << what;
  EXPECT_NE(what.find("'y'[300] is outside its 300 elements"), std::string::npos) << what;
  // A sub-tensor pointer checks against the whole buffer: index -1 of ptr(1) is element 0.
  Buffer<float> z("z", 4);
  EXPECT_EQ(fault_of([&] { z.ptr(1)[-1] = 2.f; }), "");
  EXPECT_NE(fault_of([&] { z.ptr(1)[-2] = 2.f; }).find("'z'[-1] is outside"), std::string::npos);
}

TEST(KernelEmulatorTest, AMisalignedVectorAccessIsAFault) {
  Grid grid;
  Buffer<float> x("x", 64, 1.f);
  using V = Vec<float, 4>;
  float sum = 0;
  grid.run("aligned", LaunchShape{Dim3{1}, Dim3{1}}, [&](const EmulatedThread&) {
    sum += load_vec<V>(x.cptr(4), 1).v[0];  // elements 8..11: 32 bytes in
  });
  EXPECT_EQ(sum, 1.f);
  const std::string what = fault_of([&] {
    grid.run("misaligned", linear_launch(1),
             [&](const EmulatedThread&) { store_vec(x.ptr(1), 0, V{}); });
  });
  EXPECT_NE(what.find("16-byte access to 'x'[1] at an address 4 bytes past a 16-byte boundary"),
            std::string::npos)
      << what;
  // A vector that runs past the end is caught whole, not only its first element.
  EXPECT_NE(fault_of([&] { load_vec<V>(x.cptr(), 16); }).find("'x'[64..67] is outside"),
            std::string::npos);
}

TEST(KernelEmulatorTest, BarriersOpenOnlyWhenTheWholeBlockArrives) {
  // Each block reverses its 64 values through shared memory: a read of the neighbour's slot is
  // right only if every thread wrote before any read.
  struct Shared {
    float v[64];
  };
  Grid grid;
  Buffer<float> in("in", 256), out("out", 256);
  for (int i = 0; i < 256; ++i) in[i] = static_cast<float>(i);
  const LaunchShape shape{Dim3{4}, Dim3{64}};
  grid.run_with_shared<Shared>("reverse", shape, [&](const EmulatedThread& th, Shared& sh) {
    const int64_t base = th.block_x() * 64;
    sh.v[th.thread_x()] = in.cptr()[base + th.thread_x()];
    th.sync();
    out.ptr()[base + th.thread_x()] = sh.v[63 - th.thread_x()];
  });
  for (int i = 0; i < 256; ++i) ASSERT_EQ(out[i], static_cast<float>(i / 64 * 64 + 63 - i % 64));
  EXPECT_EQ(grid.barriers_passed(), 4);
  EXPECT_EQ(grid.threads_run(), 256);

  // Without the barrier the first threads read slots not yet written: the 0xff fill (NaN).
  grid.run_with_shared<Shared>(
      "reverse_unsynced", shape, [&](const EmulatedThread& th, Shared& sh) {
        sh.v[th.thread_x()] = 1.f;
        out.ptr()[th.block_x() * 64 + th.thread_x()] = sh.v[63 - th.thread_x()];
      });
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_EQ(out[63], 1.f);
}

TEST(KernelEmulatorTest, ABarrierSomeThreadsNeverReachIsAFault) {
  struct Shared {
    float v[32];
  };
  Grid grid;
  const std::string what = fault_of([&] {
    grid.run_with_shared<Shared>("early_return", LaunchShape{Dim3{2}, Dim3{32}},
                                 [&](const EmulatedThread& th, Shared&) {
                                   if (th.thread_x() == 5) return;
                                   th.sync();
                                 });
  });
  EXPECT_NE(what.find("[kernel early_return] block (0,0,0) thread (5,0,0): returned while 31 of "
                      "the 32 threads of its block wait at __syncthreads()"),
            std::string::npos)
      << what;
  // A barrier in a launch declared without them.
  EXPECT_NE(fault_of([&] {
              grid.run("no_barriers", linear_launch(1),
                       [&](const EmulatedThread& th) { th.sync(); });
            }).find("__syncthreads() in a launch run without barriers"),
            std::string::npos);
}

// A grid-stride copy, and the same with its tail index shifted by one: the emulator stops the
// shifted one at the element past the end, where a GPU would read or write out of bounds.
template <template <typename> class P, typename Th>
void copy_body(const Th& th, P<const float> x, P<float> y, int64_t n, int shift) {
  for (int64_t i = th.global_x(); i < n; i += th.stride_x()) y[i + shift] = x[i];
}

TEST(KernelEmulatorTest, ABodyWithAnIndexShiftedByOneFails) {
  Grid grid;
  Buffer<float> x("x", 1000, 3.f), y("y", 1000);
  auto run = [&](int shift) {
    grid.run("copy", linear_launch(1000), [&](const EmulatedThread& th) {
      copy_body<Checked>(th, x.cptr(), y.ptr(), 1000, shift);
    });
  };
  EXPECT_EQ(fault_of([&] { run(0); }), "");
  EXPECT_NE(fault_of([&] { run(1); }).find("'y'[1000] is outside its 1000 elements"),
            std::string::npos);
}

}  // namespace
}  // namespace rn::cuda::emu

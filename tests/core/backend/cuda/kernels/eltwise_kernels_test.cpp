// The element-wise kernel bodies (core/backend/cuda/kernels/eltwise_kernels.h) run by the grid
// emulator on the launch shapes the backend computes, against the CPU backend's twin ops: every
// map op in f32, bf16 and f16 on sizes that are not multiples of the vector width and on
// sub-tensors that start off a 16-byte boundary, dropout and the option-A shortcut in NCHW and
// NHWC with 1 and 3 channels, casts one at a time and many per launch at bucket-slice offsets,
// the finiteness check, per-channel affine accumulation and the statistics conversions.
#include "core/backend/cuda/kernels/eltwise_kernels.h"

#include <gtest/gtest.h>

#include <memory>

#include "tests/core/backend/cuda/kernels/kernel_test_util.h"
#include "tests/core/gradient_check.h"

namespace rn::cuda::emu {
namespace {

using test::random_values;

const std::vector<int64_t> kSizes{1, 3, 10, 17, 1000, 4103};
// Element offsets of the operands in their buffers: aligned, 1 element in (no 16-byte vector
// fits), 8 elements in (aligned again for every type).
const std::vector<int64_t> kOffsets{0, 1, 8};

// map_body as map_typed launches it: the width from map_width over the operands' addresses, the
// grid from map_launch. Operand k is inputs[k], `offset` elements into its buffer; `alias` makes
// that operand the output buffer itself (add_inplace, axpby, scale).
template <typename T, typename Op>
std::vector<float> emulate_map(Op op, const std::vector<std::vector<float>>& inputs, int64_t n,
                               int64_t offset, int alias) {
  const T sentinel = from_f<T>(7.f);
  Buffer<T> y("y", offset + n, sentinel);
  std::vector<std::unique_ptr<Buffer<T>>> buffers;
  Checked<const T> operand[3];
  const void* address[3] = {nullptr, nullptr, nullptr};
  for (size_t k = 0; k < inputs.size(); ++k) {
    const char* names[] = {"a", "b", "c"};
    auto b = std::make_unique<Buffer<T>>(names[k], offset + n, sentinel);
    for (int64_t i = 0; i < n; ++i) (*b)[offset + i] = from_f<T>(inputs[k][i]);
    if (static_cast<int>(k) == alias) {
      for (int64_t i = 0; i < n; ++i) y[offset + i] = (*b)[offset + i];
      operand[k] = y.cptr(offset);
      address[k] = y.data() + offset;
    } else {
      operand[k] = b->cptr(offset);
      address[k] = b->data() + offset;
      buffers.push_back(std::move(b));
    }
  }
  const int w = map_width<T>(y.data() + offset, address[0], address[1], address[2]);
  Grid grid;
  grid.run("map", map_launch(n, w), [&](const EmulatedThread& th) {
    if (w == 1)
      map_body<1, Checked>(th, op, y.ptr(offset), operand[0], operand[1], operand[2], n);
    else
      map_body<Vec<T>::kN, Checked>(th, op, y.ptr(offset), operand[0], operand[1], operand[2], n);
  });
  for (int64_t i = 0; i < offset; ++i)
    EXPECT_EQ(to_f(y[i]), 7.f) << "map wrote before its output at " << i;
  return read(y, offset, n);
}

// The CPU twin of a map: plain f32 tensors on the CPU backend, `run` applied, the output read.
using Twin = std::function<void(Backend&, std::vector<Tensor>&, Tensor&)>;

std::vector<float> cpu_map(const Twin& twin, const std::vector<std::vector<float>>& inputs,
                           int64_t n, int alias) {
  auto be = make_cpu_backend(1);
  const Shape s{n};
  std::vector<Tensor> in;
  for (const auto& v : inputs) in.push_back(be->upload(host_tensor(s, v)));
  Tensor y = alias >= 0 ? in[alias] : be->upload(host_tensor(s, std::vector<float>(n, 0.f)));
  twin(*be, in, y);
  return be->download(y).to_vector();
}

template <typename T>
class MapBodyTest : public ::testing::Test {
 protected:
  template <typename Op>
  void check(const char* name, Op op, int operands, int alias, const Twin& twin) {
    for (int64_t n : kSizes)
      for (int64_t offset : kOffsets) {
        std::vector<std::vector<float>> in;
        for (int k = 0; k < operands; ++k)
          in.push_back(
              as_stored<T>(random_values(n, static_cast<uint32_t>(11 * n + k), -2.f, 2.f)));
        const auto got = emulate_map<T>(op, in, n, offset, alias);
        const auto want = as_stored<T>(cpu_map(twin, in, n, alias));
        ASSERT_TRUE(close(got, want, storage_eps<T>(), 1e-6f))
            << name << " " << type_name<T>() << ", " << n << " elements at offset " << offset;
      }
  }
};
TYPED_TEST_SUITE(MapBodyTest, StorageTypes);

TYPED_TEST(MapBodyTest, EveryOpMatchesItsCpuTwin) {
  using V = std::vector<Tensor>;
  this->check("relu", Relu{}, 1, -1,
              [](Backend& be, V& in, Tensor& y) { be.relu_forward(in[0], y); });
  this->check("relu_backward", ReluBackward{}, 2, -1,
              [](Backend& be, V& in, Tensor& y) { be.relu_backward(in[0], in[1], y); });
  this->check("relu_backward_add", ReluBackwardAdd{}, 3, -1,
              [](Backend& be, V& in, Tensor& y) { be.relu_backward_add(in[0], in[1], in[2], y); });
  this->check("add", Add{false}, 2, -1,
              [](Backend& be, V& in, Tensor& y) { be.add(in[0], in[1], y, false); });
  this->check("add_relu", Add{true}, 2, -1,
              [](Backend& be, V& in, Tensor& y) { be.add(in[0], in[1], y, true); });
  this->check("add_inplace", Add{false}, 2, 0,
              [](Backend& be, V& in, Tensor& y) { be.add_inplace(y, in[1]); });
  this->check("axpby", Axpby{0.75f, -1.25f}, 2, 1,
              [](Backend& be, V& in, Tensor& y) { be.axpby(y, 0.75f, in[0], -1.25f); });
  this->check("fill", Constant{2.5f}, 0, -1, [](Backend& be, V&, Tensor& y) { be.fill(y, 2.5f); });
  this->check("scale", Scale{-0.25f}, 1, 0,
              [](Backend& be, V&, Tensor& y) { be.scale(y, -0.25f); });
  this->check("scale_to", Scale{3.f}, 1, -1,
              [](Backend& be, V& in, Tensor& y) { be.scale_to(in[0], 3.f, y); });
  this->check("sigmoid", Sigmoid{}, 1, -1,
              [](Backend& be, V& in, Tensor& y) { be.sigmoid_forward(in[0], y); });
  this->check("sigmoid_backward", SigmoidBackward{}, 2, -1,
              [](Backend& be, V& in, Tensor& y) { be.sigmoid_backward(in[0], in[1], y); });
  this->check("mul", Mul{1.f, 0.f}, 2, -1,
              [](Backend& be, V& in, Tensor& y) { be.mul(in[0], in[1], y, 1.f, 0.f); });
  this->check("mul_gate", Mul{-1.f, 1.f}, 2, -1,
              [](Backend& be, V& in, Tensor& y) { be.mul(in[0], in[1], y, -1.f, 1.f); });
}

// The vector path on a sub-tensor one element in is what the misaligned bucket slices once
// reached: the emulator stops it, and map_width never chooses it there.
TEST(MapBodyTest, TheVectorPathOnAMisalignedSubTensorFaults) {
  Buffer<float> y("y", 33), a("a", 33, 1.f);
  EXPECT_EQ(map_width<float>(y.data() + 1, a.data() + 1, nullptr, nullptr), 1);
  EXPECT_EQ(map_width<float>(y.data() + 4, a.data() + 8, nullptr, nullptr), 4);
  Grid grid;
  try {
    grid.run("relu", map_launch(32, 4), [&](const EmulatedThread& th) {
      map_body<4, Checked>(th, Relu{}, y.ptr(1), a.cptr(1), Checked<const float>(),
                           Checked<const float>(), 32);
    });
    FAIL() << "no fault";
  } catch (const KernelFault& e) {
    EXPECT_NE(std::string(e.what()).find("misaligned"), std::string::npos) << e.what();
  }
}

// Dropout and the shortcut on a tensor of dims `d`, laid out NCHW or NHWC in emulated memory.
template <typename T>
class LayoutBodyTest : public ::testing::Test {};
TYPED_TEST_SUITE(LayoutBodyTest, StorageTypes);

const std::vector<Dims4> kDims{
    {2, 3, 5, 7}, {1, 1, 1, 1}, {3, 1, 4, 4}, {4, 10, 1, 1}, {2, 17, 3, 2}};

TYPED_TEST(LayoutBodyTest, DropoutDrawsTheCpuMaskInEitherLayout) {
  using T = TypeParam;
  auto be = make_cpu_backend(1);
  for (const Dims4& d : kDims)
    for (bool nhwc : {false, true}) {
      const Shape s{d.n, d.c, d.h, d.w};
      const auto x = as_stored<T>(random_values(d.numel(), 5));
      Tensor want_t = be->upload(host_tensor(s, x)), got_t = be->allocate(want_t.desc());
      be->dropout_forward(want_t, 0.3f, 1234, got_t);
      const auto want = as_stored<T>(be->download(got_t).to_vector());
      Buffer<T> in("x", stored<T>(nhwc ? to_nhwc(x, d) : x)), out("y", d.numel(), from_f<T>(7.f));
      Grid grid;
      grid.run("dropout", linear_launch(d.numel()), [&](const EmulatedThread& th) {
        dropout_body<Checked>(th, in.cptr(), out.ptr(), d, nhwc, 1234, dropout_threshold(0.3f),
                              1.f / 0.7f);
      });
      const auto got = nhwc ? from_nhwc(read(out), d) : read(out);
      ASSERT_TRUE(close(got, want, storage_eps<T>()))
          << type_name<T>() << (nhwc ? " nhwc " : " nchw ") << s.str();
    }
}

TYPED_TEST(LayoutBodyTest, ShortcutMatchesTheCpuBothWays) {
  using T = TypeParam;
  auto be = make_cpu_backend(1);
  struct Case {
    Dims4 x;
    int64_t out_channels;
    int stride;
  };
  for (const Case& k : {Case{{2, 3, 5, 5}, 7, 2}, Case{{1, 1, 4, 4}, 3, 1},
                        Case{{3, 16, 8, 8}, 32, 2}, Case{{2, 1, 3, 3}, 1, 2}})
    for (bool nhwc : {false, true}) {
      const Dims4 xd = k.x;
      const Dims4 yd{xd.n, k.out_channels, (xd.h + k.stride - 1) / k.stride,
                     (xd.w + k.stride - 1) / k.stride};
      const Shape xs{xd.n, xd.c, xd.h, xd.w}, ys{yd.n, yd.c, yd.h, yd.w};
      const int64_t before = (yd.c - xd.c) / 2;
      const auto strides = [&](const Dims4& d) {
        return nhwc ? Strides4{d.h * d.w * d.c, 1, d.w * d.c, d.c}
                    : Strides4{d.c * d.h * d.w, d.h * d.w, d.w, 1};
      };
      // Forward: x -> y.
      const auto x = as_stored<T>(random_values(xd.numel(), 9));
      Tensor xt = be->upload(host_tensor(xs, x)),
             yt = be->allocate(TensorDesc{ys, DType::f32, nullptr});
      be->pad_shortcut_forward(xt, k.stride, yt);
      Buffer<T> in("x", stored<T>(nhwc ? to_nhwc(x, xd) : x)), out("y", yd.numel(), from_f<T>(7.f));
      Grid grid;
      grid.run("shortcut_forward", linear_launch(yd.numel()), [&](const EmulatedThread& th) {
        shortcut_body<Checked>(th, true, in.cptr(), out.ptr(), yd, nhwc, strides(xd), xd.c,
                               k.stride, before);
      });
      ASSERT_TRUE(
          close(nhwc ? from_nhwc(read(out), yd) : read(out), be->download(yt).to_vector(), 0))
          << "forward " << type_name<T>() << " " << xs.str() << " -> " << ys.str();
      // Backward: dy -> dx.
      const auto dy = as_stored<T>(random_values(yd.numel(), 10));
      Tensor dyt = be->upload(host_tensor(ys, dy)), dxt = be->allocate(xt.desc());
      be->pad_shortcut_backward(dyt, k.stride, dxt);
      Buffer<T> gin("dy", stored<T>(nhwc ? to_nhwc(dy, yd) : dy)),
          gout("dx", xd.numel(), from_f<T>(7.f));
      grid.run("shortcut_backward", linear_launch(xd.numel()), [&](const EmulatedThread& th) {
        shortcut_body<Checked>(th, false, gin.cptr(), gout.ptr(), xd, nhwc, strides(yd), yd.c,
                               k.stride, before);
      });
      ASSERT_TRUE(
          close(nhwc ? from_nhwc(read(gout), xd) : read(gout), be->download(dxt).to_vector(), 0))
          << "backward " << type_name<T>() << " " << ys.str() << " -> " << xs.str();
    }
}

TYPED_TEST(LayoutBodyTest, ChannelAffineAddMatchesTheCpuInEitherLayout) {
  using T = TypeParam;
  auto be = make_cpu_backend(1);
  for (const Dims4& d : kDims)
    for (bool nhwc : {false, true}) {
      const Shape s{d.n, d.c, d.h, d.w};
      const auto y0 = as_stored<T>(random_values(d.numel(), 21));
      const auto x = as_stored<T>(random_values(d.numel(), 22));
      const auto scale = random_values(d.c, 23), shift = random_values(d.c, 24);
      Tensor yt = be->upload(host_tensor(s, y0));
      be->channel_affine_add(yt, be->upload(host_tensor(s, x)),
                             be->upload(host_tensor(Shape{d.c}, scale)),
                             be->upload(host_tensor(Shape{d.c}, shift)));
      Buffer<T> yb("y", stored<T>(nhwc ? to_nhwc(y0, d) : y0)),
          xb("x", stored<T>(nhwc ? to_nhwc(x, d) : x));
      Buffer<float> sb("scale", scale), hb("shift", shift);
      Grid grid;
      grid.run("channel_affine_add", linear_launch(d.numel()), [&](const EmulatedThread& th) {
        channel_affine_add_body<Checked>(th, yb.ptr(), xb.cptr(), sb.cptr(), hb.cptr(), d.numel(),
                                         d.c, d.h * d.w, nhwc);
      });
      ASSERT_TRUE(close(nhwc ? from_nhwc(read(yb), d) : read(yb),
                        as_stored<T>(be->download(yt).to_vector()), storage_eps<T>(), 1e-6f))
          << type_name<T>() << (nhwc ? " nhwc " : " nchw ") << s.str();
    }
}

// One cast, as CudaBackend::cast launches it, against the CPU backend's cast where it has the
// pair, and the rounding of the device's conversions (kernel_emulator's) everywhere.
template <typename S, typename D>
void check_cast(int64_t n) {
  const auto x = as_stored<S>(random_values(n, 31, -300.f, 300.f));
  Buffer<S> in("x", stored<S>(x));
  Buffer<D> out("y", n, from_f<D>(7.f));
  Grid grid;
  grid.run("cast", linear_launch(n),
           [&](const EmulatedThread& th) { cast_body<Checked>(th, in.cptr(), out.ptr(), n); });
  ASSERT_TRUE(close(read(out), as_stored<D>(x), 0)) << type_name<S>() << " -> " << type_name<D>();
}

TEST(CastBodyTest, CastsRoundAsTheDevice) {
  for (int64_t n : kSizes) {
    check_cast<float, Bf16>(n);
    check_cast<float, Half>(n);
    check_cast<Bf16, float>(n);
    check_cast<Half, float>(n);
  }
  // The CPU backend's f32 -> bf16 cast (oneDNN) rounds the same way.
  auto be = make_cpu_backend(1);
  const auto x = random_values(4103, 32, -300.f, 300.f);
  Tensor src = be->upload(host_tensor(Shape{4103}, x));
  Tensor dst = be->allocate(TensorDesc{Shape{4103}, DType::bf16, nullptr});
  be->cast(src, dst);
  Tensor back = be->allocate(src.desc());
  be->cast(dst, back);
  EXPECT_TRUE(close(be->download(back).to_vector(), as_stored<Bf16>(x), 0));
}

// Tensors packed one after another in one buffer, each start rounded up to `align` elements (64
// floats: the gradient bucketer's 256-byte slices; 1: packed tight).
struct Packed {
  std::vector<size_t> offsets;
  size_t total = 0;
};
Packed pack(const std::vector<int64_t>& sizes, size_t align) {
  Packed p;
  for (int64_t n : sizes) {
    p.total = (p.total + align - 1) / align * align;
    p.offsets.push_back(p.total);
    p.total += static_cast<size_t>(n);
  }
  return p;
}

// cast_many as CastBatch drives it: tensors of awkward sizes at the offsets of bucket slices,
// 64 per launch, against one cast each.
template <typename S, typename D>
void check_cast_many(const std::vector<int64_t>& sizes, size_t align) {
  const Packed slices = pack(sizes, align);
  const auto x = as_stored<S>(random_values(static_cast<int64_t>(slices.total), 41, -4.f, 4.f));
  Buffer<S> src("src", stored<S>(x));
  Buffer<D> dst("dst", static_cast<int64_t>(slices.total), from_f<D>(7.f));
  Grid grid;
  CastTensorList<Checked, S, D> list{};
  auto launch = [&] {
    grid.run("cast_many", multi_tensor_launch(list),
             [&](const EmulatedThread& th) { cast_many_body(th, list); });
    list.count = 0;
  };
  for (size_t t = 0; t < sizes.size(); ++t) {
    const int k = multi_tensor_add(list, sizes[t]);
    list.src[k] = src.cptr(static_cast<int64_t>(slices.offsets[t]));
    list.dst[k] = dst.ptr(static_cast<int64_t>(slices.offsets[t]));
    if (list.count == kMultiTensors) launch();
  }
  launch();
  const auto got = read(dst);
  for (size_t t = 0; t < sizes.size(); ++t) {
    const int64_t o = static_cast<int64_t>(slices.offsets[t]);
    const std::vector<float> part(got.begin() + o, got.begin() + o + sizes[t]);
    const std::vector<float> want(x.begin() + o, x.begin() + o + sizes[t]);
    ASSERT_TRUE(close(part, as_stored<D>(want), 0)) << "tensor " << t << " of " << sizes[t];
    // The padding between slices is left alone.
    const int64_t next =
        t + 1 < sizes.size() ? static_cast<int64_t>(slices.offsets[t + 1]) : o + sizes[t];
    for (int64_t i = o + sizes[t]; i < next; ++i) ASSERT_EQ(got[i], 7.f) << "padding " << i;
  }
}

TEST(CastBodyTest, ManyTensorsPerLaunchMatchOneCastEach) {
  // 70 tensors (two launches), sizes around the 4096-element chunk, 10 classes' bias.
  std::vector<int64_t> sizes;
  const int64_t pattern[] = {10, 1, 3, 4095, 4096, 4097, 640, 9, 16, 12289};
  for (int t = 0; t < 70; ++t) sizes.push_back(pattern[t % 10]);
  for (size_t align : {size_t{1}, size_t{64}}) {
    check_cast_many<float, Bf16>(sizes, align);
    check_cast_many<float, Half>(sizes, align);
    check_cast_many<Bf16, float>(sizes, align);
    check_cast_many<Half, float>(sizes, align);
  }
}

TEST(NonfiniteBodyTest, FindsInfAndNanAnywhere) {
  for (int64_t n : kSizes)
    for (int64_t bad : {int64_t{-1}, int64_t{0}, n - 1, n / 2}) {
      std::vector<float> x = random_values(n, 51);
      if (bad >= 0) x[bad] = bad % 2 ? std::numeric_limits<float>::infinity() : std::nanf("");
      Buffer<Half> in("x", stored<Half>(x));
      Buffer<int> flag("flag", 1, 0);
      Grid grid;
      grid.run("nonfinite", linear_launch(n), [&](const EmulatedThread& th) {
        nonfinite_body<Checked>(th, in.cptr(), n, flag.ptr());
      });
      EXPECT_EQ(flag[0], bad >= 0 ? 1 : 0) << n << " elements, bad at " << bad;
    }
}

TEST(StatisticsBodyTest, InverseStandardDeviationAndVarianceConvert) {
  for (int64_t c : {int64_t{1}, int64_t{3}, int64_t{300}}) {
    const auto var = random_values(c, 61, 0.f, 4.f);
    Buffer<float> v("var", var), inv("inv", c, 7.f), back("back", c, 7.f);
    Grid grid;
    grid.run("var_to_inv_std", linear_launch(c), [&](const EmulatedThread& th) {
      var_to_inv_std_body<Checked>(th, v.cptr(), inv.ptr(), c, 1e-5f);
    });
    grid.run("inv_std_to_var", linear_launch(c), [&](const EmulatedThread& th) {
      inv_std_to_var_body<Checked>(th, inv.cptr(), back.ptr(), c, 1e-5f);
    });
    std::vector<float> want_inv;
    for (float x : var) want_inv.push_back(static_cast<float>(1 / std::sqrt(double(x) + 1e-5)));
    EXPECT_TRUE(close(read(inv), want_inv, 1e-6f));
    EXPECT_TRUE(close(read(back), var, 1e-5f, 1e-6f));
  }
}

}  // namespace
}  // namespace rn::cuda::emu

// The layout change's body (core/backend/cuda/kernels/layout_kernels.h) run by the grid emulator:
// NCHW -> NHWC and back for 16- and 32-bit elements (bf16, f16, f32 move as bits) on shapes with
// 1 and 3 channels, spatial sizes that do not fill a 32 x 32 tile, and the images of ResNet-50's
// input at batch 256; against the CPU backend's reorder into its NHWC layout.
#include "core/backend/cuda/kernels/layout_kernels.h"

#include <gtest/gtest.h>

#include "tests/core/backend/cuda/kernels/kernel_test_util.h"
#include "tests/core/gradient_check.h"

namespace rn::cuda::emu {
namespace {

// The transform of CudaBackend::transform: per image, rows x cols into cols x rows.
template <typename T>
std::vector<T> emulate_transform(const std::vector<T>& in, const Dims4& d, bool to_nhwc) {
  const int64_t hw = d.h * d.w;
  const int64_t rows = to_nhwc ? d.c : hw, cols = to_nhwc ? hw : d.c;
  Buffer<T> src("src", in), dst("dst", d.numel(), T{0x5a5a});
  Grid grid;
  grid.run_with_shared<TransposeTile<T>>("transpose", transpose_launch(d.n, rows, cols),
                                         [&](const EmulatedThread& th, TransposeTile<T>& sh) {
                                           transpose_body<Checked>(th, sh, src.cptr(), dst.ptr(),
                                                                   rows, cols);
                                         });
  return dst.values();
}

TEST(TransposeBodyTest, NchwAndNhwcBothWaysForEveryElementSize) {
  auto be = make_cpu_backend(1);
  for (const Dims4& d : {Dims4{1, 1, 1, 1}, Dims4{2, 3, 5, 7}, Dims4{1, 64, 7, 7},
                         Dims4{3, 33, 9, 4}, Dims4{2, 1, 40, 40}, Dims4{1, 70, 1, 1}}) {
    const Shape s{d.n, d.c, d.h, d.w};
    const auto x = test::random_values(d.numel(), 101);
    // The CPU backend's NHWC layout of the same values (the one its grouped convolutions
    // leave), as raw bytes, where oneDNN keeps that layout for this shape; the loops of to_nhwc
    // otherwise.
    auto conv = be->make_conv(ConvParams{.out_channels = 16, .groups = 4},
                              TensorDesc{Shape{2, 16, 8, 8}, DType::f32, nullptr}, true);
    const LayoutPtr layout = be->layout_like(conv->output_desc(), s);
    std::vector<float> cpu_nhwc = to_nhwc(x, d);
    if (layout) {
      Tensor nhwc = be->allocate(TensorDesc{s, DType::f32, layout});
      be->reorder(be->upload(host_tensor(s, x)), nhwc);
      ASSERT_EQ(nhwc.bytes(), x.size() * 4) << s.str();
      cpu_nhwc.assign(nhwc.data_as<float>(), nhwc.data_as<float>() + d.numel());
    }

    std::vector<uint32_t> bits32(d.numel());
    std::memcpy(bits32.data(), x.data(), x.size() * 4);
    const auto there = emulate_transform(bits32, d, true);
    std::vector<float> got(d.numel());
    std::memcpy(got.data(), there.data(), got.size() * 4);
    ASSERT_EQ(got, cpu_nhwc) << "32-bit NCHW -> NHWC " << s.str();
    ASSERT_EQ(emulate_transform(there, d, false), bits32) << "32-bit NHWC -> NCHW " << s.str();

    std::vector<uint16_t> bits16;
    for (float v : x) bits16.push_back(float_to_bf16(v));
    const auto there16 = emulate_transform(bits16, d, true);
    std::vector<float> got16;
    for (uint16_t b : there16) got16.push_back(bf16_to_float(b));
    ASSERT_EQ(got16, as_stored<Bf16>(cpu_nhwc)) << "16-bit NCHW -> NHWC " << s.str();
    ASSERT_EQ(emulate_transform(there16, d, false), bits16) << "16-bit NHWC -> NCHW " << s.str();
  }
}

}  // namespace
}  // namespace rn::cuda::emu

// The optimizer kernel bodies (core/backend/cuda/kernels/optimizer_kernels.h) run by the grid
// emulator against the CPU backend's updates: SGD per tensor at both widths on sizes that are not
// multiples of 4 and on views one element in, SGD over many tensors per launch at the offsets of
// gradient-bucket slices (ResNet-50's 161 parameter tensors, three launches), and LARS with its
// norms reduced through shared memory.
#include "core/backend/cuda/kernels/optimizer_kernels.h"

#include <gtest/gtest.h>

#include "core/models/model_spec.h"
#include "tests/core/backend/cuda/kernels/kernel_test_util.h"
#include "tests/core/gradient_check.h"

namespace rn::cuda::emu {
namespace {

using test::random_values;

const SgdParams kSgd{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-4f, .nesterov = true};

SgdStep step_of(const SgdParams& p) {
  return SgdStep{p.lr, p.momentum, p.weight_decay, p.nesterov};
}

// The CPU update of (w, g, m), returning the new w and m.
std::pair<std::vector<float>, std::vector<float>> cpu_sgd(const SgdParams& p, std::vector<float> w,
                                                          const std::vector<float>& g,
                                                          std::vector<float> m) {
  auto be = make_cpu_backend(1);
  const Shape s{static_cast<int64_t>(w.size())};
  Tensor wt = be->upload(host_tensor(s, w)), gt = be->upload(host_tensor(s, g));
  Tensor mt = be->upload(host_tensor(s, m));
  be->sgd_update(p, wt, gt, mt);
  return {be->download(wt).to_vector(), be->download(mt).to_vector()};
}

TEST(SgdBodyTest, BothWidthsMatchTheCpuOnAwkwardSizesAndViews) {
  for (int64_t n : {1, 3, 10, 17, 1000, 4103})
    for (int64_t offset : {0, 1, 4}) {
      const auto w = random_values(n, 1), g = random_values(n, 2), m = random_values(n, 3);
      const auto [want_w, want_m] = cpu_sgd(kSgd, w, g, m);
      Buffer<float> wb("w", offset + n, 7.f), gb("g", offset + n, 7.f), mb("m", offset + n, 7.f);
      for (int64_t i = 0; i < n; ++i)
        wb[offset + i] = w[i], gb[offset + i] = g[i], mb[offset + i] = m[i];
      // As CudaBackend::sgd_update chooses: float4 where all three views are 16-byte aligned.
      const int width =
          vector_width<float>(4, wb.data() + offset, gb.data() + offset, mb.data() + offset);
      EXPECT_EQ(width, offset % 4 == 0 ? 4 : 1);
      Grid grid;
      grid.run("sgd", sgd_launch(n, width), [&](const EmulatedThread& th) {
        if (width == 4)
          sgd_body<4, Checked>(th, step_of(kSgd), wb.ptr(offset), gb.cptr(offset), mb.ptr(offset),
                               n);
        else
          sgd_body<1, Checked>(th, step_of(kSgd), wb.ptr(offset), gb.cptr(offset), mb.ptr(offset),
                               n);
      });
      ASSERT_TRUE(close(read(wb, offset, n), want_w, 1e-6f, 1e-7f)) << n << " at " << offset;
      ASSERT_TRUE(close(read(mb, offset, n), want_m, 1e-6f, 1e-7f)) << n << " at " << offset;
      for (int64_t i = 0; i < offset; ++i) ASSERT_EQ(wb[i], 7.f);
    }
}

// sgd_update_many as the backend batches it (64 tensors a launch), over tensors laid out as the
// gradient bucketer lays out its slices (each start rounded up to 256 bytes), against one update
// each on the CPU.
void check_sgd_many(const std::vector<int64_t>& sizes, int expected_launches) {
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (int64_t n : sizes) {
    total = (total + 63) / 64 * 64;
    offsets.push_back(total);
    total += n;
  }
  const auto w = random_values(total, 4), g = random_values(total, 5), m = random_values(total, 6);
  Buffer<float> wb("w", w), gb("g", g), mb("m", m);
  Grid grid;
  SgdTensorList<Checked> list{};
  int launches = 0;
  auto launch = [&] {
    grid.run("sgd_many", multi_tensor_launch(list),
             [&](const EmulatedThread& th) { sgd_many_body(th, step_of(kSgd), list); });
    list.count = 0, ++launches;
  };
  for (size_t t = 0; t < sizes.size(); ++t) {
    ASSERT_EQ(vector_width<float>(4, wb.data() + offsets[t], gb.data() + offsets[t],
                                  mb.data() + offsets[t]),
              4);
    const int k = multi_tensor_add(list, sizes[t]);
    list.w[k] = wb.ptr(offsets[t]), list.g[k] = gb.cptr(offsets[t]), list.m[k] = mb.ptr(offsets[t]);
    if (list.count == kMultiTensors) launch();
  }
  launch();
  EXPECT_EQ(launches, expected_launches);
  // The CPU twin updates the padding between slices too; only the tensors' own elements count.
  const auto [want_w, want_m] = cpu_sgd(kSgd, w, g, m);
  const auto got_w = read(wb), got_m = read(mb);
  for (size_t t = 0; t < sizes.size(); ++t) {
    const auto part = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + offsets[t], v.begin() + offsets[t] + sizes[t]);
    };
    ASSERT_TRUE(close(part(got_w), part(want_w), 1e-6f, 1e-7f))
        << "tensor " << t << " of " << sizes[t];
    ASSERT_TRUE(close(part(got_m), part(want_m), 1e-6f, 1e-7f))
        << "tensor " << t << " of " << sizes[t];
    // Elements past the tensor's end (the padding) are not the tensor's: left alone.
    if (t + 1 < sizes.size()) {
      for (int64_t i = offsets[t] + sizes[t]; i < offsets[t + 1]; ++i)
        ASSERT_EQ(got_w[i], w[i]) << i;
    }
  }
}

TEST(SgdBodyTest, ManyTensorsPerLaunchMatchOneUpdateEach) {
  // ResNet-20's sizes for 10 classes: tails of 1 to 3 elements (fc.bias: 10), chunks split.
  check_sgd_many({10, 640, 64, 64, 9216, 1, 3, 4095, 4096, 4097, 5, 12289}, 1);
}

TEST(SgdBodyTest, ManyTensorsPerLaunchOverResNet50sParameters) {
  auto be = make_cpu_backend(1);
  auto net = models::build_model_uninitialised(*be, models::model_spec("resnet50", 3, 1000));
  std::vector<int64_t> sizes;
  for (const auto& np : net->parameters()) sizes.push_back(np.param->shape.numel());
  ASSERT_EQ(sizes.size(), 161u);
  net.reset();
  check_sgd_many(sizes, 3);
}

TEST(LarsBodyTest, NormsAndUpdateMatchTheCpu) {
  const LarsParams p{.lr = 0.5f, .momentum = 0.9f, .weight_decay = 5e-4f, .eta = 0.001f};
  auto be = make_cpu_backend(1);
  // 300000 elements: the norms' grid reaches its cap of 1024 blocks and strides.
  for (int64_t n : {1, 3, 1000, 300000}) {
    const auto w = random_values(n, 7), g = random_values(n, 8, -0.01f, 0.01f),
               m = random_values(n, 9);
    const Shape s{n};
    Tensor wt = be->upload(host_tensor(s, w)), gt = be->upload(host_tensor(s, g));
    Tensor mt = be->upload(host_tensor(s, m));
    be->lars_update(p, wt, gt, mt);
    Buffer<float> wb("w", w), gb("g", g), mb("m", m);
    Buffer<double> norms("norms", 2, 0.0);
    Grid grid;
    grid.run_with_shared<NormsShared>(
        "norms", norms_launch(n), [&](const EmulatedThread& th, NormsShared& sh) {
          norms_body<Checked>(th, sh, wb.cptr(), gb.cptr(), n, norms.ptr());
        });
    double ww = 0, gg = 0;
    for (int64_t i = 0; i < n; ++i) ww += double(w[i]) * w[i], gg += double(g[i]) * g[i];
    EXPECT_NEAR(norms[0], ww, 1e-9 * ww);
    EXPECT_NEAR(norms[1], gg, 1e-9 * gg);
    grid.run("lars", linear_launch(n), [&](const EmulatedThread& th) {
      lars_body<Checked>(th, wb.ptr(), gb.cptr(), mb.ptr(), n, norms.cptr(), p.lr, p.momentum,
                         p.weight_decay, p.eta);
    });
    EXPECT_TRUE(close(read(wb), be->download(wt).to_vector(), 1e-5f, 1e-7f)) << n;
    EXPECT_TRUE(close(read(mb), be->download(mt).to_vector(), 1e-5f, 1e-7f)) << n;
  }
}

}  // namespace
}  // namespace rn::cuda::emu

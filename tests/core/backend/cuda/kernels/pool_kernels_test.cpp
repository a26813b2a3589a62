// The pooling bodies (core/backend/cuda/kernels/pool_kernels.h) run by the grid emulator on NHWC
// data against the CPU backend's pooling, forward and backward: max 3x3/2 with padding (the
// ImageNet stem), max 2x2/2, average 3x3/2/1 (count_include_pad) and 2x2/2, and global average,
// on 1, 3 and 64 channels and odd spatial sizes.
#include "core/backend/cuda/kernels/pool_kernels.h"

#include <gtest/gtest.h>

#include "tests/core/backend/cuda/kernels/kernel_test_util.h"
#include "tests/core/gradient_check.h"

namespace rn::cuda::emu {
namespace {

template <typename T>
class PoolBodyTest : public ::testing::Test {};
TYPED_TEST_SUITE(PoolBodyTest, StorageTypes);

TYPED_TEST(PoolBodyTest, ForwardAndBackwardMatchTheCpu) {
  using T = TypeParam;
  auto be = make_cpu_backend(1);
  const PoolParams kinds[] = {{PoolKind::max, 3, 2, 1, false},
                              {PoolKind::max, 2, 2, 0, false},
                              {PoolKind::avg, 3, 2, 1, false},
                              {PoolKind::avg, 2, 2, 0, false},
                              {PoolKind::avg, 1, 1, 0, true}};
  for (const PoolParams& p : kinds)
    for (const Dims4& d : {Dims4{2, 1, 7, 7}, Dims4{1, 3, 9, 6}, Dims4{2, 64, 5, 5}}) {
      const Shape s{d.n, d.c, d.h, d.w};
      const PoolGeometry g = pool_geometry(p, s);
      const Dims4 o{g.n, g.c, g.oh, g.ow};
      // Distinct values: max pooling has no ties, whatever the rounding into T.
      const auto x = as_stored<T>(test::distinct_values(d.numel(), 91, 0.01f));
      auto pool = be->make_pool(p, TensorDesc{s, DType::f32, nullptr}, true);
      Tensor xt = be->upload(host_tensor(s, x)), yt = be->allocate(pool->output_desc());
      Tensor ws;
      if (pool->workspace_desc().shape.rank() > 0) ws = be->allocate(pool->workspace_desc());
      pool->forward(xt, yt, ws.defined() ? &ws : nullptr);
      const std::string what = std::string(type_name<T>()) + (g.max ? " max " : " avg ") +
                               std::to_string(g.kh) + "/" + std::to_string(g.s) + " on " + s.str();
      ASSERT_EQ(pool->output_desc().shape, (Shape{o.n, o.c, o.h, o.w})) << what;

      Buffer<T> xb("x", stored<T>(to_nhwc(x, d))), yb("y", o.numel(), from_f<T>(7.f));
      Buffer<uint8_t> arg("argmax", o.numel(), 255);
      Grid grid;
      grid.run("pool_forward", linear_launch(o.numel()), [&](const EmulatedThread& th) {
        pool_forward_body<Checked>(th, g, xb.cptr(), yb.ptr(),
                                   g.max ? arg.ptr() : Checked<uint8_t>());
      });
      ASSERT_TRUE(close(from_nhwc(read(yb), o), as_stored<T>(be->download(yt).to_vector()),
                        storage_eps<T>(), 1e-6f))
          << "forward " << what;

      const auto dy = as_stored<T>(test::random_values(o.numel(), 92));
      Tensor dyt = be->upload(host_tensor(Shape{o.n, o.c, o.h, o.w}, dy)),
             dxt = be->allocate(xt.desc());
      pool->backward(dyt, ws.defined() ? &ws : nullptr, dxt);
      Buffer<T> dyb("dy", stored<T>(to_nhwc(dy, o))), dxb("dx", d.numel(), from_f<T>(7.f));
      grid.run("pool_backward", linear_launch(d.numel()), [&](const EmulatedThread& th) {
        pool_backward_body<Checked>(th, g, dyb.cptr(),
                                    g.max ? arg.cptr() : Checked<const uint8_t>(), dxb.ptr());
      });
      ASSERT_TRUE(close(from_nhwc(read(dxb), d), as_stored<T>(be->download(dxt).to_vector()),
                        storage_eps<T>(), 1e-6f))
          << "backward " << what;
    }
}

}  // namespace
}  // namespace rn::cuda::emu

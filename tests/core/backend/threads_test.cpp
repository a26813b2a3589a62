// Each CPU backend runs its ops on its own thread count, whatever other backends were made since.
#include <gtest/gtest.h>
#include <omp.h>

#include "core/backend/backend.h"

namespace rn {
namespace {

TEST(CpuBackendThreads, EachBackendKeepsItsThreadCount) {
  auto one = make_cpu_backend(1);
  auto two = make_cpu_backend(2);
  const TensorDesc x{Shape{2, 16, 6, 6}, DType::f32, nullptr};
  auto conv_one = one->make_conv(ConvParams{.out_channels = 16}, x, true);
  Tensor in = one->allocate(x), w = one->allocate(conv_one->weight_desc());
  one->fill(in, 0.5f);
  one->fill(w, 0.1f);
  Tensor y = one->allocate(conv_one->output_desc());
  conv_one->forward(in, w, nullptr, y);
  EXPECT_EQ(omp_get_max_threads(), 1);  // the primitive ran on `one`'s single thread
  auto conv_two = two->make_conv(ConvParams{.out_channels = 16}, x, true);
  Tensor y2 = two->allocate(conv_two->output_desc());
  conv_two->forward(in, w, nullptr, y2);
  EXPECT_EQ(omp_get_max_threads(), 2);
  EXPECT_NE(one->name().find("1 threads"), std::string::npos) << one->name();
  EXPECT_NE(two->name().find("2 threads"), std::string::npos) << two->name();
}

}  // namespace
}  // namespace rn

// JPEG / PNG decoding with the augmentation that follows it: the input's first byte picks the
// views (a torchvision or ResNet training crop, the centre crop, ten crops), the rest is the file.
#include <vector>

#include "io/sample_set.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using namespace rn::io;
  constexpr int kSide = 32;
  const uint8_t pick = data[0];
  ++data, --size;
  static SampleScratch scratch;
  static std::vector<float> out(10 * 3 * kSide * kSide);
  const float mul[3] = {1 / 58.f, 1 / 57.f, 1 / 57.f}, add[3] = {-2.1f, -2.0f, -1.8f};
  rn::fuzz::expect_errors_only([&] {
    const ImageHeader h = read_image_header(data, size);
    std::vector<ImageView> views;
    if (pick % 4 < 2) {
      ImageAugment aug;
      aug.recipe = pick % 4 == 0 ? Recipe::torchvision : Recipe::resnet;
      aug.crop = kSide, aug.shorter_min = kSide, aug.shorter_max = 2 * kSide;
      aug.lighting = 0.1;
      views.push_back(draw_train_view(aug, h.width, h.height, pick, 0, pick));
    } else {
      views = eval_views(
          EvalTransform{.resize = kSide + 4, .crop = kSide, .views = pick % 4 == 2 ? 1 : 10},
          h.width, h.height);
    }
    transform_encoded(data, size, views, kSide, mul, add, out.data(), scratch);
  });
  return 0;
}

// The augmentation recipes of encoded (JPEG / PNG) images, as boxes in the source image: the
// ResNet paper's scale augmentation, torchvision's RandomResizedCrop, and the evaluation
// transforms (centre crop, ten crops). Every random choice is a function of (seed, epoch, index).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace rn::io {

enum class Recipe {
  none,         // the evaluation transform (resize the shorter side, centre crop)
  pad_crop,     // in-memory sets: zero padding, random crop of the original size (CIFAR)
  resnet,       // He et al. 2016, 3.4: shorter side in [256, 480], random crop, flip, lighting
  torchvision,  // RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3), flip
};

// "none" | "pad_crop" | "resnet" | "torchvision"; throws rn::Error naming the choices.
Recipe parse_recipe(const std::string& name);
const char* recipe_name(Recipe r);

struct ImageAugment {
  Recipe recipe = Recipe::none;
  int crop = 224;                                       // output side
  double scale_min = 0.08, scale_max = 1.0;             // torchvision: fraction of the area
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // torchvision: aspect ratio w / h
  int shorter_min = 256, shorter_max = 480;             // resnet: the shorter side's range
  bool hflip = true;
  double lighting = 0.0;  // AlexNet's PCA lighting: the std of its alphas (fb.resnet.torch 0.1)
};

struct EvalTransform {
  int resize = 256;  // shorter side
  int crop = 224;
  int views = 1;  // 1: the centre crop; 10: corners and centre, and their mirror images
};

// A box of the source image (in its pixels) resampled to the output, and what else is drawn.
struct ImageView {
  double x = 0, y = 0, w = 0, h = 0;
  bool flip = false;
  std::array<float, 3> rgb_shift{0, 0, 0};  // lighting, added to pixel / 255
};

// The training view of sample `index` in `epoch` for a width x height source.
ImageView draw_train_view(const ImageAugment& aug, int width, int height, uint64_t seed,
                          int64_t epoch, int64_t index);

// The evaluation views (1 or 10) of a width x height source.
std::vector<ImageView> eval_views(const EvalTransform& t, int width, int height);

}  // namespace rn::io

// Drawing the augmentation boxes: the same arithmetic as torchvision and fb.resnet.torch.
#include "io/image_transform.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "io/counter_rng.h"

namespace rn::io {
namespace {

double uniform(CounterRng& rng) {
  return static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
}

double uniform(CounterRng& rng, double lo, double hi) {
  return lo + (hi - lo) * uniform(rng);
}

// Box-Muller: one standard normal from two uniforms.
double normal(CounterRng& rng) {
  const double u1 = 1.0 - uniform(rng);  // in (0, 1]
  const double u2 = uniform(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// An integer crop of `side` pixels at a random position of the source shrunk so that its
// shorter side is `shorter`: the box in the source is the crop divided by the scale.
ImageView scaled_crop(int width, int height, double shorter, int side, double ox01, double oy01) {
  const double scale = shorter / std::min(width, height);
  const int sw = std::max(side, static_cast<int>(std::lround(width * scale)));
  const int sh = std::max(side, static_cast<int>(std::lround(height * scale)));
  const int ox = std::min(sw - side, static_cast<int>(ox01 * (sw - side + 1)));
  const int oy = std::min(sh - side, static_cast<int>(oy01 * (sh - side + 1)));
  ImageView v;
  const double fx = static_cast<double>(width) / sw, fy = static_cast<double>(height) / sh;
  v.x = ox * fx, v.y = oy * fy, v.w = side * fx, v.h = side * fy;
  return v;
}

// AlexNet's PCA lighting with fb.resnet.torch's ImageNet eigenvalues and eigenvectors.
std::array<float, 3> lighting_shift(CounterRng& rng, double std_dev) {
  static const double eigval[3] = {0.2175, 0.0188, 0.0045};
  static const double eigvec[3][3] = {
      {-0.5675, 0.7192, 0.4009}, {-0.5808, -0.0045, -0.8140}, {-0.5836, -0.6948, 0.4203}};
  double alpha[3];
  for (double& a : alpha) a = normal(rng) * std_dev;
  std::array<float, 3> shift{};
  for (int c = 0; c < 3; ++c) {
    double s = 0;
    for (int k = 0; k < 3; ++k) s += eigvec[c][k] * alpha[k] * eigval[k];
    shift[static_cast<size_t>(c)] = static_cast<float>(s);
  }
  return shift;
}

}  // namespace

Recipe parse_recipe(const std::string& name) {
  for (Recipe r : {Recipe::none, Recipe::pad_crop, Recipe::resnet, Recipe::torchvision})
    if (name == recipe_name(r)) return r;
  RN_FAIL("unknown augmentation recipe '" << name
                                          << "' (choices: none, pad_crop, resnet, torchvision)");
}

const char* recipe_name(Recipe r) {
  switch (r) {
    case Recipe::none:
      return "none";
    case Recipe::pad_crop:
      return "pad_crop";
    case Recipe::resnet:
      return "resnet";
    case Recipe::torchvision:
      return "torchvision";
  }
  return "?";
}

ImageView draw_train_view(const ImageAugment& aug, int width, int height, uint64_t seed,
                          int64_t epoch, int64_t index) {
  CounterRng rng(counter_hash(seed, RngStream::augment, static_cast<uint64_t>(epoch),
                              static_cast<uint64_t>(index)));
  ImageView v;
  switch (aug.recipe) {
    case Recipe::none:
    case Recipe::pad_crop:
      return eval_views(EvalTransform{.resize = aug.crop * 8 / 7, .crop = aug.crop}, width, height)
          .front();
    case Recipe::resnet: {
      const int shorter =
          aug.shorter_min +
          static_cast<int>(rng.below(static_cast<uint64_t>(aug.shorter_max - aug.shorter_min + 1)));
      const double ox = uniform(rng), oy = uniform(rng);
      v = scaled_crop(width, height, std::max(shorter, aug.crop), aug.crop, ox, oy);
      break;
    }
    case Recipe::torchvision: {
      // torchvision.transforms.RandomResizedCrop.get_params: ten tries, then the centre.
      const double area = static_cast<double>(width) * height;
      const double log_lo = std::log(aug.ratio_min), log_hi = std::log(aug.ratio_max);
      bool found = false;
      for (int attempt = 0; attempt < 10 && !found; ++attempt) {
        const double target = area * uniform(rng, aug.scale_min, aug.scale_max);
        const double ratio = std::exp(uniform(rng, log_lo, log_hi));
        // int(round(...)) in Python: halves go to even (nearbyint in the default mode).
        const int w = static_cast<int>(std::nearbyint(std::sqrt(target * ratio)));
        const int h = static_cast<int>(std::nearbyint(std::sqrt(target / ratio)));
        if (w > 0 && w <= width && h > 0 && h <= height) {
          v.x = static_cast<double>(rng.below(static_cast<uint64_t>(width - w + 1)));
          v.y = static_cast<double>(rng.below(static_cast<uint64_t>(height - h + 1)));
          v.w = w, v.h = h;
          found = true;
        }
      }
      if (!found) {
        const double in_ratio = static_cast<double>(width) / height;
        int w = width, h = height;
        if (in_ratio < aug.ratio_min) {
          h = static_cast<int>(std::nearbyint(w / aug.ratio_min));
        } else if (in_ratio > aug.ratio_max) {
          w = static_cast<int>(std::nearbyint(h * aug.ratio_max));
        }
        v.x = (width - w) / 2, v.y = (height - h) / 2, v.w = w, v.h = h;
      }
      break;
    }
  }
  if (aug.hflip) v.flip = (rng.next() >> 63) != 0;
  if (aug.lighting > 0) v.rgb_shift = lighting_shift(rng, aug.lighting);
  return v;
}

std::vector<ImageView> eval_views(const EvalTransform& t, int width, int height) {
  RN_CHECK(t.views == 1 || t.views == 10, "[eval] views " << t.views);
  // torchvision Resize(resize): the shorter side becomes `resize`, the other is truncated.
  const double scale = static_cast<double>(t.resize) / std::min(width, height);
  const int sw = std::max(t.crop, width <= height ? t.resize : static_cast<int>(width * scale));
  const int sh = std::max(t.crop, height < width ? t.resize : static_cast<int>(height * scale));
  const double fx = static_cast<double>(width) / sw, fy = static_cast<double>(height) / sh;
  auto at = [&](int ox, int oy, bool flip) {
    ImageView v;
    v.x = ox * fx, v.y = oy * fy, v.w = t.crop * fx, v.h = t.crop * fy;
    v.flip = flip;
    return v;
  };
  // CenterCrop rounds the offset: int(round((size - crop) / 2)), Python's round halves to even.
  const int cx = static_cast<int>(std::nearbyint((sw - t.crop) / 2.0));
  const int cy = static_cast<int>(std::nearbyint((sh - t.crop) / 2.0));
  if (t.views == 1) return {at(cx, cy, false)};
  // TenCrop: top-left, top-right, bottom-left, bottom-right, centre; then the same mirrored.
  std::vector<ImageView> v;
  for (bool flip : {false, true}) {
    v.push_back(at(0, 0, flip));
    v.push_back(at(sw - t.crop, 0, flip));
    v.push_back(at(0, sh - t.crop, flip));
    v.push_back(at(sw - t.crop, sh - t.crop, flip));
    v.push_back(at(cx, cy, flip));
  }
  return v;
}

}  // namespace rn::io

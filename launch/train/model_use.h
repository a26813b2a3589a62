// What a user of a trained network needs beyond its weights: the names of its classes and the
// transform that turns an image file into its input, as its evaluation saw the test split.
// Every checkpoint carries both (/meta/class_names, /meta/transform), readable by h5py.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace rn::launch {

// An image file to the network's input: decoded to RGB (grayscale replicated; `channels` 1: the
// mean of R, G and B), the shorter side resized to `resize`, the centre crop x crop taken, then
// (pixel / 255 - mean[c]) / std[c].
struct InputTransform {
  int channels = 3;
  int resize = 256, crop = 224;
  std::vector<float> mean, std;  // one per channel
  bool operator==(const InputTransform&) const = default;
};

struct ModelUse {
  std::vector<std::string> class_names;  // empty: not known (label indices only)
  bool has_transform = false;
  InputTransform transform;
};

// The published names of Fashion-MNIST's ten classes and CIFAR-10's.
const std::vector<std::string>& fashion_mnist_class_names();
const std::vector<std::string>& cifar10_class_names();

// The checkpoint's datasets of `use` (none for what it does not know).
std::vector<io::CheckpointEntry> model_use_entries(const ModelUse& use);
// The transform as /meta/transform stores it: one JSON object, e.g. {"channels": 3,
// "channel_order": "RGB", "resize": 256, "crop": 224, "mean": [...], "std": [...],
// "pixel_scale": "1/255"}.
std::string transform_json(const InputTransform& t);
// `use` from a checkpoint's datasets ("meta/class_names", "meta/transform"); a checkpoint
// written before they were kept gives an empty one. A malformed one is one error naming `path`.
template <typename Bytes>
ModelUse read_model_use(const std::map<std::string, Bytes>& datasets, const std::string& path);
ModelUse parse_model_use(const std::string* names, const std::string* transform,
                         const std::string& path);

template <typename Bytes>
ModelUse read_model_use(const std::map<std::string, Bytes>& datasets, const std::string& path) {
  std::string names, transform;
  const auto n = datasets.find("meta/class_names");
  const auto t = datasets.find("meta/transform");
  if (n != datasets.end()) names.assign(n->second.begin(), n->second.end());
  if (t != datasets.end()) transform.assign(t->second.begin(), t->second.end());
  return parse_model_use(n != datasets.end() ? &names : nullptr,
                         t != datasets.end() ? &transform : nullptr, path);
}

}  // namespace rn::launch

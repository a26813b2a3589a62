// Class names and the evaluation transform: the published names, the checkpoint's two text
// datasets, and reading them back.
#include "launch/train/model_use.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>

#include "core/check.h"

namespace rn::launch {

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {
      "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return names;
}

namespace {

std::string number_list(const std::vector<float>& v) {
  std::string s = "[";
  char b[32];
  for (size_t i = 0; i < v.size(); ++i) {
    // The shortest text that reads back as the same float (0.485, not 0.485000014).
    for (int digits = 6; digits <= 9; ++digits) {
      std::snprintf(b, sizeof b, "%.*g", digits, static_cast<double>(v[i]));
      if (std::strtof(b, nullptr) == v[i]) break;
    }
    s += (i ? ", " : "") + std::string(b);
  }
  return s + "]";
}

// The entry owns its text.
io::CheckpointEntry text_entry(const std::string& path, std::string text) {
  auto owned = std::make_shared<const std::string>(std::move(text));
  const auto n = static_cast<int64_t>(owned->size());
  return io::CheckpointEntry{
      path, {n}, io::EntryType::text, [owned](void*) -> const void* { return owned->data(); }};
}

}  // namespace

std::string transform_json(const InputTransform& t) {
  return str_cat("{\"channels\": ", t.channels, ", \"channel_order\": \"",
                 t.channels == 1 ? "gray" : "RGB", "\", \"resize\": ", t.resize,
                 ", \"crop\": ", t.crop, ", \"mean\": ", number_list(t.mean),
                 ", \"std\": ", number_list(t.std), ", \"pixel_scale\": \"1/255\"}");
}

std::vector<io::CheckpointEntry> model_use_entries(const ModelUse& use) {
  std::string names;
  for (size_t i = 0; i < use.class_names.size(); ++i) names += (i ? "\n" : "") + use.class_names[i];
  std::vector<io::CheckpointEntry> e;
  if (!use.class_names.empty()) e.push_back(text_entry("meta/class_names", std::move(names)));
  if (use.has_transform) e.push_back(text_entry("meta/transform", transform_json(use.transform)));
  return e;
}

ModelUse parse_model_use(const std::string* names, const std::string* transform,
                         const std::string& path) {
  ModelUse use;
  if (names) {
    std::istringstream in(*names);
    for (std::string line; std::getline(in, line);) use.class_names.push_back(line);
  }
  if (!transform) return use;
  const auto bad = [&](const std::string& why) {
    RN_FAIL("checkpoint '" << path << "': '/meta/transform' " << why);
  };
  YAML::Node n;
  try {
    n = YAML::Load(*transform);
  } catch (const YAML::Exception& e) {
    bad(str_cat("is not JSON: ", e.what()));
  }
  if (!n.IsMap()) bad("is not a JSON object");
  InputTransform& t = use.transform;
  try {
    t.channels = n["channels"].as<int>();
    t.resize = n["resize"].as<int>();
    t.crop = n["crop"].as<int>();
    t.mean = n["mean"].as<std::vector<float>>();
    t.std = n["std"].as<std::vector<float>>();
  } catch (const YAML::Exception&) {
    bad("needs channels, resize, crop (integers) and mean, std (lists of numbers)");
  }
  if (t.channels != 1 && t.channels != 3) bad(str_cat("has channels ", t.channels, " (1 or 3)"));
  if (t.crop < 1 || t.resize < t.crop)
    bad(str_cat("has resize ", t.resize, " and crop ", t.crop, " (1 <= crop <= resize)"));
  if (t.mean.size() != static_cast<size_t>(t.channels) || t.std.size() != t.mean.size())
    bad(str_cat("has ", t.mean.size(), " mean(s) and ", t.std.size(), " std(s) for ", t.channels,
                " channel(s)"));
  for (float s : t.std)
    if (!(s > 0)) bad("has a std that is not positive");
  use.has_transform = true;
  return use;
}

}  // namespace rn::launch

// The class names and evaluation transform of checkpoints (/meta): the texts round-trip, a
// checkpoint without them reads as "not known", and a damaged transform is one line naming the
// file and the dataset.
#include "launch/train/model_use.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/error_of.h"

namespace rn::launch {
namespace {

using rn::test::error_of;

// The texts model_use_entries writes, as a checkpoint's datasets.
std::map<std::string, std::vector<char>> datasets_of(const ModelUse& use) {
  std::map<std::string, std::vector<char>> out;
  for (const io::CheckpointEntry& e : model_use_entries(use)) {
    EXPECT_EQ(e.type, io::EntryType::text) << e.path;
    std::vector<char> scratch(e.bytes());
    const auto* p = static_cast<const char*>(e.fill(scratch.data()));
    out[e.path] = std::vector<char>(p, p + e.bytes());
  }
  return out;
}

TEST(ModelUseTest, NamesAndTransformRoundTrip) {
  ModelUse use;
  use.class_names = {"T-shirt/top", "a name, with a comma", "Ankle boot"};
  use.has_transform = true;
  use.transform = InputTransform{.channels = 3,
                                 .resize = 36,
                                 .crop = 32,
                                 .mean = {0.485f, 0.456f, 0.406f},
                                 .std = {0.229f, 0.224f, 0.225f}};
  const auto d = datasets_of(use);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(std::string(d.at("meta/transform").begin(), d.at("meta/transform").end()),
            "{\"channels\": 3, \"channel_order\": \"RGB\", \"resize\": 36, \"crop\": 32, "
            "\"mean\": [0.485, 0.456, 0.406], \"std\": [0.229, 0.224, 0.225], "
            "\"pixel_scale\": \"1/255\"}");
  const ModelUse back = read_model_use(d, "x.h5");
  EXPECT_EQ(back.class_names, use.class_names);
  EXPECT_TRUE(back.has_transform);
  EXPECT_EQ(back.transform, use.transform);  // every float exactly
}

TEST(ModelUseTest, OlderCheckpointsHaveNeither) {
  const ModelUse none = read_model_use(std::map<std::string, std::vector<char>>{}, "old.h5");
  EXPECT_TRUE(none.class_names.empty());
  EXPECT_FALSE(none.has_transform);
  EXPECT_TRUE(datasets_of(ModelUse{}).empty());  // nothing known, nothing written
}

TEST(ModelUseTest, ADamagedTransformIsOneLineNamingTheFile) {
  const auto error = [](const std::string& text) {
    const std::string t = text;
    return error_of([&] { parse_model_use(nullptr, &t, "c.h5"); });
  };
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"{\"channels\": 3", "is not JSON"},
           {"[1, 2]", "is not a JSON object"},
           {"{\"channels\": 3, \"resize\": 256}", "needs channels, resize, crop"},
           {"{\"channels\": 2, \"resize\": 8, \"crop\": 8, \"mean\": [0, 0], \"std\": [1, 1]}",
            "has channels 2 (1 or 3)"},
           {"{\"channels\": 1, \"resize\": 8, \"crop\": 9, \"mean\": [0], \"std\": [1]}",
            "has resize 8 and crop 9"},
           {"{\"channels\": 3, \"resize\": 8, \"crop\": 8, \"mean\": [0], \"std\": [1]}",
            "has 1 mean(s) and 1 std(s) for 3 channel(s)"},
           {"{\"channels\": 1, \"resize\": 8, \"crop\": 8, \"mean\": [0], \"std\": [0]}",
            "has a std that is not positive"}}) {
    const std::string e = error(text);
    EXPECT_NE(e.find("checkpoint 'c.h5': '/meta/transform' " + why), std::string::npos)
        << text << "\n"
        << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace rn::launch

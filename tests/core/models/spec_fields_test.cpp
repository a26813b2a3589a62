// Networks described by fields: model names with fields read back to the spec that wrote them,
// every zoo network keeps its name, and a bad field is one line that names it.
#include <gtest/gtest.h>

#include <string>

#include "core/check.h"
#include "core/models/model_spec.h"

namespace rn::models {
namespace {

std::string error_of(const std::string& name) {
  try {
    model_spec(name, 3, 10);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SpecFieldsTest, ZooNetworksAreTheirOwnNames) {
  for (const auto& name : known_models()) {
    const ModelSpec s = model_spec(name, 3, 10);
    EXPECT_EQ(model_name(name, s), name);
    // Every field's text reads back to the same value.
    ModelSpec copy = model_spec(name, 3, 10);
    for (const auto& key : spec_fields()) set_spec_field(copy, key, spec_field(s, key));
    EXPECT_TRUE(copy == s) << name;
  }
}

TEST(SpecFieldsTest, ChangedFieldsRoundTripThroughTheName) {
  ModelSpec s = model_spec("resnet56", 1, 10);
  s.variant = nn::ShortcutVariant::exclusive_gate;
  s.gate_bias = -6;
  const std::string name = model_name("resnet56", s);
  EXPECT_EQ(name, "resnet56{shortcut=exclusive_gate gate_bias=-6}");
  ModelSpec back = model_spec(name, 1, 10);
  EXPECT_EQ(back.name, name);
  back.name = s.name;
  EXPECT_TRUE(back == s);

  ModelSpec custom;
  custom.block = BlockKind::bottleneck;
  custom.blocks = {3, 3, 3};
  custom.planes = {64, 128, 256};
  custom.groups = 4;
  custom.width_per_group = 24;
  custom.stem = StemKind::cifar;
  custom.in_channels = 1;
  custom.num_classes = 10;
  const std::string text = model_name("custom", custom);
  EXPECT_EQ(text.rfind("custom{block=bottleneck blocks=3,3,3 widths=64,128,256 groups=4 ", 0), 0u)
      << text;
  ModelSpec parsed = model_spec(text, 1, 10);
  parsed.name = custom.name;
  EXPECT_TRUE(parsed == custom);
  // The same template as the zoo's ResNeXt-29: the same network.
  EXPECT_EQ(model_spec("resnext29_4x24d{}", 1, 10).groups, 4);
}

TEST(SpecFieldsTest, BadFieldsAreOneLineNamingTheField) {
  EXPECT_NE(error_of("resnet20{blocks=3,0,3}").find("'blocks' must be a list of positive"),
            std::string::npos);
  EXPECT_NE(error_of("resnet20{shortcut=gated}").find("'shortcut' must be one of identity, "),
            std::string::npos);
  EXPECT_NE(error_of("resnet20{widths=16,32}").find("'widths' must have one entry per stage (3"),
            std::string::npos);
  EXPECT_NE(error_of("resnet20{depth=20}").find("unknown model field 'depth'; valid fields: block"),
            std::string::npos);
  EXPECT_NE(error_of("resnet20{gate_bias=x}").find("'gate_bias' must be a number"),
            std::string::npos);
  EXPECT_NE(error_of("resnet20{shortcut_scale=1}").find("'shortcut_scale' must be in (0, 1)"),
            std::string::npos);
  EXPECT_NE(error_of("plain20{shortcut=exclusive_gate}").find("plain network"), std::string::npos);
  EXPECT_NE(error_of("resnet20{groups=4}").find("bottleneck units only"), std::string::npos);
  EXPECT_NE(error_of("resnet20{shortcut=conv1x1}").find("contradicts"), std::string::npos);
  EXPECT_NE(error_of("resnet20{unit=original").find("one pair of braces"), std::string::npos);
  EXPECT_NE(error_of("custom").find("needs its fields"), std::string::npos);
  EXPECT_NE(error_of("custom{block=basic}").find("'blocks' must list"), std::string::npos);
  EXPECT_NE(error_of("resnet21{}").find("unknown model 'resnet21'"), std::string::npos);
  for (const char* bad : {"resnet20{blocks=3,0,3}", "resnet20{shortcut=gated}"})
    EXPECT_EQ(error_of(bad).find('\n'), std::string::npos);
}

TEST(SpecFieldsTest, VariantsBuildAndCountTheirDepth) {
  auto be = make_cpu_backend(1);
  // 1x1 conv shortcuts everywhere are projections: depth stays 20, weighted layers 20 + 9.
  auto conv =
      build_model(*be, model_spec("resnet20{shortcut=conv1x1 shortcut_option=B}", 1, 10), 0);
  EXPECT_EQ(conv->depth(), 20);
  EXPECT_EQ(conv->weighted_layers(), 29);
  // Gates are not on the main path; their parameters count: 9 units, in*out + out each.
  auto plain = build_model(*be, model_spec("resnet20", 1, 10), 0);
  auto gated = build_model(*be, model_spec("resnet20{shortcut=shortcut_gate}", 1, 10), 0);
  EXPECT_EQ(gated->depth(), 20);
  EXPECT_EQ(gated->num_parameters() - plain->num_parameters(),
            3 * (16 * 16 + 16) + (16 * 32 + 32) + 2 * (32 * 32 + 32) + (32 * 64 + 64) +
                2 * (64 * 64 + 64));
  // ReLU-only pre-activation ends with a ReLU; the parameters are the original's.
  auto relu_first = build_model(*be, model_spec("resnet20{unit=relu_preact}", 1, 10), 0);
  EXPECT_EQ(relu_first->num_parameters(), plain->num_parameters());
}

}  // namespace
}  // namespace rn::models

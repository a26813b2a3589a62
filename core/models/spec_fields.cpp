// A ModelSpec as named fields: read from text (the config's `model:` section, model names such
// as "resnet56{shortcut=exclusive_gate gate_bias=-6}"), written back, and checked as a whole.
#include <charconv>
#include <cmath>
#include <sstream>

#include "core/check.h"
#include "core/models/model_spec.h"

// A user-facing check whose message stands alone (RN_FAIL's, without the source location).
#define RN_SPEC_REQUIRE(cond, msg) \
  do {                             \
    if (!(cond)) RN_FAIL(msg);     \
  } while (0)

namespace rn::models {
namespace {

using nn::ShortcutKind;
using nn::ShortcutVariant;
using nn::UnitActivation;

template <typename E>
struct Names {
  std::vector<std::pair<E, const char*>> items;
  const char* of(E e) const {
    for (const auto& [v, n] : items)
      if (v == e) return n;
    return "?";
  }
  bool parse(const std::string& text, E& out) const {
    for (const auto& [v, n] : items)
      if (text == n) return out = v, true;
    return false;
  }
  std::string list() const {
    std::string out;
    for (const auto& [v, n] : items) out += (out.empty() ? "" : ", ") + std::string(n);
    return out;
  }
};

const Names<BlockKind> kBlocks{
    {{BlockKind::basic, "basic"}, {BlockKind::bottleneck, "bottleneck"}}};
const Names<StemKind> kStems{{{StemKind::cifar, "cifar"}, {StemKind::imagenet, "imagenet"}}};
const Names<UnitActivation> kUnits{{{UnitActivation::original, "original"},
                                    {UnitActivation::bn_after_add, "bn_after_add"},
                                    {UnitActivation::relu_before_add, "relu_before_add"},
                                    {UnitActivation::relu_preact, "relu_preact"},
                                    {UnitActivation::full_preact, "full_preact"}}};
const Names<ShortcutKind> kOptions{
    {{ShortcutKind::A, "A"}, {ShortcutKind::B, "B"}, {ShortcutKind::C, "C"}}};
const Names<ShortcutVariant> kVariants{{{ShortcutVariant::identity, "identity"},
                                        {ShortcutVariant::scale_shortcut, "scale_shortcut"},
                                        {ShortcutVariant::scale_both, "scale_both"},
                                        {ShortcutVariant::exclusive_gate, "exclusive_gate"},
                                        {ShortcutVariant::shortcut_gate, "shortcut_gate"},
                                        {ShortcutVariant::conv1x1, "conv1x1"},
                                        {ShortcutVariant::dropout, "dropout"}}};

template <typename E>
void set_enum(const Names<E>& names, const std::string& key, const std::string& value, E& out) {
  if (!names.parse(value, out))
    RN_FAIL("'" << key << "' must be one of " << names.list() << "; got '" << value << "'");
}

void set_int(const std::string& key, const std::string& value, int& out, int min) {
  int v = 0;
  const char* end = value.data() + value.size();
  const auto r = std::from_chars(value.data(), end, v);
  if (value.empty() || r.ec != std::errc() || r.ptr != end || v < min)
    RN_FAIL("'" << key << "' must be an integer of at least " << min << "; got '" << value << "'");
  out = v;
}

void set_float(const std::string& key, const std::string& value, float& out) {
  double v = 0;
  const char* end = value.data() + value.size();
  const auto r = std::from_chars(value.data(), end, v);
  if (value.empty() || r.ec != std::errc() || r.ptr != end || !std::isfinite(v))
    RN_FAIL("'" << key << "' must be a number; got '" << value << "'");
  out = static_cast<float>(v);
}

void set_bool(const std::string& key, const std::string& value, bool& out) {
  if (value == "true" || value == "1")
    out = true;
  else if (value == "false" || value == "0")
    out = false;
  else
    RN_FAIL("'" << key << "' must be true or false; got '" << value << "'");
}

[[noreturn]] void bad_list(const std::string& key, const std::string& value) {
  RN_FAIL("'" << key << "' must be a list of positive integers, one per stage, such as [9, 9, 9]; "
              << "got '" << value << "'");
}

// "9,9,9" (the brackets of "[9, 9, 9]" and spaces are allowed).
void set_ints(const std::string& key, const std::string& value, std::vector<int>& out) {
  std::string text;
  for (char c : value)
    if (c != '[' && c != ']' && c != ' ') text += c;
  std::vector<int> v;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    int x = 0;
    const char* end = item.data() + item.size();
    const auto r = std::from_chars(item.data(), end, x);
    if (item.empty() || r.ec != std::errc() || r.ptr != end || x < 1) bad_list(key, value);
    v.push_back(x);
  }
  if (v.empty() || text.back() == ',') bad_list(key, value);
  out = std::move(v);
}

std::string float_text(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

std::string stage_list(const std::vector<int>& v) {
  std::string out;
  for (int x : v) {
    if (!out.empty()) out += ',';
    out += std::to_string(x);
  }
  return out;
}

const std::vector<std::string>& spec_fields() {
  static const std::vector<std::string> keys{"block",
                                             "blocks",
                                             "widths",
                                             "groups",
                                             "width_per_group",
                                             "stem",
                                             "stem_channels",
                                             "unit",
                                             "shortcut",
                                             "shortcut_option",
                                             "shortcut_scale",
                                             "gate_bias",
                                             "shortcut_dropout",
                                             "plain",
                                             "stride_on_3x3"};
  return keys;
}

void set_spec_field(ModelSpec& s, const std::string& name, const std::string& value,
                    const std::string& label) {
  const std::string& key = label.empty() ? name : label;
  if (name == "block") return set_enum(kBlocks, key, value, s.block);
  if (name == "blocks") return set_ints(key, value, s.blocks);
  if (name == "widths") return set_ints(key, value, s.planes);
  if (name == "groups") return set_int(key, value, s.groups, 1);
  if (name == "width_per_group") return set_int(key, value, s.width_per_group, 1);
  if (name == "stem") return set_enum(kStems, key, value, s.stem);
  if (name == "stem_channels") return set_int(key, value, s.stem_channels, 1);
  if (name == "unit") return set_enum(kUnits, key, value, s.activation);
  if (name == "shortcut") return set_enum(kVariants, key, value, s.variant);
  if (name == "shortcut_option") return set_enum(kOptions, key, value, s.shortcut);
  if (name == "shortcut_scale") return set_float(key, value, s.shortcut_scale);
  if (name == "gate_bias") return set_float(key, value, s.gate_bias);
  if (name == "shortcut_dropout") return set_float(key, value, s.shortcut_dropout);
  if (name == "plain") return set_bool(key, value, s.plain);
  if (name == "stride_on_3x3") return set_bool(key, value, s.stride_on_3x3);
  std::string list;
  for (const auto& k : spec_fields()) list += (list.empty() ? "" : ", ") + k;
  RN_FAIL("unknown model field '" << key << "'; valid fields: " << list);
}

std::string spec_field(const ModelSpec& s, const std::string& key) {
  if (key == "block") return kBlocks.of(s.block);
  if (key == "blocks") return stage_list(s.blocks);
  if (key == "widths") return stage_list(s.planes);
  if (key == "groups") return std::to_string(s.groups);
  if (key == "width_per_group") return std::to_string(s.width_per_group);
  if (key == "stem") return kStems.of(s.stem);
  if (key == "stem_channels") return std::to_string(s.stem_channels);
  if (key == "unit") return kUnits.of(s.activation);
  if (key == "shortcut") return kVariants.of(s.variant);
  if (key == "shortcut_option") return kOptions.of(s.shortcut);
  if (key == "shortcut_scale") return float_text(s.shortcut_scale);
  if (key == "gate_bias") return float_text(s.gate_bias);
  if (key == "shortcut_dropout") return float_text(s.shortcut_dropout);
  if (key == "plain") return s.plain ? "true" : "false";
  if (key == "stride_on_3x3") return s.stride_on_3x3 ? "true" : "false";
  RN_FAIL("unknown model field '" << key << "'");
}

void validate_spec(const ModelSpec& s) {
  RN_SPEC_REQUIRE(!s.blocks.empty(),
                  "'blocks' must list the units of each stage, such as [9, 9, 9]");
  RN_SPEC_REQUIRE(s.planes.size() == s.blocks.size(),
                  "'widths' must have one entry per stage ("
                      << s.blocks.size() << ", as 'blocks'), got " << s.planes.size());
  for (int b : s.blocks) RN_SPEC_REQUIRE(b >= 1, "'blocks' must be positive, got " << b);
  for (int w : s.planes) RN_SPEC_REQUIRE(w >= 1, "'widths' must be positive, got " << w);
  RN_SPEC_REQUIRE(s.groups >= 1, "'groups' must be at least 1, got " << s.groups);
  RN_SPEC_REQUIRE(s.width_per_group >= 1,
                  "'width_per_group' must be at least 1, got " << s.width_per_group);
  RN_SPEC_REQUIRE(s.stem_channels >= 1,
                  "'stem_channels' must be at least 1, got " << s.stem_channels);
  RN_SPEC_REQUIRE(s.in_channels >= 1, "'in_channels' must be at least 1, got " << s.in_channels);
  RN_SPEC_REQUIRE(s.num_classes >= 1, "'num_classes' must be at least 1, got " << s.num_classes);
  RN_SPEC_REQUIRE(
      s.block == BlockKind::bottleneck || (s.groups == 1 && s.width_per_group == 64),
      "'groups' and 'width_per_group' apply to bottleneck units only (block: bottleneck)");
  if (s.block == BlockKind::bottleneck)
    for (int w : s.planes)
      RN_SPEC_REQUIRE(static_cast<int>(w * (s.width_per_group / 64.0)) >= 1,
                      "'width_per_group' " << s.width_per_group << " leaves stage width " << w
                                           << " with no channels per group");
  RN_SPEC_REQUIRE(s.shortcut_scale > 0 && s.shortcut_scale < 1,
                  "'shortcut_scale' must be in (0, 1), got " << s.shortcut_scale);
  RN_SPEC_REQUIRE(s.shortcut_dropout >= 0 && s.shortcut_dropout < 1,
                  "'shortcut_dropout' must be in [0, 1), got " << s.shortcut_dropout);
  if (s.plain) {
    RN_SPEC_REQUIRE(s.variant == ShortcutVariant::identity,
                    "'shortcut' must be identity in a plain network (it has no shortcuts), got "
                        << kVariants.of(s.variant));
    RN_SPEC_REQUIRE(s.activation == UnitActivation::original,
                    "'unit' must be original in a plain network, got " << kUnits.of(s.activation));
  }
  RN_SPEC_REQUIRE(s.shortcut != ShortcutKind::A || s.variant != ShortcutVariant::conv1x1,
                  "'shortcut_option' A (zero padding) contradicts 'shortcut' conv1x1 (a projection "
                  "everywhere)");
}

std::string model_name(const std::string& base, const ModelSpec& s) {
  ModelSpec reference;
  if (base != "custom") reference = model_spec(base, s.in_channels, s.num_classes);
  std::string fields;
  for (const auto& key : spec_fields()) {
    const std::string v = spec_field(s, key);
    if (base == "custom" || v != spec_field(reference, key))
      fields += (fields.empty() ? "" : " ") + key + "=" + v;
  }
  return fields.empty() ? base : base + "{" + fields + "}";
}

}  // namespace rn::models

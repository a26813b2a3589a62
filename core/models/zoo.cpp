// The named networks: ImageNet ResNets (torchvision names), ResNeXt and wide ResNets, CIFAR
// ResNets and their plain counterparts, pre-activation ResNets and CIFAR ResNeXt-29.
#include <cctype>
#include <map>
#include <sstream>

#include "core/check.h"
#include "core/models/model_spec.h"

namespace rn::models {
namespace {

using nn::ShortcutKind;

ModelSpec imagenet(BlockKind block, std::vector<int> blocks, int groups = 1, int wpg = 64) {
  ModelSpec s;
  s.block = block;
  s.blocks = std::move(blocks);
  s.planes = {64, 128, 256, 512};
  s.groups = groups;
  s.width_per_group = wpg;
  return s;
}

// He et al. 2015, sec. 4.2: 6n+2 layers, 16/32/64 filters, option A shortcuts.
ModelSpec cifar(int depth, bool plain) {
  ModelSpec s;
  const int n = (depth - 2) / 6;
  s.blocks = {n, n, n};
  s.planes = {16, 32, 64};
  s.stem = StemKind::cifar;
  s.stem_channels = 16;
  s.shortcut = ShortcutKind::A;
  s.plain = plain;
  return s;
}

// He et al. 2016: pre-activation units with projection shortcuts; bottleneck depth 9n+2.
ModelSpec cifar_preact(int depth, BlockKind block) {
  ModelSpec s;
  const int n = block == BlockKind::basic ? (depth - 2) / 6 : (depth - 2) / 9;
  s.block = block;
  s.blocks = {n, n, n};
  s.planes = {16, 32, 64};
  s.stem = StemKind::cifar;
  s.stem_channels = 16;
  s.activation = nn::UnitActivation::full_preact;
  return s;
}

// Xie et al. 2017, CIFAR: 64-channel stem, three stages of three bottlenecks, cardinality C,
// bottleneck width d in the first stage (doubling per stage), outputs 256/512/1024.
ModelSpec resnext29(int cardinality, int width) {
  ModelSpec s;
  s.block = BlockKind::bottleneck;
  s.blocks = {3, 3, 3};
  s.planes = {64, 128, 256};
  s.groups = cardinality;
  s.width_per_group = width;
  s.stem = StemKind::cifar;
  s.stem_channels = 64;
  return s;
}

ModelSpec without_shortcuts(ModelSpec s) {
  s.plain = true;
  return s;
}

ModelSpec full_preact(ModelSpec s) {
  s.activation = nn::UnitActivation::full_preact;
  return s;
}

// Every named network, in the order `known_models` lists them.
const std::vector<std::pair<std::string, ModelSpec>>& zoo() {
  using B = BlockKind;
  static const std::vector<std::pair<std::string, ModelSpec>> z = {
      {"resnet18", imagenet(B::basic, {2, 2, 2, 2})},
      {"resnet34", imagenet(B::basic, {3, 4, 6, 3})},
      {"resnet50", imagenet(B::bottleneck, {3, 4, 6, 3})},
      {"resnet101", imagenet(B::bottleneck, {3, 4, 23, 3})},
      {"resnet152", imagenet(B::bottleneck, {3, 8, 36, 3})},
      {"resnet200", imagenet(B::bottleneck, {3, 24, 36, 3})},
      {"resnext50_32x4d", imagenet(B::bottleneck, {3, 4, 6, 3}, 32, 4)},
      {"resnext101_32x4d", imagenet(B::bottleneck, {3, 4, 23, 3}, 32, 4)},
      {"resnext101_32x8d", imagenet(B::bottleneck, {3, 4, 23, 3}, 32, 8)},
      {"resnext101_64x4d", imagenet(B::bottleneck, {3, 4, 23, 3}, 64, 4)},
      {"wide_resnet50_2", imagenet(B::bottleneck, {3, 4, 6, 3}, 1, 128)},
      {"wide_resnet101_2", imagenet(B::bottleneck, {3, 4, 23, 3}, 1, 128)},
      {"resnet20", cifar(20, false)},
      {"resnet32", cifar(32, false)},
      {"resnet44", cifar(44, false)},
      {"resnet56", cifar(56, false)},
      {"resnet110", cifar(110, false)},
      {"resnet1202", cifar(1202, false)},
      {"plain20", cifar(20, true)},
      {"plain32", cifar(32, true)},
      {"plain44", cifar(44, true)},
      {"plain56", cifar(56, true)},
      {"plain110", cifar(110, true)},
      {"plain18", without_shortcuts(imagenet(B::basic, {2, 2, 2, 2}))},
      {"plain34", without_shortcuts(imagenet(B::basic, {3, 4, 6, 3}))},
      {"preact_resnet110", cifar_preact(110, B::basic)},
      {"preact_resnet164", cifar_preact(164, B::bottleneck)},
      {"preact_resnet1001", cifar_preact(1001, B::bottleneck)},
      {"preact_resnet200", full_preact(imagenet(B::bottleneck, {3, 24, 36, 3}))},
      {"resnext29_8x64d", resnext29(8, 64)},
      {"resnext29_16x64d", resnext29(16, 64)},
  };
  return z;
}

}  // namespace

std::vector<std::string> known_models() {
  std::vector<std::string> names;
  for (const auto& [name, f] : zoo()) names.push_back(name);
  return names;
}

namespace {

// "resnext29_<C>x<d>d": the CIFAR ResNeXt-29 template at any cardinality C and bottleneck width d
// (the paper's Table 7 names two, 8x64d and 16x64d; smaller ones suit a CPU).
bool parse_resnext29(const std::string& name, int& cardinality, int& width) {
  const std::string prefix = "resnext29_";
  if (name.rfind(prefix, 0) != 0 || name.size() < prefix.size() + 4 || name.back() != 'd')
    return false;
  const std::string body = name.substr(prefix.size(), name.size() - prefix.size() - 1);
  const size_t x = body.find('x');
  if (x == std::string::npos || x == 0 || x + 1 >= body.size()) return false;
  for (size_t i = 0; i < body.size(); ++i)
    if (i != x && !std::isdigit(static_cast<unsigned char>(body[i]))) return false;
  if (body.size() > 9) return false;
  cardinality = std::stoi(body.substr(0, x));
  width = std::stoi(body.substr(x + 1));
  return cardinality >= 1 && width >= 1;
}

}  // namespace

ModelSpec model_spec(const std::string& name, int in_channels, int num_classes) {
  if (const size_t brace = name.find('{'); brace != std::string::npos) {
    if (name.back() != '}' || name.find('{', brace + 1) != std::string::npos)
      RN_FAIL("model '" << name << "': fields go in one pair of braces, as resnet56{gate_bias=-6}");
    const std::string base = name.substr(0, brace);
    ModelSpec s;
    if (base == "custom") {
      s.in_channels = in_channels;
      s.num_classes = num_classes;
    } else {
      s = model_spec(base, in_channels, num_classes);
    }
    std::stringstream fields(name.substr(brace + 1, name.size() - brace - 2));
    try {
      for (std::string field; fields >> field;) {
        const size_t eq = field.find('=');
        if (eq == std::string::npos) RN_FAIL("'" << field << "' is not key=value");
        set_spec_field(s, field.substr(0, eq), field.substr(eq + 1));
      }
      validate_spec(s);
    } catch (const Error& e) {
      RN_FAIL("model '" << name << "': " << e.what());
    }
    s.name = name;
    return s;
  }
  if (name == "custom")
    RN_FAIL(
        "model 'custom' needs its fields (block, blocks, widths, ...): give them under "
        "'model:' in the config");
  int cardinality = 0, width = 0;
  const bool is_resnext29 = parse_resnext29(name, cardinality, width);
  for (const auto& [n, spec] : zoo()) {
    if (n != name && !(is_resnext29 && n == "resnext29_8x64d")) continue;
    ModelSpec s = is_resnext29 ? resnext29(cardinality, width) : spec;
    s.name = name;
    s.in_channels = in_channels;
    s.num_classes = num_classes;
    return s;
  }
  std::string list;
  for (const auto& n : known_models()) list += (list.empty() ? "" : ", ") + n;
  RN_FAIL("unknown model '" << name << "'; known models: " << list
                            << " (and resnext29_<C>x<d>d for any "
                               "cardinality C and width d, or custom with the spec's fields)");
}

}  // namespace rn::models

// An ensemble's members as configs of their own: the base config with each member's model, seed
// and overrides, validated whole, with the keys that decide the shared test set checked equal.
#include <filesystem>

#include "core/check.h"
#include "launch/train/config.h"
#include "launch/train/config_schema.h"

namespace rn::launch {

using namespace config_schema;

std::vector<Config> member_configs(const Config& config) {
  std::vector<Config> members;
  for (const EnsembleMember& m : config.ensemble.members) {
    Config c = config;
    c.ensemble = EnsembleConfig{};
    c.source = config.source + ": ensemble member '" + m.name + "'";
    Origins origins;
    if (!m.overrides.empty()) read_mapping(c, m.overrides, c.source, origins);
    if (!m.model.empty()) c.model.name = m.model;
    if (m.seed) c.train.seed = *m.seed;
    c.run_dir = (std::filesystem::path(config.run_dir) / m.name).string();
    validate(c, origins, "'model'");
    // What decides the test set and the classifier is shared: the members are scored together.
    const auto same = [&](bool equal, const char* key) {
      if (!equal)
        RN_FAIL(c.source << ": '" << key
                         << "' must be the same for every member (the members are evaluated "
                            "together on one test set)");
    };
    const DataConfig &d = c.data, &b = config.data;
    same(d.kind == b.kind, "data.kind");
    same(d.root == b.root, "data.root");
    same(d.train_limit == b.train_limit, "data.train_limit");
    same(d.test_limit == b.test_limit, "data.test_limit");
    same(d.labels == b.labels, "data.labels");
    same(d.mean == b.mean, "data.mean");
    same(d.std == b.std, "data.std");
    same(d.eval_resize == b.eval_resize, "data.eval_resize");
    same(d.eval_crop == b.eval_crop, "data.eval_crop");
    same(d.synthetic_size == b.synthetic_size, "data.synthetic_size");
    same(d.height == b.height && d.width == b.width, "data.height/width");
    same(c.model.in_channels == config.model.in_channels, "model.in_channels");
    same(c.model.num_classes == config.model.num_classes, "model.num_classes");
    same(c.train.device == config.train.device, "train.device");
    members.push_back(std::move(c));
  }
  return members;
}

}  // namespace rn::launch

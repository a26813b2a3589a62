// The config's schema, shared by its reader, writer and validator (config_yaml.cpp,
// config_validate.cpp, config_members.cpp): each section lists its keys once, in file order, so
// that reading, writing and the "valid keys" of error messages all walk the same lists and a new
// key is added in one place. Private to the config's own files.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/check.h"
#include "launch/train/config.h"

namespace rn::launch::config_schema {

template <typename V>
void visit(ModelConfig& c, V& v) {
  v.field("name", c.name);
  v.field("in_channels", c.in_channels);
  v.field("num_classes", c.num_classes);
  v.field("zero_init_residual", c.zero_init_residual);
  v.field("block", c.block);
  v.field("blocks", c.blocks);
  v.field("widths", c.widths);
  v.field("groups", c.groups);
  v.field("width_per_group", c.width_per_group);
  v.field("stem", c.stem);
  v.field("stem_channels", c.stem_channels);
  v.field("unit", c.unit);
  v.field("shortcut", c.shortcut);
  v.field("shortcut_option", c.shortcut_option);
  v.field("shortcut_scale", c.shortcut_scale);
  v.field("gate_bias", c.gate_bias);
  v.field("shortcut_dropout", c.shortcut_dropout);
  v.field("plain", c.plain);
  v.field("stride_on_3x3", c.stride_on_3x3);
}

template <typename V>
void visit(AugmentConfig& c, V& v) {
  v.field("recipe", c.recipe);
  v.field("crop_pad", c.crop_pad);
  v.field("hflip", c.hflip);
  v.field("crop", c.crop);
  v.field("scale", c.scale);
  v.field("ratio", c.ratio);
  v.field("shorter", c.shorter);
  v.field("lighting", c.lighting);
}

template <typename V>
void visit(DataConfig& c, V& v) {
  v.field("kind", c.kind);
  v.field("root", c.root);
  v.field("batch_size", c.batch_size);
  v.field("test_batch_size", c.test_batch_size);
  v.field("train_limit", c.train_limit);
  v.field("test_limit", c.test_limit);
  v.field("workers", c.workers);
  v.field("prefetch", c.prefetch);
  v.section("augment", c.augment);
  v.field("labels", c.labels);
  v.field("on_bad_sample", c.on_bad_sample);
  v.field("mean", c.mean);
  v.field("std", c.std);
  v.field("eval_resize", c.eval_resize);
  v.field("eval_crop", c.eval_crop);
  v.field("synthetic_size", c.synthetic_size);
  v.field("height", c.height);
  v.field("width", c.width);
}

template <typename V>
void visit(OptimConfig& c, V& v) {
  v.field("name", c.name);
  v.field("lr", c.lr);
  v.field("momentum", c.momentum);
  v.field("nesterov", c.nesterov);
  v.field("weight_decay", c.weight_decay);
  v.field("decay_bn_and_bias", c.decay_bn_and_bias);
  v.field("label_smoothing", c.label_smoothing);
  v.field("schedule", c.schedule);
  v.field("milestones", c.milestones);
  v.field("gamma", c.gamma);
  v.field("warmup_epochs", c.warmup_epochs);
  v.field("scale_lr", c.scale_lr);
}

template <typename V>
void visit(TrainConfig& c, V& v) {
  v.field("epochs", c.epochs);
  v.field("max_steps", c.max_steps);
  v.field("seed", c.seed);
  v.field("device", c.device);
  v.field("precision", c.precision);
  v.field("conv_algorithm", c.conv_algorithm);
  v.field("threads", c.threads);
  v.field("log_every", c.log_every);
}

template <typename V>
void visit(DistributedConfig& c, V& v) {
  v.field("sync_bn", c.sync_bn);
  v.field("bucket_mib", c.bucket_mib);
  v.field("first_bucket_mib", c.first_bucket_mib);
  v.field("timeout_s", c.timeout_s);
}

template <typename V>
void visit(CheckpointConfig& c, V& v) {
  v.field("every_epochs", c.every_epochs);
  v.field("every_steps", c.every_steps);
  v.field("keep_last", c.keep_last);
}

template <typename V>
void visit(EnsembleConfig& c, V& v) {
  v.field("split", c.split);
  v.field("members", c.members);
}

template <typename V>
void visit(Config& c, V& v) {
  v.field("run_dir", c.run_dir);
  v.section("model", c.model);
  v.section("data", c.data);
  v.section("optim", c.optim);
  v.section("train", c.train);
  v.section("distributed", c.distributed);
  v.section("checkpoint", c.checkpoint);
  v.section("ensemble", c.ensemble);
}

struct KeyLister {
  std::vector<std::string> keys;
  template <typename T>
  void field(const char* key, T&) {
    keys.emplace_back(key);
  }
  template <typename S>
  void section(const char* key, S&) {
    keys.emplace_back(key);
  }
};

template <typename S>
std::vector<std::string> keys_of() {
  S scratch;
  KeyLister lister;
  visit(scratch, lister);
  return lister.keys;
}

// Dotted key -> where its value was last set (the file, or one --set override), so that a
// check on the final values names the right one.
using Origins = std::map<std::string, std::string>;

std::string join(const std::vector<std::string>& items);
std::string dotted(const std::string& prefix, const std::string& key);
// Shortest text that reads back to the same double, so to_yaml round-trips exactly and
// messages show 0.1 rather than 0.10000000000000001.
std::string format_double(double v);

// Reads `yaml_text` (a mapping shaped like the config) into `config` from `origin`: the keys it
// holds replace the config's, absent keys stay. Unknown keys and values of the wrong type throw
// one line naming `origin` and the key.
void read_mapping(Config& config, const std::string& yaml_text, const std::string& origin,
                  Origins& origins);
// One --set key=value.
void apply_override(Config& config, const std::string& text, Origins& origins);

// Checks the final values (so that an override can fix a file's value) and types them: every
// Choice gets its value, the model its spec. `model_label` names the model in the message of a
// network the zoo does not know ("'model.name'", or "'model'" for an ensemble member).
void validate(Config& config, const Origins& origins, const char* model_label);

}  // namespace rn::launch::config_schema

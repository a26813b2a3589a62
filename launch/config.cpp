// Reading, overriding, validating and writing the YAML job configuration.
#include "launch/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "core/check.h"
#include "core/models/model_spec.h"

namespace rn::launch {
namespace {

// The schema: each section lists its keys once, in file order. Reading, writing and the
// "valid keys" of error messages all walk these lists, so a new key is added in one place.
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

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string dotted(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

// Shortest text that reads back to the same double, so to_yaml round-trips exactly and
// messages show 0.1 rather than 0.10000000000000001.
std::string format_double(double v) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, result.ptr);
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

// from_chars rather than yaml-cpp's stream conversion: the latter reads "010" as octal 8.
template <typename T>
bool parse_number(std::string text, T& out) {
  if (!text.empty() && text.front() == '+') text.erase(0, 1);
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, out);
  return !text.empty() && result.ec == std::errc() && result.ptr == end;
}

// Where values come from: the file, or one --set override. `origins` remembers, per dotted
// key, which of them set it last, so the range checks at the end can name the right one.
struct ReadContext {
  std::string origin;
  std::map<std::string, std::string>* origins;
};

[[noreturn]] void fail_type(const ReadContext& ctx, const std::string& key, const char* what,
                            const YAML::Node& node) {
  RN_FAIL(ctx.origin << ": '" << key << "' must be " << what << ", got " << describe(node));
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
            std::string& out) {
  if (!node.IsScalar()) fail_type(ctx, key, "a string", node);
  out = node.Scalar();
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx, bool& out) {
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, out)) {
    fail_type(ctx, key, "true or false", node);
  }
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx, int& out) {
  if (!node.IsScalar() || !parse_number(node.Scalar(), out)) {
    fail_type(ctx, key, "an integer", node);
  }
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx, int64_t& out) {
  if (!node.IsScalar() || !parse_number(node.Scalar(), out)) {
    fail_type(ctx, key, "an integer", node);
  }
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx, uint64_t& out) {
  if (!node.IsScalar() || !parse_number(node.Scalar(), out)) {
    fail_type(ctx, key, "a non-negative integer", node);
  }
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx, double& out) {
  if (!node.IsScalar() || !parse_number(node.Scalar(), out)) {
    fail_type(ctx, key, "a number", node);
  }
}

// A list of numbers; `example` shows its form in the message.
template <typename T>
void decode_list(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
                 std::vector<T>& out, const char* example) {
  if (!node.IsSequence()) fail_type(ctx, key, example, node);
  std::vector<T> values;
  for (std::size_t i = 0; i < node.size(); ++i) {
    T v = 0;
    decode(node[i], key + "[" + std::to_string(i) + "]", ctx, v);
    values.push_back(v);
  }
  out = std::move(values);
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
            std::vector<double>& out) {
  decode_list(node, key, ctx, out, "a list of numbers such as [5, 7.5]");
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
            std::vector<int>& out) {
  decode_list(node, key, ctx, out, "a list of integers such as [9, 9, 9]");
}

// An optional field: null (`key: ~`) unsets it.
template <typename T>
void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
            std::optional<T>& out) {
  if (node.IsNull()) {
    out.reset();
    return;
  }
  T value{};
  decode(node, key, ctx, value);
  out = std::move(value);
}

// The keys of one ensemble member, in file order (also the "valid keys" of its messages).
const std::vector<std::string>& member_keys() {
  static const std::vector<std::string> keys{"name",   "model", "seed",
                                             "weight", "ranks", "overrides"};
  return keys;
}

void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
            std::vector<EnsembleMember>& out) {
  if (!node.IsSequence()) fail_type(ctx, key, "a list of members (name, model, seed, ...)", node);
  std::vector<EnsembleMember> members;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node m = node[i];
    const std::string at = key + "[" + std::to_string(i) + "]";
    if (!m.IsMap()) fail_type(ctx, at, "a mapping (name, model, seed, ...)", m);
    for (const auto& entry : m) {
      const std::string k = entry.first.IsScalar() ? entry.first.Scalar() : "";
      const auto& known = member_keys();
      if (std::find(known.begin(), known.end(), k) == known.end())
        RN_FAIL(ctx.origin << ": unknown key '" << at << "." << k
                           << "'; valid keys of a member: " << join(known));
    }
    EnsembleMember member;
    if (!m["name"].IsDefined()) RN_FAIL(ctx.origin << ": '" << at << "' has no 'name'");
    decode(m["name"], at + ".name", ctx, member.name);
    if (m["model"].IsDefined()) decode(m["model"], at + ".model", ctx, member.model);
    if (m["seed"].IsDefined()) {
      uint64_t seed = 0;
      decode(m["seed"], at + ".seed", ctx, seed);
      member.seed = seed;
    }
    if (m["weight"].IsDefined()) decode(m["weight"], at + ".weight", ctx, member.weight);
    if (m["ranks"].IsDefined()) decode(m["ranks"], at + ".ranks", ctx, member.ranks);
    if (const YAML::Node o = m["overrides"]; o.IsDefined() && !o.IsNull()) {
      if (!o.IsMap())
        fail_type(ctx, at + ".overrides", "a mapping shaped like the config (optim: {lr: 0.05})",
                  o);
      for (const char* banned : {"run_dir", "ensemble"})
        if (o[banned].IsDefined())
          RN_FAIL(ctx.origin << ": '" << at << ".overrides' cannot set '" << banned
                             << "' (a member trains in run_dir/<name>)");
      YAML::Emitter e;
      e << YAML::Flow << o;
      member.overrides = e.c_str();
    }
    members.push_back(std::move(member));
  }
  out = std::move(members);
}

template <typename S>
void read_section(const YAML::Node& node, S& section, const std::string& path,
                  const ReadContext& ctx);

// Assigns the keys present in one YAML mapping; absent keys keep their current values,
// which is what lets an override change one key and leave its neighbours alone.
class Reader {
 public:
  Reader(const YAML::Node& node, const std::string& path, const ReadContext& ctx)
      : node_(node), path_(path), ctx_(ctx) {}

  template <typename T>
  void field(const char* key, T& value) {
    const YAML::Node child = node_[key];
    if (!child.IsDefined()) return;
    const std::string name = dotted(path_, key);
    decode(child, name, ctx_, value);
    (*ctx_.origins)[name] = ctx_.origin;
  }

  template <typename S>
  void section(const char* key, S& value) {
    const YAML::Node child = node_[key];
    if (child.IsDefined()) read_section(child, value, dotted(path_, key), ctx_);
  }

 private:
  const YAML::Node node_;
  const std::string& path_;
  const ReadContext& ctx_;
};

template <typename S>
void read_section(const YAML::Node& node, S& section, const std::string& path,
                  const ReadContext& ctx) {
  if (node.IsNull()) return;  // `optim:` with nothing under it keeps the defaults
  if (!node.IsMap()) {
    RN_FAIL(ctx.origin << ": " << (path.empty() ? "the config" : "'" + path + "'")
                       << " must be a mapping of keys to values, got " << describe(node));
  }
  const std::string where = path.empty() ? "at the top level" : "under '" + path + "'";
  const std::vector<std::string> known = keys_of<S>();
  std::set<std::string> seen;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) {
      RN_FAIL(ctx.origin << ": keys " << where << " must be names, got " << describe(entry.first));
    }
    const std::string& key = entry.first.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      RN_FAIL(ctx.origin << ": unknown key '" << dotted(path, key) << "'; valid keys " << where
                         << ": " << join(known));
    }
    if (!seen.insert(key).second) {
      RN_FAIL(ctx.origin << ": key '" << dotted(path, key) << "' appears more than once");
    }
  }
  Reader reader(node, path, ctx);
  visit(section, reader);
}

void apply_override(Config& config, const std::string& text,
                    std::map<std::string, std::string>& origins) {
  const ReadContext ctx{"--set " + text, &origins};
  const auto eq = text.find('=');
  if (eq == std::string::npos) {
    RN_FAIL(ctx.origin << ": expected key=value, e.g. --set optim.lr=0.05");
  }
  std::string key = text.substr(0, eq);
  // Shells make it easy to write "optim.lr = 0.1"; the spaces are not part of the key.
  key.erase(0, key.find_first_not_of(" \t"));
  key.erase(key.find_last_not_of(" \t") + 1);
  std::vector<std::string> parts;
  std::stringstream splitter(key);
  for (std::string part; std::getline(splitter, part, '.');) parts.push_back(part);
  if (key.empty() || key.back() == '.' ||
      std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); })) {
    RN_FAIL(ctx.origin << ": '" << key << "' is not a dotted key such as optim.lr");
  }
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    RN_FAIL(ctx.origin << ": malformed value: " << e.msg);
  }
  // Nest the value under the key's parts ({optim: {lr: value}}) and read it like a file, so
  // overrides get the same unknown-key and type checks, with the override named in messages.
  YAML::Node tree = value;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = tree;
    tree.reset(parent);
  }
  read_section(tree, config, "", ctx);
}

// A bad field of the model section, with its dotted key.
struct ModelFieldError : Error {
  ModelFieldError(const std::string& message, std::string k) : Error(message), key(std::move(k)) {}
  std::string key;
};

// Range checks, run once on the final values so that an override can fix a file's value.
class Validator {
 public:
  Validator(const Config& config, const std::map<std::string, std::string>& origins)
      : config_(config), origins_(origins) {}

  void check() const {
    const Config& c = config_;
    require(!c.run_dir.empty(), "run_dir", "a non-empty path", c.run_dir);

    require(!c.model.name.empty(), "model.name", "a model name", c.model.name);
    require(c.model.in_channels >= 1, "model.in_channels", "at least 1", c.model.in_channels);
    require(c.model.num_classes >= 1, "model.num_classes", "at least 1", c.model.num_classes);
    check_model(c.model);

    const DataConfig& d = c.data;
    one_of("data.kind", d.kind,
           {"fashion_mnist", "cifar10", "cifar100", "image_folder", "packed", "synthetic"});
    if (d.kind != "synthetic") require(!d.root.empty(), "data.root", "a directory", d.root);
    const bool encoded = d.kind == "image_folder" || d.kind == "packed";
    const AugmentConfig& a = d.augment;
    if (encoded)
      one_of("data.augment.recipe", a.recipe, {"resnet", "torchvision", "none"});
    else
      one_of("data.augment.recipe", a.recipe, {"pad_crop", "none"});
    require(a.crop >= 1, "data.augment.crop", "at least 1", a.crop);
    require(a.scale.size() == 2 && a.scale[0] > 0 && a.scale[0] <= a.scale[1] && a.scale[1] <= 1,
            "data.augment.scale", "[min, max] with 0 < min <= max <= 1", a.scale);
    require(a.ratio.size() == 2 && a.ratio[0] > 0 && a.ratio[0] <= a.ratio[1] &&
                std::isfinite(a.ratio[1]),
            "data.augment.ratio", "[min, max] with 0 < min <= max", a.ratio);
    require(a.shorter.size() == 2 && a.shorter[0] >= 1 && a.shorter[0] <= a.shorter[1] &&
                a.shorter[1] <= 1e5 && a.shorter[0] == std::floor(a.shorter[0]) &&
                a.shorter[1] == std::floor(a.shorter[1]),
            "data.augment.shorter", "[min, max] whole pixels with 1 <= min <= max", a.shorter);
    require(std::isfinite(a.lighting) && a.lighting >= 0, "data.augment.lighting",
            "0 (off) or more", a.lighting);
    one_of("data.labels", d.labels, {"fine", "coarse"});
    one_of("data.on_bad_sample", d.on_bad_sample, {"substitute", "error"});
    require(d.mean.size() == d.std.size(), "data.std", "as many values as data.mean (per channel)",
            d.std);
    bool positive = true;
    for (double x : d.std) positive = positive && std::isfinite(x) && x > 0;
    require(positive, "data.std", "positive numbers", d.std);
    require(d.eval_crop >= 1, "data.eval_crop", "at least 1", d.eval_crop);
    require(d.eval_resize >= d.eval_crop, "data.eval_resize", "at least data.eval_crop",
            d.eval_resize);
    require(d.batch_size >= 1, "data.batch_size", "at least 1", d.batch_size);
    require(d.test_batch_size >= 1, "data.test_batch_size", "at least 1", d.test_batch_size);
    require(d.train_limit >= 0, "data.train_limit", "0 (all) or more", d.train_limit);
    require(d.test_limit >= 0, "data.test_limit", "0 (all) or more", d.test_limit);
    require(d.workers >= 0, "data.workers", "0 or more", d.workers);
    require(d.prefetch >= 1, "data.prefetch", "at least 1", d.prefetch);
    require(d.augment.crop_pad >= 0, "data.augment.crop_pad", "0 or more", d.augment.crop_pad);
    require(d.synthetic_size >= 1, "data.synthetic_size", "at least 1", d.synthetic_size);
    require(d.height >= 1, "data.height", "at least 1", d.height);
    require(d.width >= 1, "data.width", "at least 1", d.width);

    const OptimConfig& o = c.optim;
    one_of("optim.name", o.name, {"sgd", "lars"});
    require(std::isfinite(o.lr) && o.lr > 0, "optim.lr", "a positive number", o.lr);
    require(o.momentum >= 0 && o.momentum < 1, "optim.momentum", "in [0, 1)", o.momentum);
    require(!o.nesterov || o.momentum > 0, "optim.momentum", "above 0 when optim.nesterov is true",
            o.momentum);
    require(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "optim.weight_decay", "0 or more",
            o.weight_decay);
    require(o.label_smoothing >= 0 && o.label_smoothing < 1, "optim.label_smoothing", "in [0, 1)",
            o.label_smoothing);
    one_of("optim.schedule", o.schedule, {"multistep", "cosine", "constant"});
    bool increasing = true;
    for (std::size_t i = 0; i < o.milestones.size(); ++i) {
      const double m = o.milestones[i];
      if (!(std::isfinite(m) && m >= 0 && (i == 0 || m > o.milestones[i - 1]))) increasing = false;
    }
    require(increasing, "optim.milestones", "non-negative epochs in increasing order",
            o.milestones);
    require(std::isfinite(o.gamma) && o.gamma > 0, "optim.gamma", "a positive number", o.gamma);
    require(std::isfinite(o.warmup_epochs) && o.warmup_epochs >= 0, "optim.warmup_epochs",
            "0 or more", o.warmup_epochs);

    const TrainConfig& t = c.train;
    require(t.epochs >= 1, "train.epochs", "at least 1", t.epochs);
    require(t.max_steps >= 0, "train.max_steps", "0 (no limit) or more", t.max_steps);
    one_of("train.device", t.device, {"cpu", "cuda"});
    one_of("train.precision", t.precision, {"fp32", "bf16", "fp16"});
    require(t.threads >= 0, "train.threads", "0 (automatic) or more", t.threads);
    require(t.log_every >= 1, "train.log_every", "at least 1", t.log_every);

    const DistributedConfig& dp = c.distributed;
    require(std::isfinite(dp.bucket_mib) && dp.bucket_mib > 0, "distributed.bucket_mib",
            "a positive number of MiB", dp.bucket_mib);
    require(std::isfinite(dp.first_bucket_mib) && dp.first_bucket_mib > 0,
            "distributed.first_bucket_mib", "a positive number of MiB", dp.first_bucket_mib);
    require(std::isfinite(dp.timeout_s) && dp.timeout_s >= 0, "distributed.timeout_s",
            "0 (no limit) or more seconds", dp.timeout_s);

    require(c.checkpoint.every_epochs >= 0, "checkpoint.every_epochs", "0 (off) or more",
            c.checkpoint.every_epochs);
    require(c.checkpoint.every_steps >= 0, "checkpoint.every_steps", "0 (off) or more",
            c.checkpoint.every_steps);
    require(c.checkpoint.keep_last >= 1, "checkpoint.keep_last", "at least 1",
            c.checkpoint.keep_last);
    check_ensemble(c.ensemble);
  }

 private:
  // The model's fields, one at a time (the message names the field and where it was set), then
  // the spec as a whole.
  void check_model(const ModelConfig& m) const {
    try {
      model_name_of(m);
    } catch (const ModelFieldError& e) {
      RN_FAIL(origin(e.key) << ": " << e.what());
    } catch (const Error& e) {
      RN_FAIL(origin("model.name") << ": 'model': " << e.what());
    }
  }

  void check_ensemble(const EnsembleConfig& e) const {
    one_of("ensemble.split", e.split, {"equal", "macs"});
    std::set<std::string> names;
    int with_ranks = 0;
    for (std::size_t i = 0; i < e.members.size(); ++i) {
      const EnsembleMember& m = e.members[i];
      const std::string at = "ensemble.members[" + std::to_string(i) + "]";
      const bool folder_name = !m.name.empty() && m.name != "." && m.name != ".." &&
                               std::all_of(m.name.begin(), m.name.end(), [](char ch) {
                                 return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
                                        ch == '-' || ch == '.';
                               });
      require(folder_name, at + ".name", "a folder name (letters, digits, '_', '-', '.')", m.name);
      if (!names.insert(m.name).second)
        RN_FAIL(origin("ensemble.members")
                << ": '" << at << ".name': member '" << m.name << "' appears more than once");
      require(std::isfinite(m.weight) && m.weight > 0, at + ".weight", "a positive number",
              m.weight);
      require(m.ranks >= 0, at + ".ranks", "0 (by ensemble.split) or more", m.ranks);
      with_ranks += m.ranks > 0;
    }
    if (with_ranks > 0 && with_ranks < static_cast<int>(e.members.size()))
      RN_FAIL(origin("ensemble.members")
              << ": 'ensemble.members': 'ranks' is given for " << with_ranks << " of "
              << e.members.size() << " members; give it for every member or for none");
  }

  static std::string show(const std::string& v) { return "'" + v + "'"; }
  static std::string show(double v) { return format_double(v); }
  static std::string show(const std::vector<double>& v) {
    std::vector<std::string> items;
    for (double x : v) items.push_back(format_double(x));
    std::string text = "[";  // appended, not "[" + ...: GCC 12 warns falsely on the latter
    text += join(items);
    text += "]";
    return text;
  }
  template <typename T>
  static std::string show(T v) {
    return std::to_string(v);
  }

  const std::string& origin(const std::string& key) const {
    const auto it = origins_.find(key);
    return it == origins_.end() ? config_.source : it->second;
  }

  template <typename T>
  void require(bool ok, const std::string& key, const char* what, const T& value) const {
    if (!ok)
      RN_FAIL(origin(key) << ": '" << key << "' must be " << what << ", got " << show(value));
  }

  void one_of(const std::string& key, const std::string& value,
              std::initializer_list<std::string> allowed) const {
    if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
      RN_FAIL(origin(key) << ": '" << key << "' must be one of "
                          << join(std::vector<std::string>(allowed)) << "; got " << show(value));
    }
  }

  const Config& config_;
  const std::map<std::string, std::string>& origins_;
};

// Emits every key; strings are always quoted so that values such as "true", "~" or "" read
// back as the same strings.
class Writer {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}

  void field(const char* key, const std::string& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
  }
  void field(const char* key, bool v) { out_ << YAML::Key << key << YAML::Value << v; }
  void field(const char* key, double v) {
    out_ << YAML::Key << key << YAML::Value << format_double(v);
  }
  void field(const char* key, const std::vector<double>& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double x : v) out_ << format_double(x);
    out_ << YAML::EndSeq;
  }
  template <typename T>
  void field(const char* key, T v) {
    out_ << YAML::Key << key << YAML::Value << v;
  }

  void field(const char* key, const std::vector<int>& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (int x : v) out_ << x;
    out_ << YAML::EndSeq;
  }
  // Unset optional fields are left out.
  template <typename T>
  void field(const char* key, const std::optional<T>& v) {
    if (v) field(key, *v);
  }

  void field(const char* key, const std::vector<EnsembleMember>& members) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginSeq;
    for (const auto& m : members) {
      out_ << YAML::BeginMap;
      field("name", m.name);
      field("model", m.model);
      if (m.seed) field("seed", *m.seed);
      field("weight", m.weight);
      field("ranks", m.ranks);
      if (!m.overrides.empty())
        out_ << YAML::Key << "overrides" << YAML::Value << YAML::Load(m.overrides);
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
  }

  template <typename S>
  void section(const char* key, S& value) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    visit(value, *this);
    out_ << YAML::EndMap;
  }
  // A config without an ensemble is written as before ensembles existed.
  void section(const char* key, EnsembleConfig& value) {
    if (value.members.empty()) return;
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    visit(value, *this);
    out_ << YAML::EndMap;
  }

 private:
  YAML::Emitter& out_;
};

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides) {
  Config config;
  config.source = source_name;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    RN_FAIL(source_name << ":" << e.mark.line + 1 << ":" << e.mark.column + 1
                        << ": malformed YAML: " << e.msg);
  } catch (const YAML::Exception& e) {
    RN_FAIL(source_name << ": malformed YAML: " << e.msg);
  }
  std::map<std::string, std::string> origins;
  read_section(root, config, "", ReadContext{source_name, &origins});
  for (const auto& override_text : overrides) apply_override(config, override_text, origins);
  Validator(config, origins).check();
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    RN_FAIL(path << ": cannot read config file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) RN_FAIL(path << ": cannot read config file: " << std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) RN_FAIL(path << ": cannot read config file: " << std::strerror(errno));
  return parse_config(text.str(), path, overrides);
}

std::vector<Config> member_configs(const Config& config) {
  std::vector<Config> members;
  for (const EnsembleMember& m : config.ensemble.members) {
    Config c = config;
    c.ensemble = EnsembleConfig{};
    c.source = config.source + ": ensemble member '" + m.name + "'";
    std::map<std::string, std::string> origins;
    if (!m.overrides.empty())
      read_section(YAML::Load(m.overrides), c, "", ReadContext{c.source, &origins});
    if (!m.model.empty()) c.model.name = m.model;
    if (m.seed) c.train.seed = *m.seed;
    c.run_dir = (std::filesystem::path(config.run_dir) / m.name).string();
    Validator(c, origins).check();
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

namespace {

// The text of a field as models::set_spec_field reads it.
std::string field_text(const std::string& v) {
  return v;
}
std::string field_text(int v) {
  return std::to_string(v);
}
std::string field_text(double v) {
  return format_double(v);
}
std::string field_text(bool v) {
  return v ? "true" : "false";
}
std::string field_text(const std::vector<int>& v) {
  return models::stage_list(v);
}

// Whether any spec field of a ModelConfig is set.
struct FieldPresence {
  explicit FieldPresence(bool& any) : any_(any) {}
  template <typename T>
  void field(const char*, T&) {}
  template <typename T>
  void field(const char*, std::optional<T>& v) {
    any_ = any_ || v.has_value();
  }
  bool& any_;
};

// Applies the set fields of a ModelConfig to a spec, in schema order.
class SpecApplier {
 public:
  explicit SpecApplier(models::ModelSpec& spec) : spec_(spec) {}
  template <typename T>
  void field(const char*, T&) {}  // name, in_channels, ...: not spec fields
  template <typename T>
  void field(const char* key, std::optional<T>& v) {
    if (!v) return;
    const std::string dotted_key = std::string("model.") + key;
    try {
      models::set_spec_field(spec_, key, field_text(*v), dotted_key);
    } catch (const Error& e) {
      throw ModelFieldError(e.what(), dotted_key);
    }
  }

 private:
  models::ModelSpec& spec_;
};

}  // namespace

std::string model_name_of(const ModelConfig& model) {
  ModelConfig copy = model;
  bool any_field = false;
  FieldPresence presence(any_field);
  visit(copy, presence);
  // A name alone is checked against the zoo when the model is built.
  if (!any_field) return model.name;
  models::ModelSpec spec;
  if (model.name == "custom") {
    spec.in_channels = model.in_channels;
    spec.num_classes = model.num_classes;
  } else {
    if (model.name.find('{') != std::string::npos)
      RN_FAIL("'model.name' must be a zoo name or custom (give the fields under 'model:'), got '"
              << model.name << "'");
    spec = models::model_spec(model.name, model.in_channels, model.num_classes);
  }
  SpecApplier applier(spec);
  visit(copy, applier);
  models::validate_spec(spec);
  return models::model_name(model.name, spec);
}

std::string to_yaml(const Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Config copy = config;  // the schema visitors take mutable references
  Writer writer(out);
  visit(copy, writer);
  out << YAML::EndMap;
  RN_CHECK(out.good(), "[config] YAML emitter failed: " << out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace rn::launch

// Reading the YAML job configuration (files, --set overrides, an ensemble member's overrides)
// and writing it back; the checks and types are config_validate.cpp's.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "core/check.h"
#include "launch/train/config.h"
#include "launch/train/config_schema.h"

namespace rn::launch {
namespace config_schema {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string dotted(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string format_double(double v) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, result.ptr);
}

namespace {

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

// A name from a fixed set: read as its text; validation checks it and gives it its value.
template <typename E>
void decode(const YAML::Node& node, const std::string& key, const ReadContext& ctx,
            Choice<E>& out) {
  decode(node, key, ctx, out.name);
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
  template <typename E>
  void field(const char* key, const Choice<E>& v) {
    field(key, v.name);
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

void read_mapping(Config& config, const std::string& yaml_text, const std::string& origin,
                  Origins& origins) {
  read_section(YAML::Load(yaml_text), config, "", ReadContext{origin, &origins});
}

}  // namespace config_schema

using namespace config_schema;

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides, const AutoFacts& facts) {
  Config config;
  config.source = source_name;
  config.facts.value = facts;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    RN_FAIL(source_name << ":" << e.mark.line + 1 << ":" << e.mark.column + 1
                        << ": malformed YAML: " << e.msg);
  } catch (const YAML::Exception& e) {
    RN_FAIL(source_name << ": malformed YAML: " << e.msg);
  }
  Origins origins;
  read_section(root, config, "", ReadContext{source_name, &origins});
  for (const auto& override_text : overrides) apply_override(config, override_text, origins);
  validate(config, origins, "'model.name'");
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   const AutoFacts& facts) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    RN_FAIL(path << ": cannot read config file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) RN_FAIL(path << ": cannot read config file: " << std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) RN_FAIL(path << ": cannot read config file: " << std::strerror(errno));
  return parse_config(text.str(), path, overrides, facts);
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

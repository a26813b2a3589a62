// Checking the job configuration's final values, once every file and override is read, and
// typing them: each Choice's value, the network's models::ModelSpec.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <set>
#include <span>

#include "core/check.h"
#include "core/models/model_spec.h"
#include "launch/train/config.h"
#include "launch/train/config_schema.h"

namespace rn::launch {
namespace config_schema {
namespace {

// A bad field of the model section, with its dotted key.
struct ModelFieldError : Error {
  ModelFieldError(const std::string& message, std::string k) : Error(message), key(std::move(k)) {}
  std::string key;
};

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
}  // namespace config_schema

using namespace config_schema;

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

namespace config_schema {
namespace {

// Range checks, run once on the final values so that an override can fix a file's value.
class Validator {
 public:
  Validator(Config& config, const Origins& origins, const char* model_label)
      : config_(config), origins_(origins), model_label_(model_label) {}

  void check() {
    Config& c = config_;
    require(!c.run_dir.empty(), "run_dir", "a non-empty path", c.run_dir);

    require(!c.model.name.empty(), "model.name", "a model name", c.model.name);
    require(c.model.in_channels >= 1, "model.in_channels", "at least 1", c.model.in_channels);
    require(c.model.num_classes >= 1, "model.num_classes", "at least 1", c.model.num_classes);
    const std::string model_name = check_model(c.model);
    check_data(c.data);
    check_optim(c.optim);
    check_train(c.train, c.facts.value);
    check_distributed(c.distributed);
    check_checkpoint(c.checkpoint);
    check_ensemble(c.ensemble);
    // The network, resolved once (an ensemble's members each again in member_configs).
    resolve_model(c.model, model_name);
  }

 private:
  void check_data(DataConfig& d) {
    one_of("data.kind", d.kind,
           {{"fashion_mnist", DataKind::fashion_mnist},
            {"cifar10", DataKind::cifar10},
            {"cifar100", DataKind::cifar100},
            {"image_folder", DataKind::image_folder},
            {"packed", DataKind::packed},
            {"synthetic", DataKind::synthetic}});
    if (d.kind.value != DataKind::synthetic)
      require(!d.root.empty(), "data.root", "a directory", d.root);
    check_augment(d.augment, d.kind.value);
    one_of("data.labels", d.labels, {{"fine", CifarLabels::fine}, {"coarse", CifarLabels::coarse}});
    one_of(
        "data.on_bad_sample", d.on_bad_sample,
        {{"substitute", io::BadSamplePolicy::substitute}, {"error", io::BadSamplePolicy::error}});
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
  }

  void check_augment(AugmentConfig& a, DataKind kind) {
    if (is_encoded(kind))
      one_of("data.augment.recipe", a.recipe,
             {{"resnet", io::Recipe::resnet},
              {"torchvision", io::Recipe::torchvision},
              {"none", io::Recipe::none}});
    else
      one_of("data.augment.recipe", a.recipe,
             {{"pad_crop", io::Recipe::pad_crop}, {"none", io::Recipe::none}});
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
  }

  void check_optim(OptimConfig& o) {
    one_of("optim.name", o.name,
           {{"sgd", optim::OptimizerKind::sgd}, {"lars", optim::OptimizerKind::lars}});
    require(std::isfinite(o.lr) && o.lr > 0, "optim.lr", "a positive number", o.lr);
    require(o.momentum >= 0 && o.momentum < 1, "optim.momentum", "in [0, 1)", o.momentum);
    require(!o.nesterov || o.momentum > 0, "optim.momentum", "above 0 when optim.nesterov is true",
            o.momentum);
    require(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "optim.weight_decay", "0 or more",
            o.weight_decay);
    require(o.label_smoothing >= 0 && o.label_smoothing < 1, "optim.label_smoothing", "in [0, 1)",
            o.label_smoothing);
    one_of("optim.schedule", o.schedule,
           {{"multistep", optim::ScheduleKind::multistep},
            {"cosine", optim::ScheduleKind::cosine},
            {"constant", optim::ScheduleKind::constant}});
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
  }

  void check_train(TrainConfig& t, const AutoFacts& facts) {
    require(t.epochs >= 1, "train.epochs", "at least 1", t.epochs);
    require(t.max_steps >= 0, "train.max_steps", "0 (no limit) or more", t.max_steps);
    const DeviceKind gpu_or_cpu = facts.gpus ? DeviceKind::cuda : DeviceKind::cpu;
    one_of("train.device", t.device,
           {{"cpu", DeviceKind::cpu}, {"cuda", DeviceKind::cuda}, {"auto", gpu_or_cpu}});
    const bool bf16 = t.device.value == DeviceKind::cuda || facts.cpu_bf16;
    one_of("train.precision", t.precision,
           {{"fp32", DType::f32},
            {"bf16", DType::bf16},
            {"fp16", DType::f16},
            {"auto", bf16 ? DType::bf16 : DType::f32}});
    one_of("train.conv_algorithm", t.conv_algorithm,
           std::span<const std::pair<const char*, ConvAlgorithm>>(kConvAlgorithmNames));
    t.auto_choices.value = explain_auto(t, facts);
    require(t.threads >= 0, "train.threads", "0 (automatic) or more", t.threads);
    require(t.log_every >= 1, "train.log_every", "at least 1", t.log_every);
  }

  void check_distributed(const DistributedConfig& dp) {
    require(std::isfinite(dp.bucket_mib) && dp.bucket_mib > 0, "distributed.bucket_mib",
            "a positive number of MiB", dp.bucket_mib);
    require(std::isfinite(dp.first_bucket_mib) && dp.first_bucket_mib > 0,
            "distributed.first_bucket_mib", "a positive number of MiB", dp.first_bucket_mib);
    require(std::isfinite(dp.timeout_s) && dp.timeout_s >= 0, "distributed.timeout_s",
            "0 (no limit) or more seconds", dp.timeout_s);
  }

  void check_checkpoint(const CheckpointConfig& k) {
    require(k.every_epochs >= 0, "checkpoint.every_epochs", "0 (off) or more", k.every_epochs);
    require(k.every_steps >= 0, "checkpoint.every_steps", "0 (off) or more", k.every_steps);
    require(k.keep_last >= 1, "checkpoint.keep_last", "at least 1", k.keep_last);
  }

  // The model's fields, one at a time (the message names the field and where it was set), then
  // the spec as a whole.
  std::string check_model(const ModelConfig& m) const {
    try {
      return model_name_of(m);
    } catch (const ModelFieldError& e) {
      RN_FAIL(origin(e.key) << ": " << e.what());
    } catch (const Error& e) {
      RN_FAIL(origin("model.name") << ": 'model': " << e.what());
    }
  }

  // The spec of the network the fields describe, `name` as check_model gave it (a name the zoo
  // does not know fails here, named as the config's source says it).
  void resolve_model(ModelConfig& m, const std::string& name) const {
    models::ModelSpec& spec = m.resolved.value;
    try {
      spec = models::model_spec(name, m.in_channels, m.num_classes);
    } catch (const Error& e) {
      RN_FAIL(config_.source << ": " << model_label_ << ": " << e.what());
    }
    spec.zero_init_residual = m.zero_init_residual;
  }

  void check_ensemble(EnsembleConfig& e) const {
    one_of("ensemble.split", e.split,
           {{"equal", distributed::GroupSplit::equal},
            {"macs", distributed::GroupSplit::proportional}});
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

  // One line for each `auto` of `t`: what it became and why.
  static std::vector<std::string> explain_auto(const TrainConfig& t, const AutoFacts& facts) {
    std::vector<std::string> lines;
    const bool on_gpu = t.device.value == DeviceKind::cuda;
    if (t.device == "auto")
      lines.push_back(on_gpu ? "train.device auto: cuda, every rank has a GPU of its own"
                             : "train.device auto: cpu, " +
                                   (facts.no_gpu.empty() ? "no GPU" : facts.no_gpu));
    if (t.precision == "auto") {
      const std::string why =
          facts.cpu_bf16_why.empty() ? "no facts about the CPU were given" : facts.cpu_bf16_why;
      lines.push_back(on_gpu           ? std::string("train.precision auto: bf16, on the GPU")
                      : facts.cpu_bf16 ? "train.precision auto: bf16, " + why
                                       : "train.precision auto: fp32, " + why);
    }
    return lines;
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

  // The value of `choice`'s name among `names`, or one line listing the names.
  template <typename E>
  void one_of(const std::string& key, Choice<E>& choice,
              std::initializer_list<std::pair<const char*, E>> names) const {
    one_of(key, choice, std::span<const std::pair<const char*, E>>(names.begin(), names.size()));
  }
  template <typename E>
  void one_of(const std::string& key, Choice<E>& choice,
              std::span<const std::pair<const char*, E>> names) const {
    std::vector<std::string> all;
    for (const auto& [name, value] : names) {
      if (choice.name == name) {
        choice.value = value;
        return;
      }
      all.emplace_back(name);
    }
    RN_FAIL(origin(key) << ": '" << key << "' must be one of " << join(all) << "; got "
                        << show(choice.name));
  }

  Config& config_;
  const Origins& origins_;
  const char* model_label_;
};

}  // namespace

void validate(Config& config, const Origins& origins, const char* model_label) {
  Validator(config, origins, model_label).check();
}

}  // namespace config_schema

AutoFacts auto_facts(const distributed::RankEnvironment& env) {
  return AutoFacts{.gpus = env.gpus_everywhere,
                   .no_gpu = env.why_no_gpu,
                   .cpu_bf16 = env.cpu_bf16_everywhere,
                   .cpu_bf16_why = env.cpu_bf16_why};
}

}  // namespace rn::launch

// The job configuration: YAML files plus `--set key=value` overrides, read into validated structs
// whose enumerations are types (Choice) and whose network is a resolved models::ModelSpec, so
// that nothing after validation reads a config string again.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/backend/ops.h"
#include "core/models/model_spec.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/optimizer.h"
#include "core/tensor.h"
#include "distributed/rank_environment.h"
#include "distributed/rank_groups.h"
#include "io/image_transform.h"
#include "io/loader.h"

namespace rn::launch {

// A value from a fixed set of names (train.device: cpu | cuda): read from and written to YAML as
// its name, and typed by validation, which refuses any other name. Code after validation reads
// `value`; equality is by name, so that a config compares equal to its own YAML read back.
template <typename E>
struct Choice {
  std::string name;
  E value{};
  Choice& operator=(const std::string& n) {
    name = n;
    return *this;
  }
  bool operator==(const Choice& o) const { return name == o.name; }
  bool operator==(const std::string& n) const { return name == n; }
  bool operator==(const char* n) const { return name == n; }
};
template <typename E>
std::ostream& operator<<(std::ostream& os, const Choice<E>& c) {
  return os << c.name;
}

// A value derived from a config's keys by validation, not a key of its own: it takes no part in
// comparing configs (their keys decide that).
template <typename T>
struct Derived {
  T value{};
  bool operator==(const Derived&) const { return true; }
};

enum class DataKind { fashion_mnist, cifar10, cifar100, image_folder, packed, synthetic };
// Image folders and packed files hold encoded images (decoded and augmented per sample); the
// other sets are decoded arrays in memory.
inline bool is_encoded(DataKind k) {
  return k == DataKind::image_folder || k == DataKind::packed;
}
enum class CifarLabels { fine, coarse };

// The network: a zoo name, and optionally the fields of its spec that differ from the named
// network's ("custom" starts from nothing and needs block, blocks and widths). Unset fields keep
// the named network's values.
struct ModelConfig {
  std::string name = "resnet20";  // a zoo name or "custom"
  int in_channels = 3;
  int num_classes = 10;
  bool zero_init_residual = false;   // last BN of each residual branch starts at gamma = 0
  std::optional<std::string> block;  // basic | bottleneck
  std::optional<std::vector<int>> blocks, widths;  // units and widths per stage
  std::optional<int> groups, width_per_group;      // bottleneck: cardinality, width per group
  std::optional<std::string> stem;                 // cifar | imagenet
  std::optional<int> stem_channels;
  std::optional<std::string> unit;             // original | bn_after_add | relu_before_add | ...
  std::optional<std::string> shortcut;         // identity | scale_shortcut | ... | dropout
  std::optional<std::string> shortcut_option;  // A | B | C: where the shape changes
  std::optional<double> shortcut_scale, gate_bias, shortcut_dropout;
  std::optional<bool> plain, stride_on_3x3;
  // The network all of the above describe, resolved by validation.
  Derived<models::ModelSpec> resolved;
  const models::ModelSpec& spec() const { return resolved.value; }
  bool operator==(const ModelConfig&) const = default;
};

// Training augmentation. `recipe` pad_crop is for the in-memory sets (Fashion-MNIST, CIFAR,
// synthetic); resnet, torchvision and none for the encoded ones (image_folder, packed).
struct AugmentConfig {
  Choice<io::Recipe> recipe{"pad_crop", io::Recipe::pad_crop};  // pad_crop | resnet | ...
  int crop_pad = 0;                      // pad_crop: pad by this many pixels, then crop back
  bool hflip = false;                    // mirror left-right with probability 1/2
  int crop = 224;                        // resnet, torchvision: output side
  std::vector<double> scale{0.08, 1.0};  // torchvision: area fraction range
  std::vector<double> ratio{3.0 / 4.0, 4.0 / 3.0};  // torchvision: aspect ratio range
  std::vector<double> shorter{256, 480};            // resnet: shorter side range
  double lighting = 0;  // AlexNet PCA lighting std (fb.resnet.torch: 0.1); 0 = off
  bool operator==(const AugmentConfig&) const = default;
};

struct DataConfig {
  // fashion_mnist | cifar10 | cifar100 | image_folder | packed | synthetic
  Choice<DataKind> kind{"fashion_mnist", DataKind::fashion_mnist};
  std::string root = "/usr/share/datasets/fashion-mnist";
  int batch_size = 128;  // per rank
  int test_batch_size = 500;
  int64_t train_limit = 0;  // use only the first N samples; 0 = all
  int64_t test_limit = 0;
  int workers = 1;   // loader threads per rank
  int prefetch = 4;  // batches queued ahead of the trainer
  AugmentConfig augment;
  Choice<CifarLabels> labels{"fine", CifarLabels::fine};  // cifar100: fine (100) | coarse (20)
  // substitute (warn, count) | error
  Choice<io::BadSamplePolicy> on_bad_sample{"substitute", io::BadSamplePolicy::substitute};
  std::vector<double> mean, std;  // per channel of pixel / 255; empty: the training set's
                                  // (in-memory sets) or ImageNet's (encoded sets)
  int eval_resize = 256;          // encoded sets: evaluation resizes the shorter side to this
  int eval_crop = 224;            // and takes the centre crop (or ten crops) of this side
  int synthetic_size = 1024;      // synthetic only: samples in the data set
  int height = 28;                // synthetic only: image size
  int width = 28;
  bool operator==(const DataConfig&) const = default;
};

struct OptimConfig {
  Choice<optim::OptimizerKind> name{"sgd", optim::OptimizerKind::sgd};  // sgd | lars
  double lr = 0.1;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 1e-4;
  bool decay_bn_and_bias = true;  // false exempts BN parameters and biases from weight decay
  double label_smoothing = 0.0;
  // multistep | cosine | constant
  Choice<optim::ScheduleKind> schedule{"multistep", optim::ScheduleKind::multistep};
  std::vector<double> milestones;  // epochs, may be fractional
  double gamma = 0.1;
  double warmup_epochs = 0;
  // Multiply lr by the number of ranks (Goyal et al. 2017's linear scaling rule, for the global
  // batch of ranks x data.batch_size); pair it with warmup_epochs.
  bool scale_lr = false;
  bool operator==(const OptimConfig&) const = default;
};

// What `auto` stands for in train.device and train.precision on this job: facts that every rank
// agrees on, from the rank environment (auto_facts). A config read without them (tests, tools)
// has no GPU and no bf16 on the CPU, so `auto` is the CPU in fp32 there.
struct AutoFacts {
  bool gpus = false;         // every rank has a GPU of its own
  std::string no_gpu;        // why not, where not: "rank 1 sees no GPU"
  bool cpu_bf16 = false;     // bf16 is faster than fp32 on every rank's CPU (cpu_bf16_verdict)
  std::string cpu_bf16_why;  // why, or why not: "this CPU has AMX (oneDNN: avx512_core_amx)"
};
AutoFacts auto_facts(const distributed::RankEnvironment& env);

// The names of train.conv_algorithm (and of bench --conv-algorithm), in the order errors list
// them.
inline constexpr std::pair<const char*, ConvAlgorithm> kConvAlgorithmNames[] = {
    {"auto", ConvAlgorithm::automatic},
    {"direct", ConvAlgorithm::direct},
    {"winograd", ConvAlgorithm::winograd}};

struct TrainConfig {
  int epochs = 1;
  int64_t max_steps = 0;  // 0 = no limit
  uint64_t seed = 0;
  // cpu | cuda | auto: this rank's GPU where every rank has one of its own, else the CPU
  Choice<DeviceKind> device{"cpu", DeviceKind::cpu};
  // fp32 | bf16 | fp16: the activations. auto: bf16 on a GPU or where bf16 is faster than fp32
  // on every rank's CPU (AMX; AVX512-BF16 where measured faster), else fp32. Explicit values
  // are refused where they cannot run.
  Choice<DType> precision{"fp32", DType::f32};
  // auto | direct | winograd: how the CPU computes fp32 3x3 convolutions of stride 1
  // (ConvAlgorithm); auto takes Winograd per layer and pass where it is faster.
  Choice<ConvAlgorithm> conv_algorithm{"auto", ConvAlgorithm::automatic};
  int threads = 0;     // CPU threads per rank; 0 = this node's cores divided by its ranks
  int log_every = 50;  // steps between progress lines
  // What each `auto` above became and why, one line each, for the job's first lines.
  Derived<std::vector<std::string>> auto_choices;
  bool operator==(const TrainConfig&) const = default;
};

// Data-parallel training across MPI ranks.
struct DistributedConfig {
  bool sync_bn = false;         // batch statistics over the global batch (every rank's samples)
  double bucket_mib = 25;       // gradient all-reduce bucket size
  double first_bucket_mib = 1;  // the first (last layers') bucket, small so it starts early
  double timeout_s = 300;       // a collective waiting longer aborts the job; 0 = wait forever
  bool operator==(const DistributedConfig&) const = default;
};

struct CheckpointConfig {
  int every_epochs = 1;     // 0 = off; a checkpoint is also written when training ends
  int64_t every_steps = 0;  // 0 = off
  int keep_last = 3;
  bool operator==(const CheckpointConfig&) const = default;
};

// One member of an ensemble: the base config (file and --set) with this member's model, seed and
// overrides; it trains in run_dir/<name>/.
struct EnsembleMember {
  std::string name;              // a folder name: letters, digits, '_', '-', '.'
  std::string model;             // a zoo name; "" keeps the base config's model.name
  std::optional<uint64_t> seed;  // train.seed; unset keeps the base config's
  double weight = 1;             // its share in the ensemble's mean of probabilities
  int ranks = 0;                 // ranks of its group; 0 = by ensemble.split
  std::string overrides;         // a YAML mapping shaped like the config ("" = none)
  bool operator==(const EnsembleMember&) const = default;
};

struct EnsembleConfig {
  // equal | macs: group sizes by multiply-adds x epochs
  Choice<distributed::GroupSplit> split{"equal", distributed::GroupSplit::equal};
  std::vector<EnsembleMember> members;  // empty: the job trains one model
  bool operator==(const EnsembleConfig&) const = default;
};

struct Config {
  std::string run_dir = "runs/default";
  ModelConfig model;
  DataConfig data;
  OptimConfig optim;
  TrainConfig train;
  DistributedConfig distributed;
  CheckpointConfig checkpoint;
  EnsembleConfig ensemble;
  std::string source;        // where the config came from (a file path), for messages
  Derived<AutoFacts> facts;  // what `auto` is decided by (kept for the ensemble's members)
  bool operator==(const Config&) const = default;
};

// Reads the YAML file at `path`, applies `overrides` ("key.sub=value", the value parsed as
// YAML, so `optim.milestones=[5,8]` works) in order, and validates the result. Every problem
// throws rn::Error with one line naming the file (or the override) and the dotted key. `facts`
// decide what `auto` becomes.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {},
                   const AutoFacts& facts = {});

// As load_config, from text already in memory; `source_name` stands for the file in messages.
Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides = {}, const AutoFacts& facts = {});

// The config of each member of `config`'s ensemble, in order: the base config with the member's
// model, seed and overrides applied, run_dir/<name> as its run_dir and no ensemble of its own,
// validated as a whole config (errors name the file and the member). Keys that decide the test
// set (data.kind, data.root, ..., model.num_classes) must not differ between members: they are
// evaluated together on one test set.
std::vector<Config> member_configs(const Config& config);

// The network `model` describes, as a name models::model_spec reads back: the zoo name alone,
// or with the changed fields ("resnet56{shortcut=exclusive_gate gate_bias=-6}"). Errors name
// the field ("'model.blocks' must be ..."). Validation keeps the resolved spec in model.spec.
std::string model_name_of(const ModelConfig& model);

// The resolved config as YAML (every key, defaults included); parse_config of it gives an
// equal Config. Stored in checkpoints and run directories so a run can be reproduced.
std::string to_yaml(const Config& config);

}  // namespace rn::launch

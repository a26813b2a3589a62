// Tests of the YAML config: the shipped recipes, defaults, overrides, round trips and the
// one-line messages for every kind of bad input.
#include "launch/train/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/check.h"
#include "tests/error_of.h"

namespace rn::launch {
namespace {

namespace fs = std::filesystem;

using rn::test::error_of;

std::string parse_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { parse_config(yaml, "configs/x.yaml", overrides); });
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A file under the system temp directory, removed at the end of the test.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text)
      : path_(fs::temp_directory_path() / ("rn_config_test_" + name)) {
    std::ofstream(path_) << text;
  }
  ~TempFile() { fs::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

std::vector<fs::path> shipped_configs() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(fs::path(RN_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  }
  return files;
}

TEST(Config, EveryShippedConfigLoadsAndRoundTrips) {
  const auto files = shipped_configs();
  ASSERT_GE(files.size(), 6u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    Config config;
    ASSERT_NO_THROW(config = load_config(file.string()));
    EXPECT_EQ(config.source, file.string());
    const std::string stem = file.stem().string();
    // The data set is the file's first word; ImageNet is read as an image folder.
    std::string prefix = stem.substr(0, stem.find('_'));
    if (prefix == "fashion") prefix = "fashion_mnist";
    EXPECT_EQ(config.data.kind, prefix == "imagenet" ? "image_folder" : prefix);
    EXPECT_EQ(config.model.in_channels, prefix == "fashion_mnist" ? 1 : 3);
    EXPECT_EQ(config.model.num_classes, prefix == "imagenet"   ? 1000
                                        : prefix == "cifar100" ? 100
                                                               : 10);
    EXPECT_EQ(config.run_dir, "runs/" + stem);
    // The CIFAR papers' schedule: decays at 50% and 75% of training; the default job's short
    // budget takes a cosine decay instead. ImageNet recipes decay every 30 epochs.
    if (prefix == "imagenet") {
      ASSERT_FALSE(config.optim.milestones.empty());
      EXPECT_DOUBLE_EQ(config.optim.milestones[0], 30);
    } else if (config.optim.schedule == "multistep") {
      ASSERT_EQ(config.optim.milestones.size(), 2u);
      EXPECT_DOUBLE_EQ(config.optim.milestones[0], 0.5 * config.train.epochs);
      EXPECT_DOUBLE_EQ(config.optim.milestones[1], 0.75 * config.train.epochs);
    } else {
      // The default job and the ensemble of its recipe.
      EXPECT_TRUE(file.filename() == "fashion_mnist_resnet20.yaml" ||
                  file.filename() == "fashion_mnist_ensemble.yaml")
          << file;
      EXPECT_EQ(config.optim.schedule, "cosine");
    }
    if (!config.ensemble.members.empty()) {
      std::vector<Config> members;
      ASSERT_NO_THROW(members = member_configs(config));
      for (const auto& m : members) EXPECT_EQ(m.run_dir.rfind(config.run_dir + "/", 0), 0u);
    }
    EXPECT_EQ(parse_config(to_yaml(config), config.source, {}), config);
  }
}

TEST(Config, DefaultJobIsResnet20OnFashionMnist) {
  const Config c = load_config(std::string(RN_SOURCE_DIR) + "/configs/fashion_mnist_resnet20.yaml");
  EXPECT_EQ(c.model.name, "resnet20");
  EXPECT_EQ(c.run_dir, "runs/fashion_mnist_resnet20");
  EXPECT_EQ(c.data.batch_size, 64);  // per rank, on the default job's 2 ranks
  EXPECT_EQ(c.data.augment.crop_pad, 2);
  EXPECT_TRUE(c.data.augment.hflip);
  // 8 epochs with a cosine decay fit the default job's 10-minute budget on a 2-core CPU.
  EXPECT_EQ(c.train.epochs, 8);
  EXPECT_EQ(c.optim.lr, 0.1);
  EXPECT_EQ(c.optim.momentum, 0.9);
  EXPECT_EQ(c.optim.weight_decay, 5e-4);
  EXPECT_EQ(c.optim.schedule, "cosine");
  EXPECT_TRUE(c.optim.milestones.empty());
}

TEST(Config, EmptyTextGivesTheDefaults) {
  Config expected;
  expected.source = "configs/x.yaml";
  EXPECT_EQ(parse_config("", "configs/x.yaml", {}), expected);
  EXPECT_EQ(parse_config("# nothing but a comment\n", "configs/x.yaml", {}), expected);
  EXPECT_EQ(parse_config("optim:\ndata:\n  augment:\n", "configs/x.yaml", {}), expected);
  EXPECT_EQ(expected.model.name, "resnet20");
  EXPECT_EQ(expected.data.kind, "fashion_mnist");
  EXPECT_EQ(expected.data.batch_size, 128);
  EXPECT_EQ(expected.optim.schedule, "multistep");
  EXPECT_EQ(expected.train.device, "cpu");
  EXPECT_EQ(expected.checkpoint.keep_last, 3);
}

TEST(Config, KeysAbsentFromTheFileKeepTheirDefaults) {
  const Config c = parse_config("optim:\n  lr: 0.05\ndata:\n  augment: {hflip: true}\n", "x", {});
  EXPECT_EQ(c.optim.lr, 0.05);
  EXPECT_EQ(c.optim.momentum, 0.9);
  EXPECT_TRUE(c.data.augment.hflip);
  EXPECT_EQ(c.data.augment.crop_pad, 0);
  EXPECT_EQ(c.data.batch_size, 128);
  EXPECT_FALSE(c.distributed.sync_bn);
  EXPECT_EQ(c.distributed.timeout_s, 300);
  EXPECT_EQ(c.distributed.bucket_mib, 25);
  EXPECT_EQ(c.distributed.first_bucket_mib, 1);
}

TEST(Config, ReadsEveryType) {
  const Config c = parse_config(R"(
run_dir: runs/typed
model: {name: plain20, in_channels: 1, num_classes: 7, zero_init_residual: true}
data: {kind: synthetic, train_limit: 10000000000, synthetic_size: 64, height: 8, width: 6}
optim: {nesterov: true, weight_decay: 5.0e-4, milestones: [0.5, 1, 2.25], schedule: cosine}
train: {seed: 18446744073709551615, max_steps: 12, precision: bf16, device: cuda}
)",
                                "x", {});
  EXPECT_EQ(c.model.name, "plain20");
  EXPECT_EQ(c.model.num_classes, 7);
  EXPECT_TRUE(c.model.zero_init_residual);
  EXPECT_EQ(c.data.kind, "synthetic");
  EXPECT_EQ(c.data.train_limit, 10000000000);
  EXPECT_EQ(c.data.width, 6);
  EXPECT_TRUE(c.optim.nesterov);
  EXPECT_EQ(c.optim.weight_decay, 5e-4);
  EXPECT_EQ(c.optim.milestones, (std::vector<double>{0.5, 1, 2.25}));
  EXPECT_EQ(c.train.seed, 18446744073709551615ull);
  EXPECT_EQ(c.train.max_steps, 12);
  EXPECT_EQ(c.train.precision, "bf16");
}

TEST(Config, OverridesApplyInOrderOnTopOfTheFile) {
  const Config c = parse_config(
      "optim: {lr: 0.1, momentum: 0.8}\n", "x",
      {"optim.lr=0.2", "optim.lr=0.05", "data.augment.hflip=true", "optim.milestones=[3, 4.5]",
       "run_dir=runs/other", "train.epochs = 6", "model={name: resnet56}"});
  EXPECT_EQ(c.optim.lr, 0.05);
  EXPECT_EQ(c.optim.momentum, 0.8);
  EXPECT_TRUE(c.data.augment.hflip);
  EXPECT_EQ(c.optim.milestones, (std::vector<double>{3, 4.5}));
  EXPECT_EQ(c.run_dir, "runs/other");
  EXPECT_EQ(c.train.epochs, 6);
  EXPECT_EQ(c.model.name, "resnet56");
  EXPECT_EQ(c.model.in_channels, 3);
}

TEST(Config, AnOverrideCanRepairAFileValue) {
  EXPECT_NE(parse_error("optim: {lr: -1}\n"), "");
  EXPECT_EQ(parse_config("optim: {lr: -1}\n", "x", {"optim.lr=0.1"}).optim.lr, 0.1);
}

TEST(Config, LoadConfigReadsTheFileAndAppliesOverrides) {
  TempFile file("load.yaml", "train:\n  epochs: 4\n");
  const Config c = load_config(file.path(), {"train.seed=7"});
  EXPECT_EQ(c.source, file.path());
  EXPECT_EQ(c.train.epochs, 4);
  EXPECT_EQ(c.train.seed, 7u);
}

// `auto` device and precision: decided by the job's facts when the config is read, said in one
// line each, written back as `auto`; explicit values ignore the facts.
TEST(Config, AutoDeviceAndPrecisionFollowTheJobsFacts) {
  const std::string text = "train: {device: auto, precision: auto}\n";
  const Config none = parse_config(text, "x.yaml");  // no facts: the CPU in fp32
  EXPECT_EQ(none.train.device.value, DeviceKind::cpu);
  EXPECT_EQ(none.train.precision.value, DType::f32);
  const AutoFacts no_gpu{
      .no_gpu = "rank 3 sees no GPU",
      .cpu_bf16_why = "oneDNN runs avx512_core_vnni here, without AMX or AVX512-BF16"};
  const Config cpu = parse_config(text, "x.yaml", {}, no_gpu);
  EXPECT_EQ(cpu.train.device.value, DeviceKind::cpu);
  EXPECT_EQ(cpu.train.precision.value, DType::f32);
  EXPECT_EQ(cpu.train.auto_choices.value,
            (std::vector<std::string>{
                "train.device auto: cpu, rank 3 sees no GPU",
                "train.precision auto: fp32, oneDNN runs avx512_core_vnni here, without AMX or "
                "AVX512-BF16"}));
  const AutoFacts bf16_cpu{.cpu_bf16 = true,
                           .cpu_bf16_why = "this CPU has AMX (oneDNN: avx512_core_amx)"};
  const Config amx = parse_config(text, "x.yaml", {}, bf16_cpu);
  EXPECT_EQ(amx.train.device.value, DeviceKind::cpu);
  EXPECT_EQ(amx.train.precision.value, DType::bf16);
  EXPECT_EQ(amx.train.auto_choices.value.back(),
            "train.precision auto: bf16, this CPU has AMX (oneDNN: avx512_core_amx)");
  const AutoFacts gpus{.gpus = true};
  const Config gpu = parse_config(text, "x.yaml", {}, gpus);
  EXPECT_EQ(gpu.train.device.value, DeviceKind::cuda);
  EXPECT_EQ(gpu.train.precision.value, DType::bf16);
  EXPECT_EQ(gpu.train.auto_choices.value,
            (std::vector<std::string>{"train.device auto: cuda, every rank has a GPU of its own",
                                      "train.precision auto: bf16, on the GPU"}));
  // On the CPU of a GPU job, precision auto follows the CPU.
  const Config cpu_of_gpu_job =
      parse_config("train: {device: cpu, precision: auto}\n", "x.yaml", {}, gpus);
  EXPECT_EQ(cpu_of_gpu_job.train.precision.value, DType::f32);
  EXPECT_EQ(cpu_of_gpu_job.train.auto_choices.value.size(), 1u);
  // Explicit values stay as written, whatever the facts; nothing is said about them.
  const Config strict = parse_config("train: {device: cpu, precision: bf16}\n", "x.yaml", {}, gpus);
  EXPECT_EQ(strict.train.device.value, DeviceKind::cpu);
  EXPECT_EQ(strict.train.precision.value, DType::bf16);
  EXPECT_TRUE(strict.train.auto_choices.value.empty());
  // Written back as auto, so a resumed job decides again where it runs; equal to its YAML.
  EXPECT_NE(to_yaml(gpu).find("device: \"auto\""), std::string::npos);
  EXPECT_EQ(parse_config(to_yaml(gpu), "x.yaml", {}, gpus), gpu);
  // An ensemble's members decide by the same facts.
  const Config ens = parse_config(
      text + "ensemble: {members: [{name: a}, {name: b, overrides: {train: {precision: fp32}}}]}\n",
      "x.yaml", {}, gpus);
  const std::vector<Config> members = member_configs(ens);
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].train.device.value, DeviceKind::cuda);
  EXPECT_EQ(members[0].train.precision.value, DType::bf16);
  EXPECT_EQ(members[1].train.device.value, DeviceKind::cuda);
  EXPECT_EQ(members[1].train.precision.value, DType::f32);
  // Other names are refused, auto listed among the valid ones.
  EXPECT_NE(parse_error("train: {device: gpu}\n").find("must be one of cpu, cuda, auto"),
            std::string::npos);
}

// Validation types what it checks: every enumeration is a value, the network a spec; nothing
// after it reads a config string again. An override still fixes a bad value of the file.
TEST(Config, ValidationTypesEveryChoiceAndTheNetwork) {
  const Config c = parse_config(
      "train: {device: gpu, precision: bf16, conv_algorithm: winograd}\n"
      "data: {kind: synthetic, on_bad_sample: error, augment: {recipe: none}}\n"
      "optim: {name: lars, schedule: cosine}\n"
      "model: {name: resnet56, shortcut: exclusive_gate, gate_bias: -6, zero_init_residual: "
      "true}\n",
      "configs/x.yaml", {"train.device=cuda", "ensemble.split=macs"});
  EXPECT_EQ(c.train.device.value, DeviceKind::cuda);
  EXPECT_EQ(c.train.precision.value, DType::bf16);
  EXPECT_EQ(c.train.conv_algorithm.value, ConvAlgorithm::winograd);
  EXPECT_EQ(c.data.kind.value, DataKind::synthetic);
  EXPECT_EQ(c.data.on_bad_sample.value, io::BadSamplePolicy::error);
  EXPECT_EQ(c.data.augment.recipe.value, io::Recipe::none);
  EXPECT_EQ(c.optim.name.value, optim::OptimizerKind::lars);
  EXPECT_EQ(c.optim.schedule.value, optim::ScheduleKind::cosine);
  EXPECT_EQ(c.ensemble.split.value, distributed::GroupSplit::proportional);
  const models::ModelSpec& spec = c.model.spec();
  EXPECT_EQ(spec.name, "resnet56{shortcut=exclusive_gate gate_bias=-6}");
  EXPECT_EQ(spec.variant, nn::ShortcutVariant::exclusive_gate);
  EXPECT_EQ(spec.blocks, (std::vector<int>{9, 9, 9}));
  EXPECT_TRUE(spec.zero_init_residual);
  EXPECT_EQ(spec.num_classes, 10);
  // The defaults are typed too.
  const Config d = parse_config("", "configs/x.yaml", {});
  EXPECT_EQ(d.train.precision.value, DType::f32);
  EXPECT_EQ(d.train.conv_algorithm.value, ConvAlgorithm::automatic);
  EXPECT_EQ(d.data.augment.recipe.value, io::Recipe::pad_crop);
  EXPECT_NE(parse_error("train: {conv_algorithm: fft}\n")
                .find("'train.conv_algorithm' must be one of auto, direct, winograd; got 'fft'"),
            std::string::npos);
  EXPECT_EQ(d.model.spec().name, "resnet20");
  // A network the zoo does not know is refused by validation, before anything runs.
  EXPECT_EQ(parse_error("model: {name: resnet21}\n")
                .rfind("configs/x.yaml: 'model.name': unknown model 'resnet21'; known models: ", 0),
            0u);
}

TEST(Config, ToYamlRoundTripsEveryField) {
  Config c;
  c.source = "runs/x/config.yaml";
  c.run_dir = "runs/a b: #c";
  c.model = {.name = "resnet20", .in_channels = 1, .num_classes = 1000, .zero_init_residual = true};
  c.data.kind = "synthetic";
  c.data.root = "true";  // a string YAML would read as a boolean unquoted
  c.data.train_limit = 123456789012;
  c.data.augment.crop_pad = 4;
  c.data.augment.hflip = true;
  c.optim.lr = 1.0 / 3.0;
  c.optim.weight_decay = 5e-5;
  c.optim.label_smoothing = 0.1;
  c.optim.milestones = {0.1, 1.0 / 7.0, 30};
  c.optim.schedule = "cosine";
  c.optim.warmup_epochs = 2.5;
  c.train.seed = 18446744073709551615ull;
  c.train.precision = "fp16";
  c.checkpoint.keep_last = 1;
  const std::string text = to_yaml(c);
  EXPECT_EQ(parse_config(text, c.source, {}), c) << text;
  EXPECT_TRUE(contains(text, "lr: 0.3333333333333333")) << text;
}

TEST(ConfigModel, FieldsChangeTheNamedNetwork) {
  const Config c = parse_config(
      "model: {name: resnet56, shortcut: exclusive_gate, gate_bias: -6, blocks: [2, 2, 2]}\n",
      "x.yaml");
  EXPECT_EQ(model_name_of(c.model), "resnet56{blocks=2,2,2 shortcut=exclusive_gate gate_bias=-6}");
  // A name alone stays a name; fields equal to the named network's leave it unchanged.
  EXPECT_EQ(model_name_of(parse_config("model: {name: resnet20}\n", "x.yaml").model), "resnet20");
  EXPECT_EQ(model_name_of(parse_config("model: {unit: original}\n", "x.yaml").model), "resnet20");
  // Overrides set fields too, and a whole spec starts from "custom".
  const Config custom = parse_config(
      "model: {name: custom, block: bottleneck, blocks: [1, 1], widths: [8, 16], stem: cifar, "
      "stem_channels: 8, groups: 2, width_per_group: 32}\n",
      "x.yaml", {"model.unit=full_preact"});
  const std::string name = model_name_of(custom.model);
  EXPECT_TRUE(contains(name,
                       "custom{block=bottleneck blocks=1,1 widths=8,16 groups=2 "
                       "width_per_group=32 stem=cifar stem_channels=8 unit=full_preact"))
      << name;
  // The resolved config writes the set fields only, and reads back equal.
  const std::string text = to_yaml(custom);
  EXPECT_TRUE(contains(text, "blocks: [1, 1]")) << text;
  EXPECT_FALSE(contains(text, "gate_bias")) << text;
  EXPECT_EQ(parse_config(text, custom.source), custom);
}

TEST(ConfigModel, BadFieldsNameTheFieldAndWhereItWasSet) {
  EXPECT_EQ(parse_error("model: {shortcut: gated}\n"),
            "configs/x.yaml: 'model.shortcut' must be one of identity, scale_shortcut, "
            "scale_both, exclusive_gate, shortcut_gate, conv1x1, dropout; got 'gated'");
  EXPECT_EQ(parse_error("model: {blocks: [3, 0, 3]}\n"),
            "configs/x.yaml: 'model.blocks' must be a list of positive integers, one per stage, "
            "such as [9, 9, 9]; got '3,0,3'");
  EXPECT_EQ(parse_error("model: {blocks: 3}\n"),
            "configs/x.yaml: 'model.blocks' must be a list of integers such as [9, 9, 9], got '3'");
  EXPECT_EQ(parse_error("", {"model.gate_bias=abc"}),
            "--set model.gate_bias=abc: 'model.gate_bias' must be a number, got 'abc'");
  EXPECT_EQ(parse_error("model: {unit: preact}\n", {}),
            "configs/x.yaml: 'model.unit' must be one of original, bn_after_add, "
            "relu_before_add, relu_preact, full_preact; got 'preact'");
  EXPECT_EQ(parse_error("model: {widths: [16, 32]}\n"),
            "configs/x.yaml: 'model': 'widths' must have one entry per stage (3, as 'blocks'), "
            "got 2");
  EXPECT_EQ(parse_error("model: {name: custom, block: basic}\n"),
            "configs/x.yaml: 'model': 'blocks' must list the units of each stage, such as "
            "[9, 9, 9]");
  EXPECT_EQ(parse_error("model: {name: resnet21, plain: true}\n")
                .rfind("configs/x.yaml: 'model': unknown model 'resnet21'; known models: ", 0),
            0u);
  EXPECT_EQ(parse_error("model: {shortcut_scale: 2}\n", {}),
            "configs/x.yaml: 'model': 'shortcut_scale' must be in (0, 1), got 2");
  EXPECT_TRUE(contains(parse_error("model: {depth: 20}\n"), "unknown key 'model.depth'"));
}

// --- bad input: each message is one line naming the file or override and the key.

TEST(ConfigErrors, UnknownKeyListsTheValidKeysAtItsLevel) {
  const std::string e = parse_error("optim:\n  lrr: 0.1\n");
  EXPECT_TRUE(contains(e,
                       "configs/x.yaml: unknown key 'optim.lrr'; valid keys under 'optim': "
                       "name, lr, momentum, nesterov, weight_decay"))
      << e;
  const std::string top = parse_error("epochs: 3\n");
  EXPECT_TRUE(contains(top,
                       "unknown key 'epochs'; valid keys at the top level: run_dir, model, "
                       "data, optim, train, distributed, checkpoint"))
      << top;
  const std::string nested = parse_error("data: {augment: {flip: true}}\n");
  EXPECT_TRUE(contains(nested,
                       "'data.augment.flip'; valid keys under 'data.augment': recipe, "
                       "crop_pad, hflip, crop, scale, ratio, shorter, lighting"))
      << nested;
  EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(ConfigErrors, WrongTypeNamesTheKeyAndTheValue) {
  EXPECT_EQ(parse_error("optim: {lr: abc}\n"),
            "configs/x.yaml: 'optim.lr' must be a number, got 'abc'");
  EXPECT_EQ(parse_error("train: {epochs: 1.5}\n"),
            "configs/x.yaml: 'train.epochs' must be an integer, got '1.5'");
  EXPECT_EQ(parse_error("data: {augment: {hflip: maybe}}\n"),
            "configs/x.yaml: 'data.augment.hflip' must be true or false, got 'maybe'");
  EXPECT_EQ(parse_error("model: {name: [a, b]}\n"),
            "configs/x.yaml: 'model.name' must be a string, got a list");
  EXPECT_EQ(parse_error("optim: {lr: }\n"),
            "configs/x.yaml: 'optim.lr' must be a number, got nothing");
  EXPECT_EQ(parse_error("train: {seed: -1}\n"),
            "configs/x.yaml: 'train.seed' must be a non-negative integer, got '-1'");
  EXPECT_EQ(
      parse_error("optim: {milestones: 5}\n"),
      "configs/x.yaml: 'optim.milestones' must be a list of numbers such as [5, 7.5], got '5'");
  EXPECT_EQ(parse_error("optim: {milestones: [5, x]}\n"),
            "configs/x.yaml: 'optim.milestones[1]' must be a number, got 'x'");
  EXPECT_EQ(parse_error("optim: 0.1\n"),
            "configs/x.yaml: 'optim' must be a mapping of keys to values, got '0.1'");
  EXPECT_EQ(parse_error("- a\n- b\n"),
            "configs/x.yaml: the config must be a mapping of keys to values, got a list");
}

TEST(ConfigErrors, NegativeLearningRate) {
  EXPECT_EQ(parse_error("optim: {lr: -0.1}\n"),
            "configs/x.yaml: 'optim.lr' must be a positive number, got -0.1");
}

TEST(ConfigErrors, OutOfRangeValuesNameTheirKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"optim.lr=0", "'optim.lr'"},
      {"optim.lr=nan", "'optim.lr'"},
      {"optim.lr=inf", "'optim.lr'"},
      {"optim.momentum=1", "'optim.momentum'"},
      {"optim.momentum=-0.1", "'optim.momentum'"},
      {"optim.label_smoothing=1", "'optim.label_smoothing'"},
      {"optim.gamma=0", "'optim.gamma'"},
      {"optim.weight_decay=-1e-4", "'optim.weight_decay'"},
      {"optim.warmup_epochs=-1", "'optim.warmup_epochs'"},
      {"optim.milestones=[5, 3]", "'optim.milestones'"},
      {"optim.milestones=[5, 5]", "'optim.milestones'"},
      {"optim.milestones=[-1, 3]", "'optim.milestones'"},
      {"data.batch_size=0", "'data.batch_size'"},
      {"data.test_batch_size=0", "'data.test_batch_size'"},
      {"data.workers=-1", "'data.workers'"},
      {"data.train_limit=-5", "'data.train_limit'"},
      {"data.test_limit=-5", "'data.test_limit'"},
      {"data.augment.crop_pad=-1", "'data.augment.crop_pad'"},
      {"model.in_channels=0", "'model.in_channels'"},
      {"model.num_classes=0", "'model.num_classes'"},
      {"train.epochs=0", "'train.epochs'"},
      {"train.threads=-1", "'train.threads'"},
      {"train.max_steps=-1", "'train.max_steps'"},
      {"checkpoint.keep_last=0", "'checkpoint.keep_last'"},
      {"distributed.timeout_s=-1", "'distributed.timeout_s'"},
      {"distributed.timeout_s=nan", "'distributed.timeout_s'"},
      {"distributed.bucket_mib=0", "'distributed.bucket_mib'"},
      {"distributed.first_bucket_mib=-1", "'distributed.first_bucket_mib'"},
      {"distributed.sync_bn=maybe", "'distributed.sync_bn'"},
      {"checkpoint.every_epochs=-1", "'checkpoint.every_epochs'"},
      {"checkpoint.every_steps=-2", "'checkpoint.every_steps'"},
      {"run_dir=''", "'run_dir'"},
  };
  for (const auto& [override_text, key] : cases) {
    const std::string e = parse_error("", {override_text});
    EXPECT_TRUE(contains(e, "--set " + override_text + ": " + key + " must be ")) << e;
  }
  // A value from the file is blamed on the file.
  EXPECT_TRUE(contains(parse_error("train: {epochs: 0}\n"), "configs/x.yaml: 'train.epochs'"));
}

TEST(ConfigErrors, BadEnumListsTheAllowedValues) {
  EXPECT_EQ(parse_error("data: {kind: mnist}\n"),
            "configs/x.yaml: 'data.kind' must be one of fashion_mnist, cifar10, cifar100, "
            "image_folder, packed, synthetic; got 'mnist'");
  EXPECT_TRUE(contains(parse_error("optim: {name: adam}\n"), "'optim.name' must be one of sgd"));
  EXPECT_TRUE(contains(parse_error("optim: {schedule: step}\n"),
                       "'optim.schedule' must be one of multistep, cosine, constant; got 'step'"));
  EXPECT_TRUE(contains(parse_error("train: {device: gpu}\n"),
                       "'train.device' must be one of cpu, cuda, auto; got 'gpu'"));
  EXPECT_TRUE(contains(parse_error("train: {precision: fp64}\n"),
                       "'train.precision' must be one of fp32, bf16, fp16, auto; got 'fp64'"));
}

TEST(ConfigErrors, BadOverrideNamesTheOverride) {
  EXPECT_TRUE(contains(parse_error("", {"optim.lrr=0.1"}),
                       "--set optim.lrr=0.1: unknown key 'optim.lrr'; valid keys under 'optim': "));
  EXPECT_EQ(parse_error("", {"optim.lr"}),
            "--set optim.lr: expected key=value, e.g. --set optim.lr=0.05");
  EXPECT_EQ(parse_error("", {"optim.lr=abc"}),
            "--set optim.lr=abc: 'optim.lr' must be a number, got 'abc'");
  EXPECT_TRUE(contains(parse_error("", {"optim..lr=1"}), "--set optim..lr=1: 'optim..lr' is not"));
  EXPECT_TRUE(contains(parse_error("", {"=1"}), "--set =1: '' is not a dotted key"));
  EXPECT_TRUE(contains(parse_error("", {"optim.milestones=[1, 2"}),
                       "--set optim.milestones=[1, 2: malformed value: "));
  EXPECT_TRUE(contains(parse_error("", {"optim.lr.x=1"}),
                       "--set optim.lr.x=1: 'optim.lr' must be a number, got a mapping"));
}

TEST(ConfigErrors, MissingFileNamesTheFile) {
  const std::string path = (fs::temp_directory_path() / "rn_config_test_missing.yaml").string();
  const std::string e = error_of([&] { load_config(path); });
  EXPECT_EQ(e, path + ": cannot read config file: No such file or directory");
  const std::string dir = fs::temp_directory_path().string();
  EXPECT_TRUE(contains(error_of([&] { load_config(dir); }), dir + ": cannot read config file"));
}

TEST(ConfigErrors, MalformedYamlGivesLineAndColumn) {
  const std::string e = parse_error("optim:\n  lr: 0.1\n bad: [\n");
  EXPECT_TRUE(contains(e, "configs/x.yaml:3:")) << e;
  EXPECT_TRUE(contains(e, "malformed YAML")) << e;
  TempFile file("malformed.yaml", "train: {epochs: 3\n");
  EXPECT_TRUE(contains(error_of([&] { load_config(file.path()); }), file.path() + ":"));
}

TEST(ConfigErrors, DuplicateKey) {
  EXPECT_EQ(parse_error("optim:\n  lr: 0.1\n  lr: 0.2\n"),
            "configs/x.yaml: key 'optim.lr' appears more than once");
}

TEST(ConfigErrors, NesterovNeedsMomentum) {
  EXPECT_TRUE(contains(parse_error("optim: {nesterov: true, momentum: 0}\n"), "'optim.momentum'"));
}

}  // namespace
}  // namespace rn::launch

namespace rn::launch {
namespace {

const char* kEnsemble =
    "run_dir: runs/ens\n"
    "model: {name: resnet20, in_channels: 1, num_classes: 10}\n"
    "optim: {lr: 0.1}\n"
    "train: {epochs: 3, seed: 9}\n"
    "ensemble:\n"
    "  split: macs\n"
    "  members:\n"
    "    - {name: a, model: resnet32, seed: 1}\n"
    "    - name: b\n"
    "      weight: 2\n"
    "      overrides: {optim: {lr: 0.05}, train: {epochs: 4}, data: {augment: {hflip: true}}}\n";

TEST(ConfigEnsemble, MembersTakeTheBaseWithTheirOwnModelSeedAndOverrides) {
  const Config c = parse_config(kEnsemble, "configs/x.yaml", {"optim.momentum=0.8"});
  ASSERT_EQ(c.ensemble.members.size(), 2u);
  EXPECT_EQ(c.ensemble.split, "macs");
  EXPECT_EQ(c.ensemble.members[1].weight, 2);
  const auto m = member_configs(c);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].model.name, "resnet32");
  EXPECT_EQ(m[0].train.seed, 1u);
  EXPECT_EQ(m[0].optim.lr, 0.1);
  EXPECT_EQ(m[0].run_dir, "runs/ens/a");
  EXPECT_EQ(m[1].model.name, "resnet20");  // the base's
  EXPECT_EQ(m[1].train.seed, 9u);
  EXPECT_EQ(m[1].optim.lr, 0.05);
  EXPECT_EQ(m[1].train.epochs, 4);
  EXPECT_TRUE(m[1].data.augment.hflip);
  for (const auto& member : m) {
    EXPECT_EQ(member.optim.momentum, 0.8);  // --set reaches every member
    EXPECT_TRUE(member.ensemble.members.empty());
    // A member's config is a plain single-model config: its config.yaml trains it alone.
    EXPECT_EQ(parse_config(to_yaml(member), "member.yaml"), [&] {
      Config copy = member;
      copy.source = "member.yaml";
      return copy;
    }());
  }
  EXPECT_EQ(parse_config(to_yaml(c), c.source), c);
  // Without members, nothing of the ensemble is written.
  EXPECT_EQ(to_yaml(parse_config("", "x")).find("ensemble"), std::string::npos);
}

TEST(ConfigEnsemble, BadMembersAreNamedInOneLine) {
  const auto member_error = [](const std::string& members) {
    return parse_error("ensemble:\n  members:\n" + members);
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"    - {name: a, modle: resnet20}\n",
       "configs/x.yaml: unknown key 'ensemble.members[0].modle'; valid keys of a member: name, "
       "model, seed, weight, ranks, overrides"},
      {"    - {model: resnet20}\n", "'ensemble.members[0]' has no 'name'"},
      {"    - {name: a/b}\n",
       "'ensemble.members[0].name' must be a folder name (letters, digits, '_', '-', '.'), got "
       "'a/b'"},
      {"    - {name: a}\n    - {name: a}\n",
       "'ensemble.members[1].name': member 'a' appears more than once"},
      {"    - {name: a, weight: 0}\n", "'ensemble.members[0].weight' must be a positive number"},
      {"    - {name: a, seed: -1}\n", "'ensemble.members[0].seed' must be a non-negative integer"},
      {"    - {name: a, ranks: 2}\n    - {name: b}\n",
       "'ranks' is given for 1 of 2 members; give it for every member or for none"},
      {"    - {name: a, overrides: {run_dir: x}}\n",
       "'ensemble.members[0].overrides' cannot set 'run_dir'"},
      {"    - {name: a, overrides: [1]}\n",
       "'ensemble.members[0].overrides' must be a mapping shaped like the config"},
      {"    - a\n", "'ensemble.members[0]' must be a mapping"},
  };
  for (const auto& [yaml, want] : cases) {
    const std::string e = member_error(yaml);
    EXPECT_TRUE(contains(e, want)) << yaml << " -> " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_TRUE(contains(parse_error("ensemble: {split: random}\n"),
                       "'ensemble.split' must be one of equal, macs; got 'random'"));
}

TEST(ConfigEnsemble, AMemberOverrideIsCheckedAndNamesTheMember) {
  const auto member_error = [](const std::string& overrides) {
    return error_of([&] {
      member_configs(parse_config(
          "ensemble:\n  members:\n    - {name: ok}\n    - {name: deep, overrides: " + overrides +
              "}\n",
          "configs/x.yaml"));
    });
  };
  EXPECT_TRUE(contains(member_error("{optim: {lr: -1}}"),
                       "configs/x.yaml: ensemble member 'deep': 'optim.lr' must be a positive "
                       "number, got -1"));
  EXPECT_TRUE(contains(member_error("{optim: {lrr: 1}}"),
                       "configs/x.yaml: ensemble member 'deep': unknown key 'optim.lrr'"));
  EXPECT_TRUE(contains(member_error("{data: {root: /elsewhere}}"),
                       "ensemble member 'deep': 'data.root' must be the same for every member "
                       "(the members are evaluated together on one test set)"));
  EXPECT_TRUE(contains(member_error("{model: {num_classes: 5}}"),
                       "'model.num_classes' must be the same for every member"));
}

}  // namespace
}  // namespace rn::launch

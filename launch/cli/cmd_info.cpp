// `resnet info`: parameters, multiply-adds and depth of a named network, or (--devices) what this
// rank runs on; and the default input size the subcommands share.
#include <cstdio>
#include <iostream>

#include "core/check.h"
#include "core/models/model_spec.h"
#include "distributed/nccl_communicator.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/config.h"
#include "launch/train/ensemble.h"

namespace rn::launch {

DefaultInput default_input(const std::string& model) {
  const auto spec = models::model_spec(model, 3, 10);
  if (spec.stem == models::StemKind::cifar) return {3, 32, 32, 10};
  return {3, 224, 224, 1000};
}

DefaultInput input_from_args(const Args& args, const std::string& model) {
  DefaultInput d = default_input(model);
  if (args.has("input")) {
    auto dims = parse_dims(args.get("input"), 3, "--input");
    d.channels = static_cast<int>(dims[0]), d.height = static_cast<int>(dims[1]),
    d.width = static_cast<int>(dims[2]);
  }
  d.classes = args.get_int("classes", d.classes);
  if (d.classes < 1) RN_FAIL("--classes must be positive");
  return d;
}

// `info --devices`: the CPU's ISA as oneDNN runs it, and what this process loads of CUDA, cuDNN,
// cuBLAS and NCCL at run time (the libraries found on this machine, not the headers of the build).
int run_devices_info(bool json, const distributed::RankEnvironment& env) {
  std::vector<std::pair<std::string, std::string>> lines{
      {"cpu_isa", env.cpu_isa},
      {"cpu_bf16", (env.cpu_bf16_everywhere ? "faster than fp32: " : "not faster than fp32: ") +
                       env.cpu_bf16_why},
      {"auto_device", env.gpus_everywhere ? "cuda" : "cpu (" + env.why_no_gpu + ")"}};
  for (auto& l : cuda_runtime_report()) lines.push_back(l);
  lines.emplace_back("nccl", distributed::nccl_runtime_version());
  if (json) {
    std::cout << "{";
    for (size_t i = 0; i < lines.size(); ++i)
      std::cout << (i ? ", " : "") << "\"" << json_escape(lines[i].first) << "\": \""
                << json_escape(lines[i].second) << "\"";
    std::cout << "}\n";
  } else {
    for (const auto& [name, value] : lines) std::printf("%-14s %s\n", name.c_str(), value.c_str());
  }
  return 0;
}

namespace {

// The network `info` describes: --model NAME, or --config FILE's 'model:' section; its input
// from --input / --classes, else the network's (or the config's data's) defaults.
std::pair<models::ModelSpec, DefaultInput> info_network(const Args& args) {
  if (!args.has("config")) {
    const DefaultInput d = input_from_args(args, args.required("model"));
    return {models::model_spec(args.required("model"), d.channels, d.classes), d};
  }
  if (args.has("model"))
    RN_FAIL("give either --model NAME or --config FILE (its 'model:' section), not both");
  const Config cfg = load_config(args.get("config"), args.all("set"));
  models::ModelSpec spec = cfg.model.spec();
  const Shape in = training_input(cfg);
  DefaultInput d{static_cast<int>(in[1]), static_cast<int>(in[2]), static_cast<int>(in[3]),
                 cfg.model.num_classes};
  if (args.has("input") || args.has("classes")) d = input_from_args(args, spec.name);
  spec.in_channels = d.channels, spec.num_classes = d.classes;
  return {spec, d};
}

void print_info_json(const models::ModelSpec& spec, const DefaultInput& d, models::Network& net,
                     const std::string& cpu_isa, const std::string& bf16_why) {
  const Shape in{1, d.channels, d.height, d.width};
  std::cout << "{\"model\": \"" << json_escape(spec.name) << "\", \"input\": [" << d.channels
            << ", " << d.height << ", " << d.width << "], \"classes\": " << d.classes
            << ", \"params\": " << net.num_parameters() << ", \"macs\": " << net.macs(in)
            << ", \"depth\": " << net.depth() << ", \"weighted_layers\": " << net.weighted_layers()
            << ", \"parameter_tensors\": " << net.parameters().size() << ", \"spec\": {";
  for (size_t i = 0; i < models::spec_fields().size(); ++i) {
    const std::string& key = models::spec_fields()[i];
    std::cout << (i ? ", " : "") << "\"" << key << "\": \"" << models::spec_field(spec, key)
              << "\"";
  }
  std::cout << "}, \"cpu_isa\": \"" << cpu_isa
            << "\", \"cpu_bf16\": " << (bf16_why.empty() ? "true" : "false") << "}\n";
}

void print_info_text(const models::ModelSpec& spec, const DefaultInput& d, models::Network& net,
                     const std::string& cpu_isa, const std::string& bf16_why) {
  const Shape in{1, d.channels, d.height, d.width};
  const int64_t macs = net.macs(in);
  std::cout << "model          " << spec.name << "\n"
            << "input          " << d.channels << "x" << d.height << "x" << d.width << "\n"
            << "classes        " << net.output_shape(in)[1] << "\n"
            << "parameters     " << net.num_parameters() << "\n"
            << "multiply-adds  " << macs << " (" << macs / 1e9 << " G per image, forward)\n"
            << "depth          " << net.depth() << " (weighted layers on the main path; "
            << net.weighted_layers() << " with projections)\n";
  std::cout << "spec          ";
  for (const auto& key : models::spec_fields())
    std::cout << " " << key << "=" << models::spec_field(spec, key);
  std::cout << "\n"
            << "cpu            oneDNN runs " << cpu_isa << "; bf16 "
            << (bf16_why.empty() ? "available" : bf16_why) << "\n";
}

}  // namespace

const CommandSpec& info_command() {
  static const CommandSpec c{
      "info",
      "",
      "A network's input, parameters, multiply-adds, depth and spec (--model or a config's "
      "model: section), and the CPU's ISA; or, with --devices, the GPUs and their libraries.",
      {{"model", Flag::Takes::value, "NAME",
        "a network of the zoo (resnet info --model x lists them)"},
       {"config", Flag::Takes::value, "FILE", "a job config: its model: section and input"},
       {"set", Flag::Takes::values, "KEY=VALUE", "a config value over the file's (repeatable)"},
       {"input", Flag::Takes::value, "CxHxW", "input size (default: the network's data set's)"},
       {"classes", Flag::Takes::value, "N", "classes (default: the network's data set's)"},
       {"devices", Flag::Takes::nothing, "", "the CUDA driver, runtime, cuDNN, cuBLAS, NCCL, GPUs"},
       {"json", Flag::Takes::nothing, "", "one JSON object"}}};
  return c;
}

int run_info(const std::vector<std::string>& argv, const Job& job) {
  Args args(argv, info_command());
  if (args.flag("devices")) {
    if (args.has("model") || args.has("config"))
      RN_FAIL("give either --devices or a network (--model NAME or --config FILE), not both");
    return run_devices_info(args.flag("json"), job.env);
  }
  const auto [spec, d] = info_network(args);
  auto backend = make_cpu_backend(1);
  auto net = models::build_model_uninitialised(*backend, spec);
  const std::string bf16_why = precision_unsupported(Device{}, DType::bf16);
  if (args.flag("json"))
    print_info_json(spec, d, *net, job.env.cpu_isa, bf16_why);
  else
    print_info_text(spec, d, *net, job.env.cpu_isa, bf16_why);
  return 0;
}

}  // namespace rn::launch

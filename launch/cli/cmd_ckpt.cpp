// `resnet ckpt inspect FILE [--json]` and `resnet ckpt init --model NAME ... --output FILE`.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/check.h"
#include "core/models/model_spec.h"
#include "io/checkpoint.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/checkpointing.h"

namespace rn::launch {

namespace {

const CommandSpec kInspect{
    "ckpt inspect",
    "FILE",
    "A checkpoint's header, tensors and sizes, every dataset's checksum verified.",
    {{"json", Flag::Takes::nothing, "", "one JSON object"}}};

const CommandSpec kInit{
    "ckpt init",
    "",
    "A checkpoint of a freshly initialised network (every rank writes its share under mpirun).",
    {{"model", Flag::Takes::value, "NAME", "the network", true},
     {"classes", Flag::Takes::value, "N", "classes (default: the network's data set's)"},
     {"in-channels", Flag::Takes::value, "C", "input channels (default: the network's)"},
     {"seed", Flag::Takes::value, "S", "the initialisation's seed", true},
     {"output", Flag::Takes::value, "FILE", "the checkpoint to write", true}}};

// /meta's texts, read straight from the file (the writer stores every dataset contiguously);
// `use` is empty for a checkpoint written before they were kept.
ModelUse read_meta(const std::string& path, const io::CheckpointSummary& s, std::string* names,
                   std::string* transform) {
  std::string* out[2] = {names, transform};
  const char* keys[2] = {"meta/class_names", "meta/transform"};
  bool found[2] = {false, false};
  std::ifstream f(path, std::ios::binary);
  for (const auto& d : s.datasets)
    for (int k = 0; k < 2; ++k)
      if (d.path == keys[k] && d.raw) {
        out[k]->resize(d.bytes);
        f.seekg(static_cast<std::streamoff>(d.offset));
        f.read(out[k]->data(), static_cast<std::streamsize>(d.bytes));
        found[k] = static_cast<bool>(f);
      }
  return parse_model_use(found[0] ? names : nullptr, found[1] ? transform : nullptr, path);
}

int run_inspect(const std::vector<std::string>& argv) {
  const std::string path = positional(argv, kInspect);
  Args args(std::vector<std::string>(argv.begin() + 1, argv.end()), kInspect);
  const io::CheckpointSummary s = io::read_checkpoint_summary(path);
  const std::vector<std::string> bad = io::verify_checkpoint(path);
  std::string names_text, transform_text;
  const ModelUse use = bad.empty() ? read_meta(path, s, &names_text, &transform_text) : ModelUse{};
  int64_t model_tensors = 0, optimizer_tensors = 0;
  size_t tensor_bytes = 0;
  for (const auto& d : s.datasets) {
    const bool model = d.path.rfind("model/", 0) == 0, opt = d.path.rfind("optimizer/", 0) == 0;
    model_tensors += model, optimizer_tensors += opt;
    if (model || opt) tensor_bytes += d.bytes;
  }
  std::ostringstream os;
  if (args.flag("json")) {
    os << "{\"file\": \"" << json_escape(path) << "\", \"format_version\": " << s.format_version
       << ", \"model\": \"" << json_escape(s.header.model) << "\", \"epoch\": " << s.header.epoch
       << ", \"step\": " << s.header.step << ", \"world_size\": " << s.header.world_size
       << ", \"created\": \"" << s.header.created << "\", \"project_version\": \""
       << json_escape(s.header.project_version) << "\", \"model_tensors\": " << model_tensors
       << ", \"optimizer_tensors\": " << optimizer_tensors
       << ", \"tensors\": " << model_tensors + optimizer_tensors
       << ", \"tensor_bytes\": " << tensor_bytes << ", \"datasets\": " << s.datasets.size()
       << ", \"file_bytes\": " << s.bytes() << ", \"class_names\": [";
    for (size_t i = 0; i < use.class_names.size(); ++i)
      os << (i ? ", " : "") << "\"" << json_escape(use.class_names[i]) << "\"";
    os << "], \"transform\": " << (use.has_transform ? transform_json(use.transform) : "null")
       << ", \"checksums\": \"" << (bad.empty() ? "ok" : "bad") << "\", \"bad_datasets\": [";
    for (size_t i = 0; i < bad.size(); ++i)
      os << (i ? ", " : "") << "\"" << json_escape(bad[i]) << "\"";
    os << "]}\n";
  } else {
    os << path << "\n"
       << "  model       " << s.header.model << "\n"
       << "  epoch       " << s.header.epoch << "\n"
       << "  step        " << s.header.step << "\n"
       << "  world size  " << s.header.world_size << "\n"
       << "  created     " << s.header.created << " (resnet " << s.header.project_version
       << ", format " << s.format_version << ")\n"
       << "  tensors     " << model_tensors << " model + " << optimizer_tensors << " optimizer, "
       << tensor_bytes << " bytes (" << s.datasets.size() << " datasets, " << s.bytes()
       << " bytes in all)\n";
    if (bad.empty()) {
      os << "  classes     ";
      const size_t n = use.class_names.size();
      if (n == 0) os << "not named (label indices only)";
      for (size_t i = 0; i < n; ++i) {
        if (n > 8 && i == 5) {
          os << ", ... (" << n - 6 << " more), " << use.class_names.back();
          break;
        }
        os << (i ? ", " : "") << use.class_names[i];
      }
      os << (n > 0 ? str_cat(" (", n, ")") : "") << "\n  transform   "
         << (use.has_transform ? transform_json(use.transform) : "none stored") << "\n";
    }
    os << "  checksums   "
       << (bad.empty() ? "ok (every dataset matches its crc32)"
                       : std::to_string(bad.size()) + " dataset(s) damaged:");
    for (const auto& b : bad) os << " " << b;
    os << "\n";
  }
  std::cout << os.str();
  if (!bad.empty()) {
    std::cerr << "resnet ckpt: error: checkpoint '" << path << "': " << bad.size()
              << " dataset(s) fail their checksum (first: " << bad.front() << ")\n";
    return 1;
  }
  return 0;
}

int run_init(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, kInit);
  const std::string name = args.required("model");
  const std::string output = args.required("output");
  const std::string seed_text = args.required("seed");
  uint64_t seed = 0;
  try {
    size_t used = 0;
    seed = std::stoull(seed_text, &used);
    if (used != seed_text.size() || seed_text[0] == '-') throw std::invalid_argument("");
  } catch (const std::exception&) {
    RN_FAIL("--seed must be a non-negative integer, got '" << seed_text << "'");
  }
  const DefaultInput in = default_input(name);
  const int classes = args.get_int("classes", in.classes);
  const int channels = args.get_int("in-channels", in.channels);
  if (classes < 1) RN_FAIL("--classes must be at least 1, got " << classes);
  if (channels < 1) RN_FAIL("--in-channels must be at least 1, got " << channels);
  const models::ModelSpec spec = models::model_spec(name, channels, classes);
  auto backend = make_backend(Device{}, 1);
  auto net = models::build_model(*backend, spec, seed);
  // The config a training run of this model would start from (for reference; `train` uses its
  // own --config).
  Config cfg;
  cfg.model.name = name, cfg.model.in_channels = channels, cfg.model.num_classes = classes;
  cfg.train.seed = seed;
  // Under mpirun every rank builds the same network and they write the file together.
  TrainerState st{.world_size = comm.size(), .seed = seed};
  st.loss_sum.assign(comm.size(), 0), st.correct.assign(comm.size(), 0);
  st.seen.assign(comm.size(), 0);
  save_checkpoint(output, *net, *backend, st, to_yaml(cfg), comm,
                  checkpoint_sharing(job.env, comm, job.hooks));
  if (comm.rank() != 0) return 0;
  std::printf("wrote %s: %s, %d channel(s), %d classes, seed %llu\n", output.c_str(), name.c_str(),
              channels, classes, static_cast<unsigned long long>(seed));
  return 0;
}

}  // namespace

const CommandGroup& ckpt_commands() {
  static const CommandGroup g{"ckpt",
                              "Checkpoint files: look inside, make one, time writing and reading.",
                              {&kInspect, &kInit, &ckpt_bench_command()}};
  return g;
}

int run_ckpt(const std::vector<std::string>& argv, const Job& job) {
  const CommandSpec& c = subcommand(argv, ckpt_commands());
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (&c == &kInspect) return run_inspect(rest);
  if (&c == &kInit) return run_init(rest, job);
  return run_ckpt_bench(rest, job);
}

}  // namespace rn::launch

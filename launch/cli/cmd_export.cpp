// `resnet export --checkpoint C --to model.onnx [--opset N] [--batch N|dynamic] [--fold-bn]`:
// the checkpoint's network in eval mode as an ONNX model that other runtimes run.
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/checkpoint_network.h"
#include "launch/train/onnx_export.h"

namespace rn::launch {
namespace {

namespace fs = std::filesystem;

// --batch: a positive count, or "dynamic" (0).
int64_t batch_flag(const std::string& text) {
  if (text == "dynamic") return 0;
  int64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1)
    RN_FAIL("--batch must be a positive integer or 'dynamic', got '" << text << "'");
  return v;
}

// --to: a file in a folder that exists, not a folder itself.
void check_destination(const std::string& to) {
  std::error_code ec;
  const fs::path p(to);
  if (fs::is_directory(p, ec)) RN_FAIL("--to '" << to << "' is a folder; name the file to write");
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (!fs::is_directory(dir, ec))
    RN_FAIL("--to '" << to << "': folder '" << dir.string() << "' does not exist");
}

}  // namespace

const CommandSpec& export_command() {
  static const CommandSpec c{
      "export",
      "",
      "The checkpoint's network in eval mode as an ONNX model (class names and transform as "
      "metadata).",
      {{"checkpoint", Flag::Takes::value, "FILE", "the checkpoint (its network is rebuilt from it)",
        true},
       {"to", Flag::Takes::value, "FILE", "the ONNX file to write (e.g. model.onnx)", true},
       {"opset", Flag::Takes::value, "N",
        "ONNX opset, " + std::to_string(kMinOnnxOpset) + " to " + std::to_string(kMaxOnnxOpset) +
            " (default 13)"},
       {"batch", Flag::Takes::value, "N|dynamic", "the input's batch dimension (default 1)"},
       {"size", Flag::Takes::value, "H[xW]",
        "the input's height and width (default: the checkpoint's transform's crop)"},
       {"fold-bn", Flag::Takes::nothing, "",
        "fold each batch norm that follows a convolution into its weights"}}};
  return c;
}

int run_export(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, export_command());
  const std::string ckpt = args.required("checkpoint");
  const std::string to = args.required("to");
  OnnxExportOptions o;
  o.opset = args.get_int("opset", 13);
  o.batch = batch_flag(args.get("batch", "1"));
  o.fold_bn = args.flag("fold-bn");
  check_onnx_options(o);  // before the checkpoint is read
  std::vector<int64_t> size;
  if (args.has("size")) {
    const std::string s = args.get("size");
    size = parse_dims(s, s.find('x') == std::string::npos ? 1 : 2, "--size");
    if (size.size() == 1) size.push_back(size[0]);
  }
  check_destination(to);

  const auto start = std::chrono::steady_clock::now();
  CheckpointNetwork cn =
      load_checkpoint_network(ckpt, job.env.threads_or(0), /*with_momentum=*/false, comm,
                              checkpoint_sharing(job.env, comm, job.hooks));
  if (comm.rank() != 0) return 0;
  if (size.empty()) {
    if (!cn.use.has_transform)
      RN_FAIL("--size: '" << ckpt << "' has no evaluation transform to take the input size "
                          << "from; give it (e.g. --size 224 or --size 32x32)");
    size = {cn.use.transform.crop, cn.use.transform.crop};
  }
  const std::string model = cn.net->spec().name;
  const OnnxExportSummary s = export_onnx(
      *cn.net, *cn.backend, Shape{cn.in_channels, size[0], size[1]}, cn.use, model, o, to);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string ops;
  for (const auto& [op, n] : s.ops) ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(n);
  const std::string batch = o.batch == 0 ? "N" : std::to_string(o.batch);
  std::printf("export: %s -> %s: opset %d, input %s x %d x %lld x %lld, logits %s x %d\n",
              model.c_str(), to.c_str(), o.opset, batch.c_str(), cn.in_channels,
              static_cast<long long>(size[0]), static_cast<long long>(size[1]), batch.c_str(),
              cn.classes);
  std::printf("export: %d nodes (%s)%s, %.2f M floats, %.1f MB, %.2f s\n", s.nodes, ops.c_str(),
              o.fold_bn
                  ? (", " + std::to_string(s.folded_batch_norms) + " batch norms folded").c_str()
                  : "",
              s.floats / 1e6, s.bytes / 1e6, seconds);
  if (cn.use.class_names.empty())
    std::printf("export: the checkpoint names no classes; the model's outputs are class indices\n");
  return 0;
}

}  // namespace rn::launch

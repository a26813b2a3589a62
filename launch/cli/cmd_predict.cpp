// `resnet predict --checkpoint C [--checkpoint C2 ...] PATH...`: the classes of image files, by
// name, with their probabilities: each file decoded with the project's decoders and brought to
// the network's input by the checkpoint's evaluation transform (/meta/transform), batched, run
// in eval mode; several checkpoints are an ensemble (the mean of their probabilities, as `eval`
// scores one).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/check.h"
#include "io/image_decode.h"
#include "io/image_transform.h"
#include "io/sample_set.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/checkpoint_network.h"
#include "launch/train/json_text.h"
#include "launch/train/step.h"

namespace rn::launch {
namespace {

namespace fs = std::filesystem;

// The files PATHs name: a file as given, a folder's regular files (recursively, in sorted order,
// hidden ones left out). A path that does not exist is an error.
std::vector<std::string> list_inputs(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(
               p, fs::directory_options::follow_directory_symlink, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec)) found.push_back(it->path().string());
      }
      if (ec) RN_FAIL("'" << p << "': cannot list: " << ec.message());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      files.push_back(p);
    } else {
      RN_FAIL("'" << p << "': no such file or folder");
    }
  }
  return files;
}

// One checkpoint of the ensemble, with its own transform's constants.
struct Member {
  std::string path;
  CheckpointNetwork cn;
  float mul[3], add[3];  // pixel -> (pixel / 255 - mean) / std, per RGB channel
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io::BadSample("cannot open");
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// `bytes` through `t` into `out` (views x t.channels x crop x crop).
void prepare(const std::string& bytes, const InputTransform& t, const Member& m, int views,
             io::SampleScratch& scratch, std::vector<float>& rgb, float* out) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const io::ImageHeader h = io::read_image_header(data, bytes.size());
  const std::vector<io::ImageView> boxes = io::eval_views(
      io::EvalTransform{.resize = t.resize, .crop = t.crop, .views = views}, h.width, h.height);
  const size_t plane = static_cast<size_t>(t.crop) * t.crop;
  if (t.channels == 3) {
    io::transform_encoded(data, bytes.size(), boxes, t.crop, m.mul, m.add, out, scratch);
    return;
  }
  // One channel: the mean of R, G and B (each normalised alike), as a grayscale file gives.
  rgb.resize(boxes.size() * 3 * plane);
  io::transform_encoded(data, bytes.size(), boxes, t.crop, m.mul, m.add, rgb.data(), scratch);
  for (size_t v = 0; v < boxes.size(); ++v) {
    const float* r = rgb.data() + v * 3 * plane;
    for (size_t i = 0; i < plane; ++i)
      out[v * plane + i] = (r[i] + r[plane + i] + r[2 * plane + i]) / 3.f;
  }
}

std::string prob_text(double p, int digits = 6) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, p);
  return b;
}

void softmax_into(const float* logits, int k, double weight, double* sum) {
  const float top = *std::max_element(logits, logits + k);
  double z = 0;
  for (int c = 0; c < k; ++c) z += std::exp(static_cast<double>(logits[c] - top));
  for (int c = 0; c < k; ++c) sum[c] += weight * std::exp(static_cast<double>(logits[c] - top)) / z;
}

std::string quoted(const std::string& s) {
  return "\"" + json_escape(s) + "\"";
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

const CommandSpec& predict_command() {
  static const CommandSpec c{
      "predict",
      "",
      "The classes of image files (JPEG, PNG; folders recursively) by name, with probabilities: "
      "each checkpoint's evaluation transform, eval mode, several checkpoints averaged.",
      {{"checkpoint", Flag::Takes::values, "FILE", "a checkpoint (repeat for an ensemble)", true},
       {"top", Flag::Takes::value, "K", "classes shown per image (default 5)"},
       {"crops", Flag::Takes::value, "1|10", "views per image: the centre crop, or ten crops"},
       {"batch", Flag::Takes::value, "B", "images per forward pass (default 32)"},
       {"threads", Flag::Takes::value, "T", "CPU threads (default: this rank's share)"},
       {"device", Flag::Takes::value, "cpu|cuda", "where to run (default cpu)"},
       {"precision", Flag::Takes::value, "fp32|bf16|fp16", "compute type (default fp32)"},
       {"json", Flag::Takes::nothing, "", "one JSON object per image (JSON Lines)"},
       {"csv", Flag::Takes::nothing, "", "CSV: file,rank,class,index,probability"}},
      "PATH..."};
  return c;
}

int run_predict(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, predict_command());
  const std::vector<std::string> checkpoints = args.all("checkpoint");
  if (checkpoints.empty()) RN_FAIL("--checkpoint is required");
  if (args.operands().empty()) RN_FAIL("predict needs at least one image file or folder (PATH...)");
  const int batch = args.get_int("batch", 32);
  if (batch < 1) RN_FAIL("--batch must be at least 1, got " << batch);
  const std::string crops = args.get("crops", "1");
  if (crops != "1" && crops != "10") RN_FAIL("--crops must be 1 or 10, got '" << crops << "'");
  const int views = crops == "10" ? 10 : 1;
  if (args.flag("json") && args.flag("csv")) RN_FAIL("--json and --csv: choose one");
  const Device device = device_flag(args, job.env);
  const DType compute = checked_precision(args.get("precision", "fp32"), device, "--precision");
  const int threads = job.env.threads_or(args.get_int("threads", 0));
  const std::vector<std::string> files = list_inputs(args.operands());

  // Every rank reads the checkpoints (collective reads); rank 0 alone predicts.
  std::vector<Member> members;
  for (const std::string& path : checkpoints) {
    Member m;
    m.path = path;
    m.cn = load_checkpoint_network(path, threads, false, comm,
                                   checkpoint_sharing(job.env, comm, job.hooks), device);
    members.push_back(std::move(m));
  }
  if (comm.rank() != 0) return 0;
  const Member& first = members.front();
  for (Member& m : members) {
    if (!m.cn.use.has_transform)
      RN_FAIL("checkpoint '" << m.path
                             << "' has no evaluation transform (/meta/transform: written before "
                                "checkpoints kept one); resume its run for one step to write a "
                                "checkpoint that has it");
    if (m.cn.classes != first.cn.classes)
      RN_FAIL("checkpoint '" << m.path << "' has " << m.cn.classes << " classes, '" << first.path
                             << "' " << first.cn.classes << ": not one ensemble");
    if (!m.cn.use.class_names.empty() && !first.cn.use.class_names.empty() &&
        m.cn.use.class_names != first.cn.use.class_names)
      RN_FAIL("checkpoint '" << m.path << "' names its classes otherwise than '" << first.path
                             << "': not one ensemble");
    const InputTransform& t = m.cn.use.transform;
    for (int c = 0; c < 3; ++c) {
      const int k = t.channels == 1 ? 0 : c;
      m.mul[c] = 1.f / (255.f * t.std[k]);
      m.add[c] = -t.mean[k] / t.std[k];
    }
  }
  const int classes = first.cn.classes;
  std::vector<std::string> names;
  for (const Member& m : members)
    if (!m.cn.use.class_names.empty()) names = m.cn.use.class_names;
  if (names.empty())
    std::fprintf(stderr,
                 "predict: %s: no class names (a checkpoint written before they were kept): "
                 "classes are shown by index\n",
                 first.path.c_str());
  while (static_cast<int>(names.size()) < classes) names.push_back(str_cat("class ", names.size()));
  const int top = std::min(args.get_int("top", 5), classes);
  if (top < 1) RN_FAIL("--top must be at least 1, got " << args.get_int("top", 5));

  const bool json = args.flag("json"), csv = args.flag("csv");
  if (csv) std::printf("file,rank,class,index,probability\n");
  for (Member& m : members) m.cn.net->set_training(false);
  io::SampleScratch scratch;
  std::vector<float> rgb;
  int64_t done = 0, bad = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t start = 0; start < files.size(); start += static_cast<size_t>(batch)) {
    const size_t end = std::min(files.size(), start + static_cast<size_t>(batch));
    // The batch's readable files, read once, then each member's input from them.
    std::vector<std::string> bytes;
    std::vector<size_t> ok;
    for (size_t i = start; i < end; ++i) {
      try {
        bytes.push_back(read_file(files[i]));
        io::read_image_header(reinterpret_cast<const uint8_t*>(bytes.back().data()),
                              bytes.back().size());
        ok.push_back(i);
      } catch (const Error& e) {
        bytes.pop_back();
        std::fprintf(stderr, "predict: %s: not a readable image (%s)\n", files[i].c_str(),
                     e.what());
        ++bad;
      }
    }
    std::vector<double> prob(ok.size() * classes, 0.0);
    std::vector<bool> good(ok.size(), true);
    // Members of one transform (an ensemble of one recipe) share the decoded batch.
    Tensor x;
    const InputTransform* decoded_for = nullptr;
    for (Member& m : members) {
      if (ok.empty()) break;
      const InputTransform& t = m.cn.use.transform;
      if (!decoded_for || !(*decoded_for == t)) {
        const int64_t per_view = static_cast<int64_t>(t.channels) * t.crop * t.crop;
        x = Tensor::zeros(
            Shape{static_cast<int64_t>(ok.size()) * views, t.channels, t.crop, t.crop});
        for (size_t j = 0; j < ok.size(); ++j) {
          if (!good[j]) continue;
          try {
            prepare(bytes[j], t, m, views, scratch, rgb, x.data_as<float>() + j * views * per_view);
          } catch (const Error& e) {
            std::fprintf(stderr, "predict: %s: not a readable image (%s)\n", files[ok[j]].c_str(),
                         e.what());
            good[j] = false;
            ++bad;
          }
        }
        decoded_for = &t;
      }
      Backend& be = *m.cn.backend;
      const Tensor y = be.download(m.cn.net->forward(to_compute(be, be.upload(x), compute)));
      const float* logits = y.data_as<float>();
      for (size_t j = 0; j < ok.size(); ++j)
        for (int v = 0; v < views; ++v)
          softmax_into(logits + (j * views + v) * classes, classes,
                       1.0 / (views * static_cast<double>(members.size())), &prob[j * classes]);
    }
    for (size_t j = 0; j < ok.size(); ++j) {
      if (!good[j]) continue;
      const double* p = &prob[j * classes];
      std::vector<int> order(static_cast<size_t>(classes));
      for (int c = 0; c < classes; ++c) order[c] = c;
      std::partial_sort(order.begin(), order.begin() + top, order.end(),
                        [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      const std::string& file = files[ok[j]];
      if (json) {
        std::string line = "{\"file\": " + quoted(file) + ", \"top\": [";
        for (int r = 0; r < top; ++r)
          line += str_cat(r ? ", " : "", "{\"class\": ", quoted(names[order[r]]),
                          ", \"index\": ", order[r], ", \"probability\": ", prob_text(p[order[r]]),
                          "}");
        std::printf("%s]}\n", line.c_str());
      } else if (csv) {
        for (int r = 0; r < top; ++r)
          std::printf("%s,%d,%s,%d,%.6f\n", csv_field(file).c_str(), r + 1,
                      csv_field(names[order[r]]).c_str(), order[r], p[order[r]]);
      } else {
        std::string line = file + ":";
        for (int r = 0; r < top; ++r)
          line += str_cat(r ? "  " : " ", names[order[r]], " ", prob_text(p[order[r]], 4));
        std::printf("%s\n", line.c_str());
      }
      ++done;
    }
  }
  std::fflush(stdout);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(
      stderr, "predict: %lld image(s) in %.2f s (%.1f images/s, %zu model(s), %d view(s) each)%s\n",
      static_cast<long long>(done), s, done / std::max(s, 1e-9), members.size(), views,
      bad > 0 ? str_cat("; ", bad, " file(s) not readable images").c_str() : "");
  if (done == 0) RN_FAIL("no readable image among " << files.size() << " file(s)");
  return 0;
}

}  // namespace rn::launch

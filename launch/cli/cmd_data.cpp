// `resnet data`: pack an image folder into one HDF5 file, inspect a packed file, and time the
// decoding + augmentation of a folder's or a packed file's images.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "core/check.h"
#include "io/array_file.h"
#include "io/image_folder.h"
#include "io/packed.h"
#include "io/sample_set.h"
#include "io/sampler.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/logging.h"

namespace rn::launch {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const CommandSpec kPack{
    "data pack",
    "",
    "An image folder (torchvision's ImageFolder layout) packed into one HDF5 file that training "
    "streams.",
    {{"from", Flag::Takes::value, "DIR", "the folder: one subfolder per class", true},
     {"to", Flag::Takes::value, "FILE.h5", "the packed file", true},
     {"resize-shorter", Flag::Takes::value, "N",
      "shrink so the shorter side is N (default 0: keep)"},
     {"quality", Flag::Takes::value, "Q", "JPEG quality of shrunk images (default 90)"},
     {"threads", Flag::Takes::value, "T", "decoding threads (default: this rank's CPUs)"},
     {"stop-on-bad", Flag::Takes::nothing, "", "stop at the first image that does not decode"},
     {"verbose", Flag::Takes::nothing, "", "debug lines"}}};

const CommandSpec kInspect{
    "data inspect", "FILE.h5", "A packed file's samples, classes, sizes and source.", {}};

const CommandSpec kBench{
    "data bench",
    "",
    "Images/s of reading (and decoding and augmenting) a folder or packed file, as the loader's "
    "workers do.",
    {{"from", Flag::Takes::value, "DIR|FILE.h5", "an image folder or a packed file", true},
     {"transform", Flag::Takes::value, "torchvision|resnet|eval|eval10|read",
      "what each image goes through (default torchvision)"},
     {"threads", Flag::Takes::value, "T", "reading threads (default 1)"},
     {"seconds", Flag::Takes::value, "S", "how long a warm run loops (default 5)"},
     {"crop", Flag::Takes::value, "N", "output size (default 224)"},
     {"batch", Flag::Takes::value, "B", "samples per read (default 256)"},
     {"order", Flag::Takes::value, "shuffled|sequential", "training's order or the file's"},
     {"drop-caches", Flag::Takes::nothing, "", "one cold pass from the disk (root)"},
     {"json", Flag::Takes::nothing, "", "one JSON object"}}};

const CommandSpec kDump{
    "data dump",
    "",
    "The transformed samples written to an HDF5 file (images, labels, bad flags), as training "
    "or evaluation sees them.",
    {{"from", Flag::Takes::value, "DIR|FILE.h5", "an image folder or a packed file", true},
     {"to", Flag::Takes::value, "OUT.h5", "the file to write", true},
     {"transform", Flag::Takes::value, "eval|eval10|torchvision|resnet", "default eval"},
     {"crop", Flag::Takes::value, "N", "output size (default 224)"},
     {"count", Flag::Takes::value, "N", "the first N samples (default all)"},
     {"epoch", Flag::Takes::value, "E", "the epoch whose random views to draw (default 0)"}}};

const CommandSpec kList{
    "data list",
    "",
    "One line per sample (label, tab, path) in training's order and labels.",
    {{"from", Flag::Takes::value, "DIR|FILE.h5", "an image folder or a packed file", true}}};

int data_pack(const std::vector<std::string>& argv, const distributed::RankEnvironment& env) {
  Args args(argv, kPack);
  init_logging(0, args.flag("verbose"));
  io::PackOptions o;
  o.resize_shorter = args.get_int("resize-shorter", 0);
  o.quality = args.get_int("quality", 90);
  o.threads = args.get_int("threads", env.cpus);
  o.stop_on_bad = args.flag("stop-on-bad");
  if (o.resize_shorter < 0)
    RN_FAIL("--resize-shorter must be 0 (keep) or more, got " << o.resize_shorter);
  if (o.quality < 1 || o.quality > 100) RN_FAIL("--quality must be in 1..100, got " << o.quality);
  if (args.has("quality") && o.resize_shorter == 0)
    RN_FAIL("--quality applies to re-encoded images: give --resize-shorter too");
  if (o.threads < 1) RN_FAIL("--threads must be at least 1, got " << o.threads);
  const std::string from = args.required("from"), to = args.required("to");
  o.warn = [](const std::string& m) { RN_LOG(warning) << m; };
  double last = 0;
  o.progress = [&](int64_t done, int64_t total) {
    if (now_s() - last < 10 && done < total) return;
    last = now_s();
    RN_LOG(info) << "data pack: " << done << " / " << total << " files";
  };
  const double t0 = now_s();
  const io::PackResult r = io::pack_image_folder(from, to, o);
  const double s = now_s() - t0;
  std::printf(
      "data pack: %lld samples from %s into %s in %.1f s: %.1f MiB read, %.1f MiB written, "
      "%lld re-encoded, %lld bad (stored as they were)\n",
      static_cast<long long>(r.samples), from.c_str(), to.c_str(), s, r.bytes_in / 1048576.0,
      r.bytes_out / 1048576.0, static_cast<long long>(r.resized), static_cast<long long>(r.bad));
  return 0;
}

int data_inspect(const std::vector<std::string>& argv) {
  const std::string path = positional(argv, kInspect);
  Args args(std::vector<std::string>(argv.begin() + 1, argv.end()), kInspect);
  std::cout << io::describe_packed(path);
  return 0;
}

// --transform: a training recipe, the evaluation views, or (bench only) reading alone.
struct TransformChoice {
  io::ImageAugment aug;
  io::EvalTransform eval;
  bool read_only = false;
};

TransformChoice transform_choice(const std::string& transform, int crop, bool allow_read) {
  TransformChoice t;
  t.aug.crop = crop;
  t.eval = io::EvalTransform{.resize = crop * 8 / 7, .crop = crop, .views = 1};
  if (transform == "torchvision") {
    t.aug.recipe = io::Recipe::torchvision;
  } else if (transform == "resnet") {
    t.aug.recipe = io::Recipe::resnet;
  } else if (transform == "eval" || transform == "eval10") {
    t.aug.recipe = io::Recipe::none;
    t.eval.views = transform == "eval" ? 1 : 10;
  } else if (transform == "read" && allow_read) {
    t.read_only = true;
  } else {
    RN_FAIL("--transform must be torchvision, resnet, eval, eval10"
            << (allow_read ? " or read" : "") << ", got '" << transform << "'");
  }
  return t;
}

// The views of sample `index` (seen in `epoch`) of a width x height image.
void choose_views(const TransformChoice& t, int width, int height, int64_t epoch, int64_t index,
                  std::vector<io::ImageView>& views) {
  if (t.aug.recipe == io::Recipe::none)
    views = io::eval_views(t.eval, width, height);
  else
    views.assign(1, io::draw_train_view(t.aug, width, height, 0, epoch, index));
}

void imagenet_affine(float* mul, float* add) {
  const io::Normalization norm = io::imagenet_normalization();
  for (int c = 0; c < 3; ++c)
    mul[c] = 1.0f / (255.0f * norm.std[c]), add[c] = -norm.mean[c] / norm.std[c];
}

std::unique_ptr<io::EncodedSource> open_source(const std::string& from) {
  std::error_code ec;
  if (std::filesystem::is_directory(from, ec))
    return std::make_unique<io::FolderSource>(io::list_image_folder(from, 4));
  return std::make_unique<io::PackedSource>(from);
}

// One `data bench` run: what its threads read and how, and the counts they share.
struct DecodeBench {
  const io::EncodedSource& src;
  std::vector<int64_t> order;  // training's shuffled order (one epoch) or file order
  TransformChoice tc;
  int crop = 224, batch = 256;
  bool cold = false;  // one pass over every sample; else loop until the deadline
  double deadline = 0;
  float mul[3], add[3];
  std::atomic<int64_t> next{0}, done{0}, bad{0}, bytes{0};

  // One thread: batches read as the loader's workers read them, then (unless read-only) each
  // image decoded and transformed.
  void work() {
    io::SampleScratch s;
    std::vector<float> out(static_cast<size_t>(tc.eval.views) * 3 * crop * crop);
    std::vector<io::ImageView> views;
    std::vector<int64_t> indices(static_cast<size_t>(batch));
    const int64_t n = src.size();
    for (;;) {
      const int64_t first = next.fetch_add(batch);
      if (cold ? first >= n : now_s() >= deadline) return;
      const int64_t count = cold ? std::min<int64_t>(batch, n - first) : batch;
      for (int64_t k = 0; k < count; ++k)
        indices[static_cast<size_t>(k)] = order[static_cast<size_t>((first + k) % n)];
      src.read_many(indices.data(), static_cast<size_t>(count), s.ahead, s.ahead_error);
      for (size_t k = 0; k < static_cast<size_t>(count); ++k) {
        const std::vector<uint8_t>& b = s.ahead[k];
        if (!s.ahead_error[k].empty()) {
          ++bad;
          continue;
        }
        bytes += static_cast<int64_t>(b.size());
        if (tc.read_only) continue;
        try {
          const io::ImageHeader h = io::read_image_header(b.data(), b.size());
          choose_views(tc, h.width, h.height, (first + static_cast<int64_t>(k)) / n, indices[k],
                       views);
          io::transform_encoded(b.data(), b.size(), views, crop, mul, add, out.data(), s);
        } catch (const io::BadSample&) {
          ++bad;
        }
      }
      done += count;
    }
  }
};

int data_bench(const std::vector<std::string>& argv) {
  Args args(argv, kBench);
  const std::string from = args.required("from");
  const std::string transform = args.get("transform", "torchvision");
  const int threads = args.get_int("threads", 1);
  const int seconds = args.get_int("seconds", 5);
  const int crop = args.get_int("crop", 224);
  const int batch = args.get_int("batch", 256);
  const std::string order_name = args.get("order", "shuffled");
  if (threads < 1 || seconds < 1 || crop < 1 || batch < 1)
    RN_FAIL("--threads, --seconds, --crop and --batch must be positive");
  if (order_name != "shuffled" && order_name != "sequential")
    RN_FAIL("--order must be shuffled (as training reads) or sequential, got '" << order_name
                                                                                << "'");
  const TransformChoice tc = transform_choice(transform, crop, /*allow_read=*/true);
  const auto src = open_source(from);
  DecodeBench bench{
      .src = *src,
      .order = io::DistributedSampler(src->size(), 0, order_name == "shuffled").epoch_indices(0),
      .tc = tc,
      .crop = crop,
      .batch = batch,
      .cold = args.flag("drop-caches")};
  imagenet_affine(bench.mul, bench.add);
  if (bench.cold && !drop_caches())
    RN_FAIL("--drop-caches: cannot write /proc/sys/vm/drop_caches (root only)");
  const double t0 = now_s();
  bench.deadline = t0 + seconds;
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back([&] { bench.work(); });
  bench.work();
  for (auto& t : pool) t.join();
  const double s = now_s() - t0;
  const long long done = bench.done.load(), bad = bench.bad.load();
  const double ips = done / s, mb_per_s = bench.bytes / s / 1e6;
  // The packed reader's system calls: how far neighbouring samples were coalesced.
  const auto* packed = dynamic_cast<const io::PackedSource*>(src.get());
  const long long calls = packed ? packed->read_calls() : done;
  if (args.flag("json")) {
    std::printf(
        "{\"from\": \"%s\", \"transform\": \"%s\", \"order\": \"%s\", \"threads\": %d, "
        "\"batch\": %d, \"cold\": %s, \"images\": %lld, \"bad\": %lld, \"seconds\": %.3f, "
        "\"img_per_s\": %.1f, \"img_per_s_per_thread\": %.1f, \"mb_per_s\": %.1f, "
        "\"read_calls\": %lld}\n",
        from.c_str(), transform.c_str(), order_name.c_str(), threads, batch,
        bench.cold ? "true" : "false", done, bad, s, ips, ips / threads, mb_per_s, calls);
  } else {
    std::printf(
        "data bench %s (%s, %s order, %d thread(s)%s): %lld images in %.2f s, %.1f img/s, "
        "%.1f per thread, %.1f MB/s read in %lld read calls%s\n",
        from.c_str(), transform.c_str(), order_name.c_str(), threads,
        bench.cold ? ", cold page cache" : "", done, s, ips, ips / threads, mb_per_s, calls,
        bad ? str_cat(", ", bad, " bad").c_str() : "");
  }
  return 0;
}

// Writes the transformed samples to an array file (images N x views x 3 x crop x crop,
// labels, and a per-sample bad flag): what the conformance test compares with torchvision.
int data_dump(const std::vector<std::string>& argv) {
  Args args(argv, kDump);
  const int crop = args.get_int("crop", 224);
  if (crop < 1) RN_FAIL("--crop must be positive");
  const TransformChoice tc =
      transform_choice(args.get("transform", "eval"), crop, /*allow_read=*/false);
  const auto src = open_source(args.required("from"));
  const int64_t n = std::min<int64_t>(src->size(), args.get_int("count", 1 << 30));
  const int64_t epoch = args.get_int("epoch", 0);
  if (n < 1) RN_FAIL("--count must be positive");
  const int views = tc.aug.recipe == io::Recipe::none ? tc.eval.views : 1;
  const size_t per = static_cast<size_t>(views) * 3 * crop * crop;
  std::vector<float> images(per * static_cast<size_t>(n), 0.0f);
  std::vector<int64_t> labels(static_cast<size_t>(n)), bad(static_cast<size_t>(n), 0);
  float mul[3], add[3];
  imagenet_affine(mul, add);
  io::SampleScratch s;
  std::vector<io::ImageView> v;
  for (int64_t i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = src->label(i);
    try {
      src->read(i, s.bytes);
      const io::ImageHeader h = io::read_image_header(s.bytes.data(), s.bytes.size());
      choose_views(tc, h.width, h.height, epoch, i, v);
      io::transform_encoded(s.bytes.data(), s.bytes.size(), v, crop, mul, add,
                            images.data() + per * static_cast<size_t>(i), s);
    } catch (const io::BadSample& e) {
      bad[static_cast<size_t>(i)] = 1;
      std::fprintf(stderr, "data dump: %s: %s\n", src->path(i).c_str(), e.what());
    }
  }
  io::ArrayWriter w(args.required("to"));
  w.write_f32("images", {n, views, 3, crop, crop}, images.data());
  w.write_i64("labels", {n}, labels.data());
  w.write_i64("bad", {n}, bad.data());
  return 0;
}

// One line per sample: label, tab, path (the order and labels training uses); the classes and
// the empty class folders first, as comments.
int data_list(const std::vector<std::string>& argv) {
  Args args(argv, kList);
  const auto src = open_source(args.required("from"));
  const auto& classes = src->class_names();
  for (size_t c = 0; c < classes.size(); ++c)
    std::printf("# class %zu\t%s\n", c, classes[c].c_str());
  if (const auto* folder = dynamic_cast<const io::FolderSource*>(src.get()))
    for (const auto& e : folder->listing().empty_classes) std::printf("# empty\t%s\n", e.c_str());
  for (int64_t i = 0; i < src->size(); ++i)
    std::printf("%d\t%s\n", src->label(i), src->path(i).c_str());
  return 0;
}

}  // namespace

const CommandGroup& data_commands() {
  static const CommandGroup g{
      "data",
      "Data sets: pack an image folder, look inside, time reading, dump or list the samples.",
      {&kPack, &kInspect, &kBench, &kDump, &kList}};
  return g;
}

int run_data(const std::vector<std::string>& argv, const Job& job) {
  const CommandSpec& c = subcommand(argv, data_commands());
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (&c == &kPack) return data_pack(rest, job.env);
  if (&c == &kInspect) return data_inspect(rest);
  if (&c == &kBench) return data_bench(rest);
  if (&c == &kDump) return data_dump(rest);
  return data_list(rest);
}

}  // namespace rn::launch

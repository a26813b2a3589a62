// Building the configured data sets.
#include "launch/train/data.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "io/cifar.h"
#include "io/dataset.h"
#include "io/fashion_mnist.h"
#include "io/image_folder.h"
#include "io/packed.h"
#include "launch/train/logging.h"

namespace rn::launch {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<io::EncodedSource> encoded_source(const Config& cfg, const std::string& split,
                                                  distributed::Communicator& comm,
                                                  const DataOptions& opt) {
  const DataConfig& d = cfg.data;
  if (d.kind.value == DataKind::packed) {
    const std::string file = (fs::path(d.root) / (split + ".h5")).string();
    return std::make_unique<io::PackedSource>(file);
  }
  const std::string root = (fs::path(d.root) / split).string();
  const fs::path cache = fs::path(cfg.run_dir) / "data" / (split + ".files");
  bool cached = false;
  io::FolderListing l = io::list_image_folder_once(
      comm, root, opt.cache_listing ? cache.string() : "", opt.list_threads, &cached);
  if (comm.rank() == 0)
    RN_LOG(info) << "image folder " << root << ": " << l.files.size() << " files in "
                 << l.classes.size() << " classes"
                 << (cached ? " (file list cached in " + cache.string() + ")" : "");
  if (!l.empty_classes.empty()) {
    if (d.on_bad_sample.value == io::BadSamplePolicy::error)
      RN_FAIL(cfg.source << ": image folder '" << root << "': class folder '"
                         << l.empty_classes.front()
                         << "' has no images (data.on_bad_sample: error)");
    for (const auto& c : l.empty_classes)
      RN_LOG(warning) << "image folder " << root << ": class folder '" << c
                      << "' has no images; its label is kept, so labels stay torchvision's";
  }
  return std::make_unique<io::FolderSource>(std::move(l));
}

io::Normalization configured_norm(const DataConfig& d) {
  io::Normalization n;
  for (double m : d.mean) n.mean.push_back(static_cast<float>(m));
  for (double s : d.std) n.std.push_back(static_cast<float>(s));
  return n;
}

// Image folders and packed files: decoded and augmented per sample.
DataSplits encoded_splits(const Config& cfg, distributed::Communicator& comm,
                          const DataOptions& opt) {
  const DataConfig& dc = cfg.data;
  if (cfg.model.in_channels != 3)
    RN_FAIL(cfg.source << ": 'model.in_channels' is " << cfg.model.in_channels << " but data '"
                       << dc.kind << "' gives 3 channels (grayscale images are replicated)");
  if (!dc.mean.empty() && dc.mean.size() != 3)
    RN_FAIL(cfg.source << ": 'data.mean' has " << dc.mean.size()
                       << " values; images have 3 channels");
  io::EncodedSet::Options o;
  o.augment.recipe = dc.augment.recipe.value;
  o.augment.crop = dc.augment.crop;
  o.augment.scale_min = dc.augment.scale[0], o.augment.scale_max = dc.augment.scale[1];
  o.augment.ratio_min = dc.augment.ratio[0], o.augment.ratio_max = dc.augment.ratio[1];
  o.augment.shorter_min = static_cast<int>(dc.augment.shorter[0]);
  o.augment.shorter_max = static_cast<int>(dc.augment.shorter[1]);
  o.augment.hflip = dc.augment.hflip;
  o.augment.lighting = dc.augment.lighting;
  o.eval = io::EvalTransform{.resize = dc.eval_resize, .crop = dc.eval_crop, .views = 1};
  o.norm = configured_norm(dc);
  o.seed = cfg.train.seed;
  o.train = true;
  DataSplits d;
  d.train = std::make_unique<io::EncodedSet>(
      io::spread_subset(encoded_source(cfg, "train", comm, opt), dc.train_limit), o);
  o.train = false;
  o.eval.views = opt.eval_views;
  d.test = std::make_unique<io::EncodedSet>(
      io::spread_subset(encoded_source(cfg, "val", comm, opt), dc.test_limit), o);
  if (d.test->num_classes() != d.train->num_classes())
    RN_FAIL(cfg.source << ": data.root '" << dc.root << "': train has " << d.train->num_classes()
                       << " classes, val " << d.test->num_classes()
                       << " (the same class folders are needed in both)");
  const auto& train = static_cast<const io::EncodedSet&>(*d.train);
  d.use.class_names = train.source().class_names();
  const io::Normalization norm = o.norm.mean.empty() ? io::imagenet_normalization() : o.norm;
  d.use.has_transform = true;
  d.use.transform = InputTransform{.channels = 3,
                                   .resize = dc.eval_resize,
                                   .crop = dc.eval_crop,
                                   .mean = norm.mean,
                                   .std = norm.std};
  return d;
}

// The names CIFAR's binary archives ship beside the data (batches.meta.txt, fine_ and
// coarse_label_names.txt), CIFAR-10's published ones where the file is missing.
std::vector<std::string> cifar_class_names(const std::string& root, io::CifarKind kind) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(io::cifar_files(root, kind, io::Split::test).front()).parent_path();
  const char* file = kind == io::CifarKind::cifar10         ? "batches.meta.txt"
                     : kind == io::CifarKind::cifar100_fine ? "fine_label_names.txt"
                                                            : "coarse_label_names.txt";
  const size_t want = kind == io::CifarKind::cifar10         ? 10
                      : kind == io::CifarKind::cifar100_fine ? 100
                                                             : 20;
  std::vector<std::string> names;
  std::ifstream in(dir / file);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (names.size() == want) return names;
  return kind == io::CifarKind::cifar10 ? cifar10_class_names() : std::vector<std::string>{};
}

// Both splits of an in-memory data set: synthetic, CIFAR or Fashion-MNIST.
std::pair<io::ImageSet, io::ImageSet> read_memory_sets(const Config& cfg) {
  const DataConfig& dc = cfg.data;
  const DataKind kind = dc.kind.value;
  if (kind == DataKind::synthetic)
    return {
        io::synthetic_set(cfg.model.in_channels, dc.height, dc.width, cfg.model.num_classes,
                          dc.train_limit > 0 ? dc.train_limit : dc.synthetic_size, cfg.train.seed),
        io::synthetic_set(cfg.model.in_channels, dc.height, dc.width, cfg.model.num_classes,
                          dc.test_limit > 0 ? dc.test_limit : dc.synthetic_size / 4,
                          cfg.train.seed + 1)};
  if (kind == DataKind::cifar10 || kind == DataKind::cifar100) {
    const io::CifarKind k = kind == DataKind::cifar10              ? io::CifarKind::cifar10
                            : dc.labels.value == CifarLabels::fine ? io::CifarKind::cifar100_fine
                                                                   : io::CifarKind::cifar100_coarse;
    io::ImageSet train = io::load_cifar(dc.root, k, io::Split::train, dc.train_limit);
    return {std::move(train), io::load_cifar(dc.root, k, io::Split::test, dc.test_limit)};
  }
  io::ImageSet train = io::load_fashion_mnist(dc.root, io::Split::train, dc.train_limit);
  return {std::move(train), io::load_fashion_mnist(dc.root, io::Split::test, dc.test_limit)};
}

// In-memory sets, padded and cropped (and flipped) as the recipe says.
DataSplits memory_splits(const Config& cfg, int eval_views) {
  const DataConfig& dc = cfg.data;
  const bool pad = dc.augment.recipe.value == io::Recipe::pad_crop;
  const io::AugmentOptions pad_crop{pad ? dc.augment.crop_pad : 0, pad && dc.augment.hflip};
  auto [train, test] = read_memory_sets(cfg);
  if (train.channels != cfg.model.in_channels)
    RN_FAIL(cfg.source << ": 'model.in_channels' is " << cfg.model.in_channels << " but data '"
                       << dc.kind << "' has " << train.channels << " channel(s)");
  if (!dc.mean.empty() && dc.mean.size() != static_cast<size_t>(train.channels))
    RN_FAIL(cfg.source << ": 'data.mean' has " << dc.mean.size() << " values; data '" << dc.kind
                       << "' has " << train.channels << " channel(s)");
  // The training set's own statistics normalise both splits unless the config gives them.
  const io::Normalization norm =
      dc.mean.empty() ? io::compute_normalization(train) : configured_norm(dc);
  DataSplits d;
  d.train = std::make_unique<io::MemorySet>(std::move(train), pad_crop, norm, cfg.train.seed);
  // Ten views are taken as training saw the images: shifted within its padding.
  const io::ImageSet& data = static_cast<const io::MemorySet&>(*d.train).data();
  d.use.has_transform = true;
  d.use.transform = InputTransform{.channels = data.channels,
                                   .resize = std::min(data.height, data.width),
                                   .crop = std::min(data.height, data.width),
                                   .mean = norm.mean,
                                   .std = norm.std};
  if (dc.kind.value == DataKind::fashion_mnist) d.use.class_names = fashion_mnist_class_names();
  if (dc.kind.value == DataKind::cifar10)
    d.use.class_names = cifar_class_names(dc.root, io::CifarKind::cifar10);
  if (dc.kind.value == DataKind::cifar100)
    d.use.class_names = cifar_class_names(dc.root, dc.labels.value == CifarLabels::fine
                                                       ? io::CifarKind::cifar100_fine
                                                       : io::CifarKind::cifar100_coarse);
  d.test = std::make_unique<io::MemorySet>(std::move(test), io::AugmentOptions{}, norm, 0,
                                           eval_views, pad_crop.crop_pad);
  return d;
}

}  // namespace

io::LoaderOptions loader_options(const Config& cfg, bool train) {
  io::LoaderOptions o;
  o.batch_size = train ? cfg.data.batch_size : cfg.data.test_batch_size;
  o.workers = cfg.data.workers;
  o.prefetch = train ? cfg.data.prefetch : 2;
  o.drop_last = train;
  o.on_bad = cfg.data.on_bad_sample.value;
  o.seed = cfg.train.seed;
  o.warn = [](const std::string& m) { RN_LOG(warning) << m; };
  return o;
}

std::string class_count_note(const Config& cfg, int data_classes) {
  return str_cat(cfg.source, ": 'model.num_classes' is ", cfg.model.num_classes, " but data '",
                 cfg.data.kind, "' has ", data_classes,
                 " classes: ", cfg.model.num_classes - data_classes,
                 " outputs of the classifier no label uses (--set model.num_classes=", data_classes,
                 " for a classifier of the data's classes)");
}

DataSplits load_data(const Config& cfg, distributed::Communicator& comm, const DataOptions& opt) {
  const DataConfig& dc = cfg.data;
  DataSplits d = is_encoded(dc.kind.value) ? encoded_splits(cfg, comm, opt)
                                           : memory_splits(cfg, opt.eval_views);
  const io::SampleShape s = d.train->shape();
  d.height = s.height, d.width = s.width;
  if (d.train->num_classes() > cfg.model.num_classes)
    RN_FAIL(cfg.source << ": 'model.num_classes' is " << cfg.model.num_classes << " but data '"
                       << dc.kind << "' has " << d.train->num_classes() << " classes");
  if (d.train->size() < dc.batch_size)
    RN_FAIL(cfg.source << ": 'data.batch_size' " << dc.batch_size << " exceeds the "
                       << d.train->size() << " training samples");
  if (d.train->num_classes() < cfg.model.num_classes && comm.rank() == 0)
    RN_LOG(warning) << class_count_note(cfg, d.train->num_classes());
  return d;
}

}  // namespace rn::launch

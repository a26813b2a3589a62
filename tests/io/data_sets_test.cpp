// Tests of the data sets on files the tests make themselves: CIFAR records read back, JPEGs
// encoded with TurboJPEG and decoded (RGB, gray, CMYK, truncated, corrupt), DCT scaling, the
// resampler against the triangle filter's definition, an
// image folder's listing, the packed round trip, and the bad-sample policy; the packed reader's
// coalesced reads; encoded batches that do not depend on the worker count, the rank count or a
// resume in mid-epoch.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "io/cifar.h"
#include "io/image_folder.h"
#include "io/loader.h"
#include "io/packed.h"
#include "io/resample.h"
#include "io_test_files.h"

namespace rn::io {
namespace {

using testing::expect_same_batches;
using testing::ScratchDir;
using testing::synthetic_set;
using testing::write_bytes;

// A smooth image with some detail, w x h x channels interleaved.
std::vector<uint8_t> picture(int w, int h, int channels, int seed) {
  std::vector<uint8_t> p(static_cast<size_t>(w) * h * channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c)
        p[(static_cast<size_t>(y) * w + x) * channels + c] =
            static_cast<uint8_t>((x * (c + 1) + y * (seed + 2) + 40 * c) % 256);
  return p;
}

std::vector<uint8_t> jpeg(int w, int h, int channels, int seed = 0) {
  const auto p = picture(w, h, channels, seed);
  return encode_jpeg(p.data(), w, h, channels, 90);
}

// Ten views of an in-memory set trained with pad + crop: the padded image's corners and centre at
// full size (training's extreme shifts), then their mirror images; the centre is the 1-view
// image.
TEST(MemorySetTenCrops, PaddedCornersAtFullSize) {
  const ImageSet s = synthetic_set(3, 1, 9, 8, 10);
  const Normalization none;  // pixels / 255
  const MemorySet one(s, AugmentOptions{}, none, 0, 1), ten(s, AugmentOptions{}, none, 0, 10, 2);
  ASSERT_EQ(ten.shape().views, 10);
  ASSERT_EQ(ten.shape().height, 9);
  ASSERT_EQ(ten.shape().width, 8);
  const int h = 9, w = 8, plane = h * w;
  std::vector<float> a(plane), b(10 * plane);
  SampleScratch scratch;
  one.make(0, 1, a.data(), scratch);
  ten.make(0, 1, b.data(), scratch);
  const uint8_t* src = s.sample(1);
  const auto pixel = [&](int y, int x) {
    return y < 0 || y >= h || x < 0 || x >= w ? 0.0f : src[y * w + x] / 255.0f;
  };
  const int shifts[5][2] = {{-2, -2}, {-2, 2}, {2, -2}, {2, 2}, {0, 0}};
  for (int v = 0; v < 10; ++v)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int oy = shifts[v % 5][0], ox = shifts[v % 5][1];
        const int sx = v < 5 ? x : w - 1 - x;  // mirrored after the shift
        ASSERT_EQ(b[v * plane + y * w + x], pixel(y + oy, sx + ox))
            << "view " << v << " at (" << y << ", " << x << ")";
      }
  for (int i = 0; i < plane; ++i) ASSERT_EQ(b[4 * plane + i], a[i]) << "centre view, pixel " << i;
  // Without padding: the 7/8 windows as before.
  const MemorySet windows(s, AugmentOptions{}, none, 0, 10);
  EXPECT_EQ(windows.shape().height, 9 * 7 / 8);
}

TEST(Cifar, RecordsReadBack) {
  ScratchDir dir;
  ImageSet s = synthetic_set(7, 3, 32, 32, 10);
  write_bytes(dir.file("test_batch.bin"), cifar_records(s, CifarKind::cifar10));
  const ImageSet r = load_cifar(dir.path(), CifarKind::cifar10, Split::test);
  EXPECT_EQ(r.count, 7);
  EXPECT_EQ(r.num_classes, 10);
  EXPECT_EQ(r.pixels, s.pixels);
  EXPECT_EQ(r.labels, s.labels);
  // CIFAR-100: coarse label first, then the fine one.
  ImageSet f = synthetic_set(5, 3, 32, 32, 100);
  const std::vector<int32_t> coarse{1, 2, 3, 19, 0};
  std::filesystem::create_directories(dir.path() + "/cifar-100-binary");
  write_bytes(dir.path() + "/cifar-100-binary/test.bin",
              cifar_records(f, CifarKind::cifar100_fine, coarse));
  EXPECT_EQ(load_cifar(dir.path(), CifarKind::cifar100_fine, Split::test).labels, f.labels);
  EXPECT_EQ(load_cifar(dir.path(), CifarKind::cifar100_coarse, Split::test).labels, coarse);
  EXPECT_EQ(load_cifar(dir.path(), CifarKind::cifar100_coarse, Split::test).num_classes, 20);
}

TEST(Cifar, BadFilesAreOneLine) {
  ScratchDir dir;
  write_bytes(dir.file("test_batch.bin"), std::vector<uint8_t>(3073 * 2 + 5, 0));
  try {
    load_cifar(dir.path(), CifarKind::cifar10, Split::test);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a whole number of 3073-byte records"),
              std::string::npos)
        << e.what();
  }
  std::vector<uint8_t> bad(3073, 0);
  bad[0] = 10;  // label 10 of 10 classes
  write_bytes(dir.file("test_batch.bin"), bad);
  EXPECT_THROW(load_cifar(dir.path(), CifarKind::cifar10, Split::test), Error);
  EXPECT_THROW(load_cifar(dir.path(), CifarKind::cifar10, Split::train), Error);  // missing
}

TEST(Decode, RgbGrayCmykAndDamagedFiles) {
  DecodedImage img;
  const auto rgb = jpeg(64, 48, 3);
  decode_image(rgb.data(), rgb.size(), DecodeRequest{.partial = false}, img);
  EXPECT_EQ(img.width, 64);
  EXPECT_EQ(img.height, 48);
  EXPECT_EQ(img.channels, 3);
  // JPEG is lossy: close to the source on average.
  const auto src = picture(64, 48, 3, 0);
  double err = 0;
  for (size_t i = 0; i < src.size(); ++i) err += std::abs(int(src[i]) - int(img.pixels[i]));
  EXPECT_LT(err / src.size(), 6.0);

  const auto gray = jpeg(40, 30, 1);
  decode_image(gray.data(), gray.size(), DecodeRequest{.partial = false}, img);
  EXPECT_EQ(img.channels, 1);

  // A flat CMYK image. TurboJPEG writes an Adobe marker, so its values are read (as PIL reads
  // them, "CMYK;I") in Adobe's inverted convention: RGB = C' K' / 255 of the stored C', K'.
  std::vector<uint8_t> cmyk(32 * 32 * 4);
  for (size_t i = 0; i < cmyk.size(); i += 4)
    cmyk[i] = 200, cmyk[i + 1] = 50, cmyk[i + 2] = 0, cmyk[i + 3] = 30;
  const auto cmyk_jpeg = encode_jpeg(cmyk.data(), 32, 32, 4, 95);
  EXPECT_EQ(read_image_header(cmyk_jpeg.data(), cmyk_jpeg.size()).channels, 4);
  decode_image(cmyk_jpeg.data(), cmyk_jpeg.size(), DecodeRequest{.partial = false}, img);
  ASSERT_EQ(img.channels, 3);
  const int expect[3] = {200 * 30 / 255, 50 * 30 / 255, 0};
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(img.pixels[16 * 32 * 3 + 16 * 3 + c], expect[c], 4) << c;

  const std::vector<uint8_t> truncated(rgb.begin(),
                                       rgb.begin() + static_cast<long>(rgb.size() / 2));
  EXPECT_THROW(decode_image(truncated.data(), truncated.size(), DecodeRequest{}, img), BadSample);
  std::vector<uint8_t> corrupt(rgb.begin(), rgb.begin() + 3);
  corrupt.resize(600, 0x5A);
  EXPECT_THROW(decode_image(corrupt.data(), corrupt.size(), DecodeRequest{}, img), BadSample);
  const std::string text = "hello, not an image";
  EXPECT_THROW(read_image_header(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
               BadSample);
}

TEST(Decode, DctScalingAndPartialDecodeAgreeWithTheFullDecode) {
  const auto big = jpeg(800, 640, 3, 1);
  EXPECT_EQ(dct_scale_denom(800, 640, 224, 224), 2);
  EXPECT_EQ(dct_scale_denom(800, 640, 100, 80), 8);
  EXPECT_EQ(dct_scale_denom(300, 300, 224, 224), 1);
  SampleScratch a, b;
  const float mul[3] = {1, 1, 1}, add[3] = {0, 0, 0};
  std::vector<float> full(3 * 224 * 224), fast(3 * 224 * 224);
  const ImageView v{.x = 100, .y = 80, .w = 500, .h = 480};
  // The reference: the whole image, no scaling, resampled.
  DecodedImage& img = a.image;
  decode_image(big.data(), big.size(), DecodeRequest{.partial = false}, img);
  resample_box(
      img.pixels.data(), img.width, img.height, 3, img.width * 3, v.x, v.y, v.w, v.h,
      ResampleOut{.width = 224, .height = 224, .mul = mul, .add = add, .planes = full.data()},
      a.resample);
  transform_encoded(big.data(), big.size(), {v}, 224, mul, add, fast.data(), b);
  EXPECT_EQ(b.image.scale_denom, 2);
  EXPECT_LT(b.image.height, 640 / 2);  // only the crop's rows
  double err = 0;
  for (size_t i = 0; i < full.size(); ++i) err += std::abs(full[i] - fast[i]);
  EXPECT_LT(err / full.size(), 3.0) << "mean difference in pixel levels";
}

// The triangle filter from its definition, in double precision, every input pixel weighed:
// what the resampler's trimmed taps and 4-lane passes must reproduce.
std::vector<double> reference_axis(double start, double size, int in, int out, bool mirror, int o) {
  const double scale = size / out, support = std::max(scale, 1.0);
  const double center = start + ((mirror ? out - 1 - o : o) + 0.5) * scale;
  std::vector<double> w(static_cast<size_t>(in));
  double sum = 0;
  for (int j = 0; j < in; ++j)
    sum += w[j] = std::max(0.0, 1.0 - std::abs(j + 0.5 - center) / support);
  for (double& v : w) v /= sum;
  return w;
}

TEST(Resample, TrimmedTapsMatchTheTriangleFilter) {
  // Enlarging reads 2 pixels per output, shrinking by 1.5 at most 4: no zero-weight taps.
  FilterTaps t;
  make_filter_taps(10, 50, 200, 100, false, t);
  EXPECT_EQ(t.taps, 2);
  make_filter_taps(0, 300, 300, 200, false, t);
  EXPECT_LE(t.taps, 4);
  struct Case {
    int channels;
    double x, y, w, h;
    int ow, oh;
    bool flip;
  };
  const int W = 97, H = 83;
  for (const Case& c : {Case{3, 10.5, 7.25, 40, 30, 64, 48, false},  // enlarge
                        Case{3, 0, 0, 97, 83, 32, 20, true},         // shrink, whole image
                        Case{1, 20, 3, 60.5, 70, 37, 50, true},      // gray, mixed
                        Case{3, 30, 20, 67, 63, 67, 63, false}}) {   // 1:1 at the edge
    const auto img = picture(W, H, c.channels, 3);
    std::vector<float> got(static_cast<size_t>(3) * c.ow * c.oh);
    const float mul[3] = {0.5f, 1.0f, 2.0f}, add[3] = {-1.0f, 0.0f, 1.0f};
    ResampleScratch s;
    resample_box(img.data(), W, H, c.channels, static_cast<size_t>(W) * c.channels, c.x, c.y, c.w,
                 c.h,
                 ResampleOut{.width = c.ow,
                             .height = c.oh,
                             .flip = c.flip,
                             .mul = mul,
                             .add = add,
                             .planes = got.data()},
                 s);
    double worst = 0;
    for (int oy = 0; oy < c.oh; ++oy) {
      const auto wy = reference_axis(c.y, c.h, H, c.oh, false, oy);
      for (int ox = 0; ox < c.ow; ++ox) {
        const auto wx = reference_axis(c.x, c.w, W, c.ow, c.flip, ox);
        for (int ch = 0; ch < 3; ++ch) {
          double v = 0;
          for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x)
              if (wy[y] > 0 && wx[x] > 0)
                v +=
                    wy[y] * wx[x] *
                    img[(static_cast<size_t>(y) * W + x) * c.channels + (c.channels == 1 ? 0 : ch)];
          const double expect = v * mul[ch] + add[ch];
          const double g = got[(static_cast<size_t>(ch) * c.oh + oy) * c.ow + ox];
          worst = std::max(worst, std::abs(g - expect) / mul[ch]);
        }
      }
    }
    EXPECT_LT(worst, 1e-3) << c.channels << " channels, box " << c.w << "x" << c.h << " to " << c.ow
                           << "x" << c.oh << ": worst difference in pixel levels";
  }
}

class FolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    namespace fs = std::filesystem;
    root_ = dir_.path() + "/train";
    for (const char* c : {"b", "a", "c"}) fs::create_directories(root_ + "/" + c);
    fs::create_directories(root_ + "/a/sub");
    fs::create_directories(root_ + "/empty");
    write_bytes(root_ + "/a/2.jpg", jpeg(50, 40, 3, 2));
    write_bytes(root_ + "/a/1.JPEG", jpeg(40, 50, 3, 1));
    write_bytes(root_ + "/a/sub/3.jpg", jpeg(60, 30, 1, 3));
    write_bytes(root_ + "/b/x.jpeg", jpeg(30, 30, 3, 4));
    write_bytes(root_ + "/b/notes.txt", {'h', 'i'});
    const auto ok = jpeg(45, 35, 3, 5);
    write_bytes(root_ + "/c/bad.jpg", std::vector<uint8_t>(ok.begin(), ok.begin() + 100));
    write_bytes(root_ + "/c/y.jpg", ok);
  }
  ScratchDir dir_;
  std::string root_;
};

TEST_F(FolderTest, ListingIsTorchvisionsOrder) {
  const FolderListing l = list_image_folder(root_, 2);
  EXPECT_EQ(l.classes, (std::vector<std::string>{"a", "b", "c", "empty"}));
  EXPECT_EQ(l.files, (std::vector<std::string>{"a/1.JPEG", "a/2.jpg", "a/sub/3.jpg", "b/x.jpeg",
                                               "c/bad.jpg", "c/y.jpg"}));
  EXPECT_EQ(l.labels, (std::vector<int32_t>{0, 0, 0, 1, 2, 2}));
  EXPECT_EQ(l.empty_classes, std::vector<std::string>{"empty"});
  const FolderListing r = deserialize_listing(serialize(l), "test");
  EXPECT_EQ(r.files, l.files);
  EXPECT_EQ(r.folders, l.folders);
}

TEST_F(FolderTest, CacheIsUsedUntilAFolderChanges) {
  const std::string cache = dir_.file("train.files");
  FolderListing l = list_image_folder(root_, 1);
  save_cached_listing(cache, l);
  FolderListing got;
  ASSERT_TRUE(load_cached_listing(cache, root_, got));
  EXPECT_EQ(got.files, l.files);
  EXPECT_FALSE(load_cached_listing(cache, root_ + "/", got));  // another root
  // A new file changes its folder's time: the cache is stale.
  std::filesystem::last_write_time(
      root_ + "/b", std::filesystem::file_time_type::clock::now() + std::chrono::seconds(5));
  EXPECT_FALSE(load_cached_listing(cache, root_, got));
}

TEST_F(FolderTest, BadSamplesAreSubstitutedOrFatal) {
  EncodedSet::Options o;
  o.train = true;
  o.augment.recipe = Recipe::torchvision;
  o.augment.crop = 24;
  o.seed = 3;
  EncodedSet set(std::make_unique<FolderSource>(list_image_folder(root_, 1)), o);
  DistributedSampler sampler(set.size(), 1, false);
  LoaderOptions lo;
  lo.batch_size = 6;
  lo.workers = 0;
  std::vector<std::string> warnings;
  lo.warn = [&](const std::string& m) { warnings.push_back(m); };
  Loader loader(set, sampler, lo);
  loader.start_epoch(0);
  HostBatch b;
  ASSERT_TRUE(loader.next(b));
  EXPECT_EQ(b.n, 6);
  EXPECT_EQ(b.bad, 1);
  EXPECT_NE(b.indices[4], 4);  // c/bad.jpg replaced
  EXPECT_EQ(b.labels[4], set.label(b.indices[4]));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("c/bad.jpg"), std::string::npos) << warnings[0];
  // Determinism: the same substitute every time.
  HostBatch again;
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next(again));
  EXPECT_EQ(again.indices, b.indices);
  EXPECT_EQ(again.images, b.images);

  lo.on_bad = BadSamplePolicy::error;
  Loader strict(set, sampler, lo);
  strict.start_epoch(0);
  try {
    strict.next(b);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("c/bad.jpg"), std::string::npos) << e.what();
  }
}

TEST_F(FolderTest, PackedFileGivesTheFoldersBatches) {
  const std::string file = dir_.file("train.h5");
  std::vector<std::string> warnings;
  PackOptions po;
  po.threads = 2;
  po.warn = [&](const std::string& m) { warnings.push_back(m); };
  const PackResult r = pack_image_folder(root_, file, po);
  EXPECT_EQ(r.samples, 6);
  EXPECT_EQ(r.bad, 1);
  EXPECT_EQ(warnings.size(), 2u);  // the empty class and the bad file
  auto packed = std::make_unique<PackedSource>(file);
  EXPECT_EQ(packed->class_names(), (std::vector<std::string>{"a", "b", "c", "empty"}));
  EXPECT_NE(describe_packed(file).find("6 in 4 classes"), std::string::npos)
      << describe_packed(file);
  for (bool train : {true, false}) {
    EncodedSet::Options o;
    o.train = train;
    o.augment.recipe = Recipe::resnet;
    o.augment.crop = 16;
    o.augment.shorter_min = 20, o.augment.shorter_max = 40;
    o.eval = EvalTransform{.resize = 20, .crop = 16, .views = train ? 1 : 10};
    EncodedSet from_folder(std::make_unique<FolderSource>(list_image_folder(root_, 1)), o);
    EncodedSet from_packed(std::make_unique<PackedSource>(file), o);
    DistributedSampler sampler(6, 7, true);
    LoaderOptions lo;
    lo.batch_size = 3;
    lo.workers = 2;
    Loader a(from_folder, sampler, lo), b(from_packed, sampler, lo);
    for (int epoch : {0, 1}) {
      a.start_epoch(epoch), b.start_epoch(epoch);
      HostBatch x, y;
      while (a.next(x)) {
        ASSERT_TRUE(b.next(y));
        EXPECT_EQ(x.indices, y.indices);
        EXPECT_EQ(x.labels, y.labels);
        EXPECT_EQ(x.images, y.images);
        EXPECT_EQ(x.views, train ? 1 : 10);
      }
    }
  }
  // A damaged packed file is one line.
  std::vector<uint8_t> bytes;
  read_whole_file(file, bytes);
  bytes.resize(bytes.size() / 2);
  write_bytes(file, bytes);
  EXPECT_THROW(PackedSource{file}, Error);
}

// A folder of `per_class` x 3 small JPEGs of several sizes (gray ones too) and one bad file.
class EncodedBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    namespace fs = std::filesystem;
    root_ = dir_.path() + "/train";
    int seed = 0;
    for (const char* c : {"cat", "dog", "fox"}) {
      fs::create_directories(root_ + "/" + c);
      for (int i = 0; i < kPerClass; ++i, ++seed)
        write_bytes(root_ + "/" + c + "/" + std::to_string(10 + i) + ".jpg",
                    jpeg(28 + seed % 7 * 5, 24 + seed % 5 * 6, seed % 4 == 3 ? 1 : 3, seed));
    }
    write_bytes(root_ + "/dog/10.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3});  // corrupt
    packed_ = dir_.file("train.h5");
    pack_image_folder(root_, packed_, PackOptions{});
  }
  static EncodedSet::Options train_options() {
    EncodedSet::Options o;
    o.augment.recipe = Recipe::torchvision;
    o.augment.crop = 16;
    o.seed = 11;
    return o;
  }
  std::unique_ptr<EncodedSet> folder_set() const {
    return std::make_unique<EncodedSet>(std::make_unique<FolderSource>(list_image_folder(root_, 1)),
                                        train_options());
  }
  std::unique_ptr<EncodedSet> packed_set() const {
    return std::make_unique<EncodedSet>(std::make_unique<PackedSource>(packed_), train_options());
  }
  // Every batch of `epoch`, in order.
  static std::vector<HostBatch> epoch_batches(const SampleSet& set, const DistributedSampler& s,
                                              LoaderOptions lo, int64_t epoch, int64_t skip = 0) {
    Loader loader(set, s, lo);
    loader.start_epoch(epoch);
    if (skip) loader.skip(skip);
    std::vector<HostBatch> out;
    for (HostBatch b; loader.next(b);) out.push_back(b);
    return out;
  }
  static constexpr int kPerClass = 8;  // 24 samples
  ScratchDir dir_;
  std::string root_, packed_;
};

TEST_F(EncodedBatchTest, CoalescedReadsGiveEachSamplesBytes) {
  const PackedSource p(packed_);
  ASSERT_EQ(p.size(), 3 * kPerClass);
  std::vector<std::vector<uint8_t>> out;
  std::vector<std::string> errors;
  // Shuffled, with a sample twice: the same bytes as one read() each.
  const std::vector<int64_t> idx{7, 3, 22, 3, 0, 23, 15, 8, 9, 10, 1};
  p.read_many(idx.data(), idx.size(), out, errors);
  std::vector<uint8_t> one;
  for (size_t k = 0; k < idx.size(); ++k) {
    p.read(idx[k], one);
    EXPECT_TRUE(errors[k].empty()) << errors[k];
    EXPECT_EQ(out[k], one) << "sample " << idx[k];
  }
  // A whole batch in file order, or with gaps smaller than kMaxGap, is one preadv.
  std::vector<int64_t> all(static_cast<size_t>(p.size()));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(all.size() - 1 - i);
  const int64_t calls = p.read_calls();
  p.read_many(all.data(), all.size(), out, errors);
  EXPECT_EQ(p.read_calls() - calls, 1);
  for (size_t k = 0; k < all.size(); ++k) {
    p.read(all[k], one);
    EXPECT_EQ(out[k], one) << "sample " << all[k];
  }
  // The loader's batches come from read_many: the same as the folder's, sample by sample.
  const auto folder = folder_set(), packed = packed_set();
  const DistributedSampler s(folder->size(), 5, true);
  LoaderOptions lo;
  lo.batch_size = 8, lo.workers = 1, lo.seed = 2;
  expect_same_batches(epoch_batches(*folder, s, lo, 0), epoch_batches(*packed, s, lo, 0),
                      "folder vs packed");
}

TEST_F(EncodedBatchTest, BatchesDoNotDependOnTheWorkerCount) {
  for (const auto& set : {folder_set(), packed_set()}) {
    const DistributedSampler s(set->size(), 3, true);
    LoaderOptions lo;
    lo.batch_size = 5, lo.seed = 4, lo.drop_last = false;
    for (int64_t epoch : {0, 1}) {
      lo.workers = 0;
      const auto reference = epoch_batches(*set, s, lo, epoch);
      ASSERT_EQ(reference.size(), 5u);  // 24 samples: 4 of 5 and one of 4
      int bad = 0;
      for (const auto& b : reference) bad += b.bad;
      EXPECT_EQ(bad, 1) << "dog/10.jpg once an epoch";
      for (int workers : {1, 3}) {
        lo.workers = workers, lo.prefetch = workers + 1;
        expect_same_batches(reference, epoch_batches(*set, s, lo, epoch),
                            "workers " + std::to_string(workers));
      }
    }
  }
}

TEST_F(EncodedBatchTest, RankCountsSeeTheSameSamples) {
  const auto set = packed_set();
  // Over all ranks, an epoch is the same samples, each augmented the same way: a map from the
  // sample made to its image and how many times it was made (the bad file's substitute is
  // another sample of the epoch, made twice).
  using Seen = std::map<int64_t, std::pair<std::vector<float>, int>>;
  auto epoch_samples = [&](int world) {
    Seen seen;
    for (int rank = 0; rank < world; ++rank) {
      const DistributedSampler s(set->size(), 9, true, rank, world);
      LoaderOptions lo;
      lo.batch_size = 3, lo.workers = 2, lo.seed = 4;
      for (const auto& b : epoch_batches(*set, s, lo, 1)) {
        const size_t per = b.images.size() / static_cast<size_t>(b.n);
        for (int i = 0; i < b.n; ++i) {
          const auto at = b.images.begin() + static_cast<std::ptrdiff_t>(per * i);
          std::vector<float> image(at, at + static_cast<std::ptrdiff_t>(per));
          auto [it, fresh] = seen.try_emplace(b.indices[static_cast<size_t>(i)], image, 0);
          ++it->second.second;
          if (!fresh) {
            EXPECT_TRUE(it->second.first == image) << "sample " << it->first;
          }
        }
      }
    }
    return seen;
  };
  const Seen one = epoch_samples(1);
  int made = 0;
  for (const auto& [index, v] : one) made += v.second;
  EXPECT_EQ(made, 24);
  EXPECT_EQ(one.size(), 23u) << "23 good samples, one of them again for the bad file";
  for (int world : {2, 4}) {
    const Seen many = epoch_samples(world);
    ASSERT_EQ(many.size(), one.size()) << world << " ranks";
    for (const auto& [index, v] : one) {
      ASSERT_TRUE(many.count(index)) << "sample " << index << " missing at " << world << " ranks";
      EXPECT_EQ(many.at(index).second, v.second)
          << "sample " << index << " at " << world << " ranks";
      EXPECT_TRUE(many.at(index).first == v.first)
          << "sample " << index << " differs at " << world << " ranks";
    }
  }
}

TEST_F(EncodedBatchTest, ResumeInMidEpochGivesTheRestOfTheEpoch) {
  for (const auto& set : {folder_set(), packed_set()}) {
    const DistributedSampler s(set->size(), 6, true, 1, 2);  // rank 1 of 2: 12 samples
    LoaderOptions lo;
    lo.batch_size = 3, lo.workers = 2, lo.seed = 4;
    const auto whole = epoch_batches(*set, s, lo, 2);
    ASSERT_EQ(whole.size(), 4u);
    const auto resumed = epoch_batches(*set, s, lo, 2, /*skip=*/2);
    expect_same_batches(std::vector<HostBatch>(whole.begin() + 2, whole.end()), resumed,
                        "resumed after 2 batches");
  }
}

}  // namespace
}  // namespace rn::io

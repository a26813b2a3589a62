// The in-memory and the encoded sample sets, and subsets of encoded sources.
#include "io/sample_set.h"

#include <algorithm>

#include "core/check.h"

namespace rn::io {

namespace {

// A subset of another source, by index.
class SubsetSource : public EncodedSource {
 public:
  SubsetSource(std::unique_ptr<EncodedSource> base, std::vector<int64_t> keep)
      : base_(std::move(base)), keep_(std::move(keep)) {}
  int64_t size() const override { return static_cast<int64_t>(keep_.size()); }
  int32_t label(int64_t i) const override { return base_->label(at(i)); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  std::string path(int64_t i) const override { return base_->path(at(i)); }
  void read(int64_t i, std::vector<uint8_t>& bytes) const override { base_->read(at(i), bytes); }
  void read_many(const int64_t* indices, size_t n, std::vector<std::vector<uint8_t>>& out,
                 std::vector<std::string>& errors) const override {
    thread_local std::vector<int64_t> mapped;
    mapped.resize(n);
    for (size_t k = 0; k < n; ++k) mapped[k] = at(indices[k]);
    base_->read_many(mapped.data(), n, out, errors);
  }
  int64_t listing_problems() const override { return base_->listing_problems(); }

 private:
  int64_t at(int64_t i) const { return keep_[static_cast<size_t>(i)]; }
  std::unique_ptr<EncodedSource> base_;
  std::vector<int64_t> keep_;
};

}  // namespace

std::unique_ptr<EncodedSource> spread_subset(std::unique_ptr<EncodedSource> src, int64_t limit) {
  const int64_t n = src->size();
  if (limit <= 0 || limit >= n) return src;
  std::vector<int64_t> keep(static_cast<size_t>(limit));
  for (int64_t i = 0; i < limit; ++i)
    keep[static_cast<size_t>(i)] = static_cast<int64_t>((static_cast<__int128>(i) * n) / limit);
  return std::make_unique<SubsetSource>(std::move(src), std::move(keep));
}

std::string SampleSet::describe(int64_t index) const {
  return str_cat("sample ", index);
}

MemorySet::MemorySet(ImageSet data, AugmentOptions augment, const Normalization& norm,
                     uint64_t seed, int views, int ten_crop_pad)
    : data_(std::move(data)),
      transform_(data_, augment, norm, seed),
      views_(views),
      ten_crop_pad_(ten_crop_pad) {
  RN_CHECK(views == 1 || views == 10, "[memory set] views " << views);
  RN_CHECK(ten_crop_pad >= 0, "[memory set] ten-crop padding " << ten_crop_pad);
  RN_CHECK(views == 1 || ten_crop_pad > 0 || (data_.height >= 8 && data_.width >= 8),
           "[memory set] 10 crops of " << data_.height << "x" << data_.width << " images");
}

SampleShape MemorySet::shape() const {
  if (views_ == 1 || ten_crop_pad_ > 0) return {views_, data_.channels, data_.height, data_.width};
  return {10, data_.channels, data_.height * 7 / 8, data_.width * 7 / 8};
}

void MemorySet::make(int64_t epoch, int64_t index, float* out, SampleScratch&) const {
  if (views_ == 1) {
    transform_.apply(epoch, index, out);
    return;
  }
  if (ten_crop_pad_ > 0) {
    // The corners and the centre of the padded image: shifts of -pad, 0 or +pad.
    const int p = ten_crop_pad_;
    const size_t view = static_cast<size_t>(data_.channels) * data_.height * data_.width;
    int v = 0;
    for (bool flip : {false, true})
      for (auto [oy, ox] : {std::pair{-p, -p}, {-p, p}, {p, -p}, {p, p}, {0, 0}})
        transform_.apply_shifted(index, oy, ox, flip, out + view * static_cast<size_t>(v++));
    return;
  }
  const int h = data_.height, w = data_.width, ch = h * 7 / 8, cw = w * 7 / 8;
  const size_t view = static_cast<size_t>(data_.channels) * ch * cw;
  int v = 0;
  for (bool flip : {false, true})
    for (auto [y, x] : {std::pair{0, 0},
                        {0, w - cw},
                        {h - ch, 0},
                        {h - ch, w - cw},
                        {(h - ch) / 2, (w - cw) / 2}})
      transform_.apply_window(index, y, x, ch, cw, flip, out + view * static_cast<size_t>(v++));
}

Normalization imagenet_normalization() {
  return Normalization{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
}

EncodedSet::EncodedSet(std::unique_ptr<EncodedSource> source, Options options)
    : source_(std::move(source)), opts_(std::move(options)) {
  RN_CHECK(source_ != nullptr, "[encoded set] no source");
  if (opts_.norm.mean.empty()) opts_.norm = imagenet_normalization();
  RN_CHECK(
      opts_.norm.mean.size() == 3 && opts_.norm.std.size() == 3,
      "[encoded set] normalization has " << opts_.norm.mean.size() << " channels; images have 3");
  for (int c = 0; c < 3; ++c) {
    const float sd = opts_.norm.std[static_cast<size_t>(c)];
    RN_CHECK(sd > 0, "[encoded set] standard deviation of channel " << c << " is " << sd);
    mul_[c] = 1.0f / (255.0f * sd);
    add_[c] = -opts_.norm.mean[static_cast<size_t>(c)] / sd;
  }
  side_ =
      opts_.train && opts_.augment.recipe != Recipe::none ? opts_.augment.crop : opts_.eval.crop;
  RN_CHECK(side_ >= 1, "[encoded set] crop " << side_);
}

SampleShape EncodedSet::shape() const {
  return {opts_.train ? 1 : opts_.eval.views, 3, side_, side_};
}

void EncodedSource::read_many(const int64_t* indices, size_t n,
                              std::vector<std::vector<uint8_t>>& out,
                              std::vector<std::string>& errors) const {
  size_read_buffers(n, out, errors);
  for (size_t k = 0; k < n; ++k) {
    try {
      read(indices[k], out[k]);
    } catch (const BadSample& e) {
      errors[k] = e.what();
    }
  }
}

void size_read_buffers(size_t n, std::vector<std::vector<uint8_t>>& out,
                       std::vector<std::string>& errors) {
  if (out.size() < n) out.resize(n);
  if (errors.size() < n) errors.resize(n);
  for (size_t k = 0; k < n; ++k) errors[k].clear();
}

void EncodedSet::prepare(const int64_t* indices, size_t n, SampleScratch& s) const {
  s.ahead_index.assign(indices, indices + n);
  s.ahead_next = 0;
  source_->read_many(indices, n, s.ahead, s.ahead_error);
}

void EncodedSet::make(int64_t epoch, int64_t index, float* out, SampleScratch& s) const {
  // The bytes read ahead for this sample (make() follows prepare()'s order; a substitute or a
  // caller without prepare() reads its own).
  const std::vector<uint8_t>* bytes = &s.bytes;
  if (s.ahead_next < s.ahead_index.size() && s.ahead_index[s.ahead_next] == index) {
    const size_t k = s.ahead_next++;
    if (!s.ahead_error[k].empty()) throw BadSample(s.ahead_error[k]);
    bytes = &s.ahead[k];
  } else {
    source_->read(index, s.bytes);
  }
  const ImageHeader h = read_image_header(bytes->data(), bytes->size());
  thread_local std::vector<ImageView> views;  // capacity kept from sample to sample
  if (opts_.train && opts_.augment.recipe != Recipe::none) {
    views.assign(1, draw_train_view(opts_.augment, h.width, h.height, opts_.seed, epoch, index));
  } else {
    EvalTransform t = opts_.eval;
    if (opts_.train) t.views = 1;
    views = eval_views(t, h.width, h.height);
  }
  transform_encoded(bytes->data(), bytes->size(), views, side_, mul_, add_, out, s);
}

void transform_encoded(const uint8_t* bytes, size_t size, const std::vector<ImageView>& views,
                       int side, const float* mul, const float* add, float* out, SampleScratch& s) {
  RN_CHECK(!views.empty(), "[transform] no views");
  DecodeRequest req;
  const ImageView& v0 = views.front();
  req.out_width = side, req.out_height = side;
  if (views.size() == 1) {
    req.x = v0.x, req.y = v0.y, req.w = v0.w, req.h = v0.h;
    req.partial = true;
  } else {
    // Several views of one decode: the whole image, scaled no further than the views allow.
    req.w = v0.w, req.h = v0.h;
    req.partial = false;
  }
  DecodedImage& img = s.image;
  decode_image(bytes, size, req, img);
  const size_t stride = static_cast<size_t>(img.width) * img.channels;
  const size_t view_floats = 3 * static_cast<size_t>(side) * side;
  for (size_t i = 0; i < views.size(); ++i) {
    const ImageView& v = views[i];
    float shifted[3];
    for (int c = 0; c < 3; ++c)
      shifted[c] = add[c] + v.rgb_shift[static_cast<size_t>(c)] * 255.0f * mul[c];
    ResampleOut o{.width = side,
                  .height = side,
                  .flip = v.flip,
                  .mul = mul,
                  .add = shifted,
                  .planes = out + view_floats * i};
    resample_box(img.pixels.data(), img.width, img.height, img.channels, stride, img.map_x(v.x),
                 img.map_y(v.y), img.map_w(v.w), img.map_h(v.h), o, s.resample);
  }
}

}  // namespace rn::io

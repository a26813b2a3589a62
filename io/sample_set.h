// SampleSet: what the loader reads. Each sample becomes `views` x C x H x W normalised floats,
// written by the loader's worker straight into its batch slot. Behind it sit the in-memory sets
// (idx, CIFAR, synthetic: decoded bytes plus SampleTransform) and the streamed ones (an image
// folder or a packed file: encoded bytes, decoded and augmented per sample).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "io/image_decode.h"
#include "io/image_set.h"
#include "io/image_transform.h"
#include "io/resample.h"

namespace rn::io {

// One worker's buffers, reused from sample to sample so that steady state does not allocate.
struct SampleScratch {
  std::vector<uint8_t> bytes;
  DecodedImage image;
  ResampleScratch resample;
  // A batch's encoded samples read ahead in one go (SampleSet::prepare): ahead_index[k]'s
  // bytes, or the reason they could not be read; make() takes them in order.
  std::vector<int64_t> ahead_index;
  std::vector<std::vector<uint8_t>> ahead;
  std::vector<std::string> ahead_error;
  size_t ahead_next = 0;
  void clear_ahead() { ahead_index.clear(), ahead_next = 0; }
};

struct SampleShape {
  int views = 1, channels = 0, height = 0, width = 0;
  size_t floats() const {
    return static_cast<size_t>(views) * channels * static_cast<size_t>(height) * width;
  }
};

class SampleSet {
 public:
  virtual ~SampleSet() = default;
  virtual int64_t size() const = 0;
  virtual int num_classes() const = 0;
  virtual int32_t label(int64_t index) const = 0;
  virtual SampleShape shape() const = 0;
  // Writes sample `index` as seen in `epoch` (shape().floats() floats). Throws BadSample when
  // the sample's file cannot be used.
  virtual void make(int64_t epoch, int64_t index, float* out, SampleScratch& scratch) const = 0;
  // Called with a batch's indices before make() is called for each of them in that order:
  // streamed sets read the batch's bytes here, coalescing neighbouring samples into one read.
  virtual void prepare(const int64_t* indices, size_t n, SampleScratch& scratch) const {
    (void)indices, (void)n;
    scratch.clear_ahead();
  }
  // The sample in messages: its file, or "sample N".
  virtual std::string describe(int64_t index) const;
  // Problems found while listing the set (empty class folders), for the epoch's bad count.
  virtual int64_t listing_problems() const { return 0; }
};

// A decoded set in memory. Training: SampleTransform (pad + crop + flip). Evaluation with 10
// views: the four corners and the centre of the image padded by `ten_crop_pad` (the training's
// crop_pad) at full size, as training saw them, and their mirror images; without padding, the
// four corners and the centre at 7/8 of the side, and their mirror images.
class MemorySet : public SampleSet {
 public:
  MemorySet(ImageSet data, AugmentOptions augment, const Normalization& norm, uint64_t seed,
            int views = 1, int ten_crop_pad = 0);
  int64_t size() const override { return data_.count; }
  int num_classes() const override { return data_.num_classes; }
  int32_t label(int64_t index) const override { return data_.labels[static_cast<size_t>(index)]; }
  SampleShape shape() const override;
  void make(int64_t epoch, int64_t index, float* out, SampleScratch& scratch) const override;
  const ImageSet& data() const { return data_; }

 private:
  ImageSet data_;
  SampleTransform transform_;
  int views_;
  int ten_crop_pad_;
};

// Where encoded samples come from: the files of an image folder, or a packed HDF5 file.
class EncodedSource {
 public:
  virtual ~EncodedSource() = default;
  virtual int64_t size() const = 0;
  virtual int32_t label(int64_t index) const = 0;
  virtual const std::vector<std::string>& class_names() const = 0;
  virtual std::string path(int64_t index) const = 0;
  // The sample's encoded bytes into `bytes` (resized). Throws BadSample when unreadable.
  virtual void read(int64_t index, std::vector<uint8_t>& bytes) const = 0;
  // Samples indices[0..n) into out[k] (resized; out.size() >= n), or, where one cannot be
  // read, the reason into errors[k] (empty where it was read). Sources that can coalesce
  // neighbouring samples into one large read do; the default reads one by one.
  virtual void read_many(const int64_t* indices, size_t n, std::vector<std::vector<uint8_t>>& out,
                         std::vector<std::string>& errors) const;
  virtual int64_t listing_problems() const { return 0; }
};

// `limit` samples of `src` spread evenly over it (all of it when `limit` is 0 or more than it
// has): encoded sets are listed class by class, so the first N samples would be one class.
std::unique_ptr<EncodedSource> spread_subset(std::unique_ptr<EncodedSource> src, int64_t limit);

// read_many's buffers sized for n samples (kept capacity: no allocation once they have held
// as many).
void size_read_buffers(size_t n, std::vector<std::vector<uint8_t>>& out,
                       std::vector<std::string>& errors);

// Per-channel statistics of ImageNet (torchvision's), for encoded sets without their own.
Normalization imagenet_normalization();

// Encoded images decoded, augmented and normalised per sample (three channels; grayscale is
// replicated). Training draws one view per `augment`; evaluation takes `eval`'s views.
class EncodedSet : public SampleSet {
 public:
  struct Options {
    bool train = true;
    ImageAugment augment;
    EvalTransform eval;
    Normalization norm;  // empty: imagenet_normalization()
    uint64_t seed = 0;
  };
  EncodedSet(std::unique_ptr<EncodedSource> source, Options options);
  int64_t size() const override { return source_->size(); }
  int num_classes() const override { return static_cast<int>(source_->class_names().size()); }
  int32_t label(int64_t index) const override { return source_->label(index); }
  SampleShape shape() const override;
  void make(int64_t epoch, int64_t index, float* out, SampleScratch& scratch) const override;
  void prepare(const int64_t* indices, size_t n, SampleScratch& scratch) const override;
  std::string describe(int64_t index) const override { return source_->path(index); }
  int64_t listing_problems() const override { return source_->listing_problems(); }
  const EncodedSource& source() const { return *source_; }

 private:
  std::unique_ptr<EncodedSource> source_;
  Options opts_;
  float mul_[3], add_[3];  // pixel -> (pixel / 255 - mean) / std
  int side_;               // output height and width
};

// Decodes `bytes` and writes the views into `out` (3 x side x side floats each): the shared
// core of EncodedSet::make and of `resnet data bench`.
void transform_encoded(const uint8_t* bytes, size_t size, const std::vector<ImageView>& views,
                       int side, const float* mul, const float* add, float* out,
                       SampleScratch& scratch);

}  // namespace rn::io

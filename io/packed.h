// The packed data set: one HDF5 file holding a folder's encoded images back to back, so that a
// shared file system sees one big file instead of a million small ones.
//
//   /images    uint8 [total bytes], contiguous: sample i is images[offsets[i], offsets[i+1])
//   /offsets   uint64 [N + 1]
//   /labels    int32 [N]
//   /classes   uint8: the class names, each ended by a NUL byte
//   /paths     uint8: each sample's source path (relative to the folder), NUL-ended
//   attributes format = "resnet-packed", format_version = 1, source, resize_shorter, quality
//
// Samples keep the folder's order and labels, so a packed file gives the same batches as the
// folder it came from; a file that was bad in the folder is stored as it was and stays bad.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/image_folder.h"

namespace rn::io {

inline constexpr char kPackedFormat[] = "resnet-packed";
inline constexpr int kPackedFormatVersion = 1;

struct PackOptions {
  int resize_shorter = 0;  // > 0: re-encode images whose shorter side is longer
  int quality = 90;        // of re-encoded images
  int threads = 1;
  bool stop_on_bad = false;  // a bad file ends the pack (else it is stored as is, counted)
  std::function<void(const std::string&)> warn;
  std::function<void(int64_t done, int64_t total)> progress;
};

struct PackResult {
  int64_t samples = 0, bad = 0, resized = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

// Packs the image folder `from` (what ImageFolder takes as its root) into `to`; written as
// `to`.tmp and renamed, so `to` is whole or absent.
PackResult pack_image_folder(const std::string& from, const std::string& to,
                             const PackOptions& options);

// Reads a packed file's samples with pread on the images' raw offset in the file.
class PackedSource : public EncodedSource {
 public:
  explicit PackedSource(const std::string& path);
  ~PackedSource() override;
  PackedSource(const PackedSource&) = delete;
  PackedSource& operator=(const PackedSource&) = delete;

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int32_t label(int64_t index) const override { return labels_[static_cast<size_t>(index)]; }
  const std::vector<std::string>& class_names() const override { return classes_; }
  std::string path(int64_t index) const override;
  void read(int64_t index, std::vector<uint8_t>& bytes) const override;
  // The samples in file order, neighbours (at most kMaxGap apart) joined into one preadv of
  // up to kMaxRead bytes: a batch in file order is a few large reads.
  void read_many(const int64_t* indices, size_t n, std::vector<std::vector<uint8_t>>& out,
                 std::vector<std::string>& errors) const override;
  static constexpr uint64_t kMaxGap = 256 << 10;
  static constexpr uint64_t kMaxRead = 64 << 20;

  // System calls made by read() and read_many(), and the bytes they read (gaps included).
  int64_t read_calls() const { return read_calls_.load(std::memory_order_relaxed); }
  int64_t read_bytes() const { return read_bytes_.load(std::memory_order_relaxed); }

  const std::string& file() const { return path_; }
  const std::string& source() const { return source_; }
  int resize_shorter() const { return resize_shorter_; }
  int quality() const { return quality_; }
  uint64_t image_bytes() const { return offsets_.back(); }
  uint64_t sample_bytes(int64_t index) const {
    return offsets_[static_cast<size_t>(index) + 1] - offsets_[static_cast<size_t>(index)];
  }

 private:
  // Fills `iov` from the images' bytes starting at `from`, however the kernel splits the read;
  // "" or why not.
  std::string read_vectors(std::vector<iovec>& iov, uint64_t from) const;

  std::string path_, source_;
  int resize_shorter_ = 0, quality_ = 0;
  std::vector<uint64_t> offsets_;
  std::vector<int32_t> labels_;
  std::vector<std::string> classes_, paths_;
  uint64_t base_ = 0;  // the images' first byte in the file
  int fd_ = -1;
  mutable std::atomic<int64_t> read_calls_{0}, read_bytes_{0};
};

// `resnet data inspect`: the summary of a packed file, several lines of text.
std::string describe_packed(const std::string& path);

}  // namespace rn::io

// Image folders in torchvision's ImageFolder layout: root/<class>/**/<image>, classes from the
// sorted folder names, files from a sorted walk that follows links, filtered by extension.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/collective.h"
#include "io/sample_set.h"

namespace rn::io {

// torchvision's IMG_EXTENSIONS, compared case-insensitively. Files are listed by name as
// torchvision lists them (so indices agree); those that are not JPEG or PNG inside are bad
// samples when read.
bool has_image_extension(const std::string& name);

struct FolderListing {
  std::string root;
  std::vector<std::string> classes;  // sorted folder names; label = index
  std::vector<std::string> files;    // relative to root, in torchvision's order
  std::vector<int32_t> labels;
  std::vector<std::string> empty_classes;  // class folders without an image file
  // Every folder walked and its modification time (ns): a cached listing is stale when one of
  // them changed (adding or removing a file changes its folder's time).
  std::vector<std::pair<std::string, int64_t>> folders;
};

// Lists `root` with `threads` threads (class folders are shared out). Throws rn::Error when the
// root is missing or has no class folder.
FolderListing list_image_folder(const std::string& root, int threads);

// A listing as bytes and back (for the broadcast to other ranks and for the cache file).
std::vector<uint8_t> serialize(const FolderListing& listing);
FolderListing deserialize_listing(const std::vector<uint8_t>& bytes, const std::string& what);

// The cache beside a run: `cache_path` holds the listing of `root` when it is there, was made
// for the same root, and no listed folder has changed since. Otherwise false.
bool load_cached_listing(const std::string& cache_path, const std::string& root,
                         FolderListing& listing);
void save_cached_listing(const std::string& cache_path, const FolderListing& listing);

// The listing of `root`, made once for every rank of `comm`: rank 0 lists it with `threads`
// threads (or reads `cache` when that file holds root's listing, and writes it there when
// `cache` is not empty and it did not) and broadcasts it, so that a million files are walked
// once per job, not once per rank. An error on rank 0 is thrown on every rank. `from_cache`
// (rank 0) says whether the cache served.
FolderListing list_image_folder_once(Collective& comm, const std::string& root,
                                     const std::string& cache, int threads,
                                     bool* from_cache = nullptr);

// The listing's files, read whole from disk.
class FolderSource : public EncodedSource {
 public:
  explicit FolderSource(FolderListing listing);
  int64_t size() const override { return static_cast<int64_t>(listing_.files.size()); }
  int32_t label(int64_t index) const override {
    return listing_.labels[static_cast<size_t>(index)];
  }
  const std::vector<std::string>& class_names() const override { return listing_.classes; }
  std::string path(int64_t index) const override;
  void read(int64_t index, std::vector<uint8_t>& bytes) const override;
  int64_t listing_problems() const override {
    return static_cast<int64_t>(listing_.empty_classes.size());
  }
  const FolderListing& listing() const { return listing_; }

 private:
  FolderListing listing_;
};

// Reads a whole file into `bytes`; throws BadSample naming the file and the system's reason.
void read_whole_file(const std::string& path, std::vector<uint8_t>& bytes);

}  // namespace rn::io

// Reading idx files: gzip inflation through zlib, header validation, images with labels.
#include "io/idx_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <system_error>

#include "core/check.h"

namespace rn::io {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

std::string dims_text(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? "x" : "") << dims[i];
  return os.str();
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

std::vector<uint8_t> read_file_maybe_gz(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) RN_FAIL(path << ": no such file");
  if (std::filesystem::is_directory(status)) RN_FAIL(path << ": is a directory, not a file");

  // gzread passes files without a gzip header through unchanged, so one path serves both.
  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) {
    RN_FAIL(path << ": cannot open: " << (errno ? std::strerror(errno) : "out of memory"));
  }
  gzbuffer(file.get(), 1 << 18);

  std::vector<uint8_t> bytes;
  // The compressed size is a cheap lower bound that saves most of the regrowth.
  const auto on_disk = std::filesystem::file_size(path, ec);
  if (!ec) bytes.reserve(static_cast<size_t>(on_disk));
  constexpr size_t kChunk = size_t{1} << 20;
  size_t used = 0;
  for (;;) {
    if (bytes.size() < used + kChunk) bytes.resize(std::max(used + kChunk, bytes.size() * 2));
    const int got = gzread(file.get(), bytes.data() + used, static_cast<unsigned>(kChunk));
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(file.get(), &code);
      RN_FAIL(path << ": cannot read: " << (code == Z_ERRNO ? std::strerror(errno) : msg)
                   << " (zlib)");
    }
    if (got == 0) break;
    used += static_cast<size_t>(got);
  }
  // A gzip stream cut short still yields its first bytes; zlib flags it only here.
  int code = 0;
  const char* msg = gzerror(file.get(), &code);
  if (code != Z_OK) {
    RN_FAIL(path << ": corrupt or truncated gzip data: " << msg << " (after " << used << " bytes)");
  }
  bytes.resize(used);
  bytes.shrink_to_fit();
  return bytes;
}

IdxHeader parse_idx_header(const std::vector<uint8_t>& bytes, int ndims, const std::string& path,
                           const char* what) {
  RN_CHECK(ndims >= 1 && ndims <= 255, "[idx] bad rank " << ndims);
  const size_t header_size = 4 + 4 * static_cast<size_t>(ndims);
  // Type 0x08 is unsigned byte; the last byte of the magic is the number of dimensions.
  const uint32_t expected_magic = 0x00000800u | static_cast<uint32_t>(ndims);
  char expected_hex[16];
  std::snprintf(expected_hex, sizeof expected_hex, "0x%08x", expected_magic);

  if (bytes.size() < 4) {
    RN_FAIL(path << ": too short for an idx file (" << bytes.size() << " bytes)");
  }
  const uint32_t magic = big_endian_u32(bytes.data());
  if (magic != expected_magic) {
    char got_hex[16];
    std::snprintf(got_hex, sizeof got_hex, "0x%08x", magic);
    RN_FAIL(path << ": bad magic number " << got_hex << ", expected " << expected_hex << " (idx"
                 << ndims << " of unsigned bytes, " << what << ")");
  }
  if (bytes.size() < header_size) {
    RN_FAIL(path << ": truncated: " << bytes.size() << " bytes, shorter than the " << header_size
                 << "-byte idx" << ndims << " header");
  }

  IdxHeader header;
  header.data_offset = header_size;
  size_t total = 1;
  bool overflow = false;
  for (int d = 0; d < ndims; ++d) {
    const uint32_t dim = big_endian_u32(bytes.data() + 4 + 4 * d);
    if (dim == 0) RN_FAIL(path << ": dimension " << d << " of the idx header is 0");
    header.dims.push_back(static_cast<int64_t>(dim));
    overflow = overflow || __builtin_mul_overflow(total, size_t{dim}, &total);
  }
  const size_t have = bytes.size() - header_size;
  if (overflow || total > have) {
    RN_FAIL(path << ": truncated: header says " << dims_text(header.dims) << " = "
                 << (overflow ? std::string("more than 2^64") : std::to_string(total))
                 << " bytes of " << what << ", file has " << have);
  }
  if (total < have) {
    RN_FAIL(path << ": " << (have - total) << " bytes of trailing data after the "
                 << dims_text(header.dims) << " = " << total << " bytes of " << what
                 << " the header describes");
  }
  header.data_size = total;
  return header;
}

ImageSet read_idx_images_and_labels(const std::string& images_path,
                                    const std::string& labels_path) {
  // Labels first: they are small, so a wrong pairing is reported before inflating 47 MB.
  std::vector<uint8_t> label_bytes = read_file_maybe_gz(labels_path);
  const IdxHeader lh = parse_idx_header(label_bytes, 1, labels_path, "labels");

  std::vector<uint8_t> image_bytes = read_file_maybe_gz(images_path);
  const IdxHeader ih = parse_idx_header(image_bytes, 3, images_path, "pixels");

  if (lh.dims[0] != ih.dims[0]) {
    RN_FAIL(labels_path << ": " << lh.dims[0] << " labels, but " << images_path << " has "
                        << ih.dims[0] << " images");
  }
  if (ih.dims[1] > INT32_MAX || ih.dims[2] > INT32_MAX) {
    RN_FAIL(images_path << ": image size " << ih.dims[1] << "x" << ih.dims[2] << " is too large");
  }

  ImageSet set;
  set.count = ih.dims[0];
  set.channels = 1;
  set.height = static_cast<int>(ih.dims[1]);
  set.width = static_cast<int>(ih.dims[2]);
  // Moving the buffer and dropping the 16-byte header avoids a second 47 MB allocation.
  image_bytes.erase(image_bytes.begin(),
                    image_bytes.begin() + static_cast<std::ptrdiff_t>(ih.data_offset));
  set.pixels = std::move(image_bytes);

  set.labels.resize(static_cast<size_t>(set.count));
  int max_label = 0;
  for (size_t i = 0; i < set.labels.size(); ++i) {
    // Unsigned bytes, so every label is already within [0, 256).
    const uint8_t label = label_bytes[lh.data_offset + i];
    set.labels[i] = label;
    max_label = std::max(max_label, int{label});
  }
  set.num_classes = max_label + 1;
  return set;
}

}  // namespace rn::io

// Readers for the idx format of MNIST and Fashion-MNIST, gzipped or plain.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/image_set.h"

namespace rn::io {

// The whole file, inflated if it is gzip (recognised by its content, not its name). Missing,
// unreadable or corrupt files throw rn::Error naming the path.
std::vector<uint8_t> read_file_maybe_gz(const std::string& path);

// The header of one idx array of unsigned bytes, validated against the file's length.
struct IdxHeader {
  std::vector<int64_t> dims;  // each > 0
  size_t data_offset = 0;     // where the values start
  size_t data_size = 0;       // product of dims, equal to the bytes after the header
};

// Checks magic 0x0000 08 <ndims> (unsigned bytes, `ndims` dimensions), positive dimensions and
// an exact byte count: a truncated file or one with trailing data is an error. `path` and
// `what` ("pixels", "labels") only word the messages.
IdxHeader parse_idx_header(const std::vector<uint8_t>& bytes, int ndims, const std::string& path,
                           const char* what);

// An idx3 image file (N x H x W, one channel) and its idx1 label file, which must hold as
// many labels as there are images.
ImageSet read_idx_images_and_labels(const std::string& images_path, const std::string& labels_path);

}  // namespace rn::io

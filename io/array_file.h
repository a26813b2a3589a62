// Plain HDF5 array files, the input and output of `resnet infer` and `resnet step`: named
// datasets of float32 or integers, readable and writable by h5py (no checksums, no attributes).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "io/hdf5_handle.h"

namespace rn::io {

struct FloatArray {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};

// Opens an existing array file for reading (one process); every read names the file and the
// dataset in its one-line error.
class ArrayReader {
 public:
  // In a file of HDF5's original format the values are read in child processes (read_in_child),
  // at most `child_read_bytes` at a time.
  explicit ArrayReader(const std::string& path, size_t child_read_bytes = size_t{256} << 20);
  bool has(const std::string& name) const;
  // A float32 dataset; another type (float64 included: the caller decides, not a silent cast)
  // is an error.
  FloatArray read_f32(const std::string& name) const;
  // An integer dataset of any width and sign, as int64, with its shape.
  std::vector<int64_t> read_integers(const std::string& name, std::vector<int64_t>* shape) const;
  // The shape of dataset `name`, read without its values (to check it before they are read).
  std::vector<int64_t> shape(const std::string& name) const;

 private:
  // Opens dataset `name`; in a file without metadata checksums, after a probe in a child (once
  // per name).
  H5Id open_dataset(const std::string& name) const;
  H5Id open_unprobed(const std::string& name) const;
  // Reads all of `set` (of `shape`) as `memory_type` into `dst` (`bytes` long); in a file
  // without metadata checksums and values not stored contiguously, in a child (read_in_child).
  void read_values(hid_t set, hid_t memory_type, const std::vector<int64_t>& shape, void* dst,
                   size_t bytes) const;
  std::string path_;
  H5Id file_;
  size_t child_read_bytes_;
  bool unchecked_ = false;                // HDF5's original format: metadata without checksums
  mutable std::set<std::string> probed_;  // the datasets whose metadata a child has read
};

// "N x C x H x W" ("a scalar" for none): how error lines write a dataset's shape.
std::string shape_text(const std::vector<int64_t>& shape);

// Creates (or replaces) an array file; parent groups of a dataset are created as needed.
class ArrayWriter {
 public:
  explicit ArrayWriter(const std::string& path);
  void write_f32(const std::string& name, const std::vector<int64_t>& shape, const float* values);
  void write_f64(const std::string& name, double value);  // a scalar
  void write_i64(const std::string& name, const std::vector<int64_t>& shape, const int64_t* values);

 private:
  void write(const std::string& name, const std::vector<int64_t>& shape, hid_t file_type,
             hid_t memory_type, const void* values);

  std::string path_;
  H5Id file_;
};

}  // namespace rn::io

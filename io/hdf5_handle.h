// Small pieces the checkpoint reader and writer share: an owning HDF5 id, attribute read/write,
// the checksum, the native types, and the few MPI steps that keep ranks in agreement (a no-op
// without a communicator).
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"

namespace rn::io {

// Owns one HDF5 id and closes it with the matching H5?close.
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Id(H5Id&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) close(), id_ = std::exchange(o.id_, -1), close_ = o.close_;
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() { close(); }
  hid_t get() const { return id_; }
  void close() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// HDF5 prints its error stack to stderr by default; the project reads the stack into its own
// exceptions instead (RN_HDF5_CHECK), so the automatic printing is turned off.
void silence_hdf5_errors();

// zlib's CRC-32 of `bytes` bytes, the checksum each dataset carries.
uint32_t crc_of(const void* data, size_t bytes);

// The native in-memory HDF5 type of a numeric entry type (-1 for text, whose type is its size).
hid_t native_type(EntryType t);

void write_attribute(hid_t obj, const char* name, const std::string& value);
void write_attribute(hid_t obj, const char* name, int64_t value);
void write_attribute(hid_t obj, const char* name, uint32_t value);
// False when `obj` has no attribute `name`; throws when it has one of another kind.
bool read_attribute(hid_t obj, const char* name, std::string& value);
bool read_attribute(hid_t obj, const char* name, int64_t& value);

// The communicator's rank and size, and the steps of agreement; every call is collective.
class Collective {
 public:
  explicit Collective(MPI_Comm comm);
  int rank() const { return rank_; }
  int size() const { return size_; }
  void broadcast(void* data, size_t bytes, int root) const;
  // Throws on every rank when `error` is non-empty on any: the lowest such rank's message.
  void agree(const std::string& error) const;
  void bitwise_or(std::vector<uint32_t>& values) const;
  // Whether every rank runs on this machine (collective).
  bool one_node() const;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace rn::io

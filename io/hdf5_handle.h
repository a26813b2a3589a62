// Small pieces the checkpoint reader and writer share: an owning HDF5 id, attribute read/write,
// the checksum, the native types, and the few MPI steps that keep ranks in agreement (a no-op
// without a communicator).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <functional>
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

// Files the project writes keep every byte HDF5 parses under a checksum that HDF5 verifies as it
// reads it, so that damaged metadata is an error, not a pointer followed into nowhere:
// - the 1.8 file format (superblock version 2, version 2 object headers, new-style groups), whose
//   superblock and object headers carry Jenkins checksums (checksummed_access_list);
// - links and attributes kept in their object's header (compact storage) however many there are
//   (checksummed_create_list for the root group, checksummed_group_list for the others): past 8
//   HDF5 would move them to a fractal heap, whose blocks carry no checksum, and HDF5 1.10 frees
//   uninitialised pointers when a damaged heap block leaves a group's link table half built.
// HDF5 1.8 and later (h5py included) read these files; files in the older format stay readable.
H5Id checksummed_access_list();
H5Id checksummed_create_list();
H5Id checksummed_group_list();
// Creates the groups above `path` ("a/b/name": a and a/b) that do not exist yet, with
// checksummed_group_list (instead of HDF5's intermediate groups, which take the defaults).
void create_parent_groups(hid_t file, const std::string& path, hid_t gcpl);
// Creates every group above the `paths` of a whole file at once, each with
// checksummed_group_list sized for the links it will hold (H5Pset_est_link_info): its header is
// then made large enough once, where growing a compact group link by link costs time quadratic
// in its links (4,000 links: 31 s, against 0.3 s sized).
void create_groups(hid_t file, const std::vector<std::string>& paths);

// The version of the HDF5 superblock of the file at `path` (read with plain reads, at the
// offsets HDF5 looks at: 0, 512, 1024, ...), or -1 when there is none. Versions 0 and 1 are
// HDF5's original format, whose metadata carries no checksums.
int superblock_version(const std::string& path);

// HDF5 1.10 trusts the metadata of files in its original format and can crash on a damaged one
// (a heap block's size taken as is, an unchecked allocation). `body` (which opens the file and
// reads the metadata the caller will read) runs first in a child process; if the child dies of
// a signal, this throws "'PATH': damaged: HDF5 crashed reading its metadata (...)". An exception
// in the child only ends the child: the caller meets the same error itself, with its own words.
// True when `body` ran through in the child; false when it threw there, or no child could be made.
// A child still at work after `limit_s` seconds is killed: "'PATH': damaged: HDF5 did not finish
// reading it in N s; ...".
inline constexpr double kChildLimitS = 60;
bool probe_in_child(const std::string& path, const std::function<void()>& body,
                    double limit_s = kChildLimitS);

// The values of a file in HDF5's original format are found through metadata without checksums
// too (a chunked dataset's index gives each chunk's place and size, which HDF5 1.10 copies as
// given). `read(buffer)` runs in a child (as `probe_in_child`), into `bytes` of memory shared
// with this process, which are then copied to `dst`: the values are read once, and a crash is the
// same one-line error. False, with nothing copied, when the child's read threw or no child or
// shared memory could be had: the caller then reads into `dst` itself (and meets that error).
// The child's time limit is a minute plus `bytes` at 4 MiB/s.
bool read_in_child(const std::string& path, void* dst, size_t bytes,
                   const std::function<void(void*)>& read);

// Whether dataset `set` stores its values as one contiguous extent, which HDF5 checks against
// the file's end; the index of a chunked dataset (and a compact one's header) is more metadata,
// without checksums in the original format, so its values are read with read_in_child there.
bool stored_contiguously(hid_t set);

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

// The steps of agreement of a collective write or read; every call is collective over `comm`.
// Throws on every rank when `error` is non-empty on any: the lowest such rank's message.
void agree(Collective& comm, const std::string& error);
// `bytes` from `root` to every rank, in pieces of at most 1 GiB.
void broadcast_bytes(Collective& comm, void* data, size_t bytes, int root);
// Values that each rank filled only where it owns them (0 elsewhere), made whole on every rank.
void merge_owned(Collective& comm, std::vector<uint32_t>& values);
// Sets `fapl` to parallel HDF5's MPI-IO driver on the MPI communicator under `comm`: the adapter
// between the project's collectives and HDF5, and the one place in io that sees MPI.
void set_mpio_driver(hid_t fapl, const Collective& comm);

}  // namespace rn::io

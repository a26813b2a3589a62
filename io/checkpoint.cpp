// Checkpoint files: the collective HDF5 write (create all datasets together, each rank writes
// its share independently, checksums as attributes, rename once all are done) and the reads.
#include "io/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <future>
#include <numeric>
#include <thread>

#include "core/check.h"
#include "io/hdf5_handle.h"

namespace rn::io {
namespace {

namespace fs = std::filesystem;

std::string iso_time(int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The file's dataset type for `t` (for text, a fixed-length string of `len` bytes).
H5Id file_type(EntryType t, size_t len) {
  switch (t) {
    case EntryType::f32:
      return H5Id(RN_HDF5_CHECK(H5Tcopy(H5T_IEEE_F32LE)), H5Tclose);
    case EntryType::f64:
      return H5Id(RN_HDF5_CHECK(H5Tcopy(H5T_IEEE_F64LE)), H5Tclose);
    case EntryType::i64:
      return H5Id(RN_HDF5_CHECK(H5Tcopy(H5T_STD_I64LE)), H5Tclose);
    case EntryType::text:
      break;
  }
  H5Id s(RN_HDF5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
  RN_HDF5_CHECK(H5Tset_size(s.get(), std::max<size_t>(len, 1)));
  return s;
}

H5Id dataspace(const CheckpointEntry& e) {
  if (e.shape.empty() || e.type == EntryType::text)
    return H5Id(RN_HDF5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose);
  std::vector<hsize_t> dims(e.shape.begin(), e.shape.end());
  return H5Id(RN_HDF5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)),
              H5Sclose);
}

// Object headers are gathered in blocks of this size instead of between the tensors: a reader
// finds the metadata in a few blocks and the tensors in long unbroken stretches (a cold read of
// ResNet-50 0.11 s instead of 0.15 s).
constexpr size_t kMetaBlock = 1u << 20;
// Room for the metadata beside the tensors' bytes.
constexpr size_t kMetadataRoom = 2 * kMetaBlock;

// A file access list (checksummed metadata, hdf5_handle.h): MPI-IO with collective metadata when
// several ranks share the file, else HDF5's POSIX driver (MPI-IO's own layers made one rank's
// ResNet-50 write take 0.37 s instead of 0.18 s).
H5Id access_list(const Collective& comm) {
  H5Id fapl = checksummed_access_list();
  RN_HDF5_CHECK(H5Pset_meta_block_size(fapl.get(), kMetaBlock));
  if (comm.size() > 1) {
    set_mpio_driver(fapl.get(), comm);
    // Metadata read by one rank and broadcast, written collectively: without these every rank
    // reads each object header itself, which slows opening many small datasets.
    RN_HDF5_CHECK(H5Pset_all_coll_metadata_ops(fapl.get(), true));
    RN_HDF5_CHECK(H5Pset_coll_metadata_write(fapl.get(), true));
  }
  return fapl;
}

void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Starts the disk writing what this rank has written so far, every few MiB, so that the disk
// works while the next tensors are copied and the final fsync has little left to wait for (a
// ResNet-50 checkpoint: 0.06 s instead of 0.10 s for its bytes). Only a hint: any failure is
// left to the writes and the fsync to report.
class Writeback {
 public:
  explicit Writeback(const std::string& path) : fd_(::open(path.c_str(), O_WRONLY | O_CLOEXEC)) {}
  ~Writeback() {
    if (fd_ >= 0) ::close(fd_);
  }
  Writeback(const Writeback&) = delete;
  Writeback& operator=(const Writeback&) = delete;
  // `bytes` were written at `offset` (HADDR_UNDEF: not a contiguous dataset; ignored).
  void wrote(haddr_t offset, size_t bytes) {
    if (fd_ < 0 || offset == HADDR_UNDEF) return;
    if (offset != end_) {  // a new stretch; small ones (the small datasets) wait for the fsync
      if (end_ - start_ >= (1u << 20)) kick();
      start_ = offset;
    }
    end_ = offset + bytes;
    if (end_ - start_ >= (4u << 20)) kick(), start_ = end_;
  }

 private:
  void kick() {
    ::sync_file_range(fd_, static_cast<off_t>(start_), static_cast<off_t>(end_ - start_),
                      SYNC_FILE_RANGE_WRITE);
  }
  int fd_;
  uint64_t start_ = 0, end_ = 0;
};

// Rank 0 removes the temporary file on every way out of the writer but success.
struct TempFileGuard {
  std::string path;
  bool owner;
  bool keep = false;
  ~TempFileGuard() {
    std::error_code ec;
    if (owner && !keep) fs::remove(path, ec);
  }
};

// "the file system of 'dir' has N MiB free; the checkpoint needs M MiB" when it has too little
// room for the tensors and their metadata, else empty.
std::string space_shortage(const std::string& path, const std::vector<size_t>& sizes) {
  std::error_code ec;
  const fs::path dir =
      fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  const auto space = fs::space(dir, ec);
  const size_t need = std::accumulate(sizes.begin(), sizes.end(), size_t{0}) + kMetadataRoom;
  if (ec || space.available >= need) return "";
  return "the file system of '" + dir.string() + "' has " + std::to_string(space.available >> 20) +
         " MiB free; the checkpoint needs " + std::to_string((need + (1 << 20) - 1) >> 20) + " MiB";
}

// MPI-IO reports a full disk as a bare "file write failed": say so when it is the likely cause.
std::string space_note(const std::string& path, const std::vector<size_t>& sizes) {
  const std::string s = space_shortage(path, sizes);
  return s.empty() ? s : " [" + s + "]";
}

// Reserves the disk blocks of the file's first `bytes`, so that no later write of any rank can find
// the disk full. A failed write on one rank leaves the ranks' HDF5 states apart, and closing the
// file, which is collective, could then wait forever. File systems without fallocate go without.
void reserve(const std::string& tmp, uint64_t bytes) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  const off_t before = ::lseek(fd, 0, SEEK_END);
  const int rc = ::fallocate(fd, 0, 0, static_cast<off_t>(bytes));
  const int err = errno;
  if (rc != 0 && before >= 0) (void)!::ftruncate(fd, before);  // give back a partial reservation
  ::close(fd);
  if (rc != 0 && (err == ENOSPC || err == EDQUOT))
    RN_FAIL("cannot reserve " << (bytes >> 20) << " MiB: " << std::strerror(err));
}

}  // namespace

size_t entry_type_size(EntryType t) {
  switch (t) {
    case EntryType::f32:
      return 4;
    case EntryType::f64:
      return 8;
    case EntryType::i64:
      return 8;
    case EntryType::text:
      return 1;
  }
  return 1;
}

const char* entry_type_name(EntryType t) {
  switch (t) {
    case EntryType::f32:
      return "f32";
    case EntryType::f64:
      return "f64";
    case EntryType::i64:
      return "i64";
    case EntryType::text:
      return "text";
  }
  return "?";
}

size_t CheckpointEntry::bytes() const {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n * entry_type_size(type);
}

size_t CheckpointSummary::bytes() const {
  size_t n = 0;
  for (const auto& d : datasets) n += d.bytes;
  return n;
}

std::vector<int> assign_runs_by_bytes(const std::vector<size_t>& bytes, int world_size) {
  const size_t total = std::accumulate(bytes.begin(), bytes.end(), size_t{0});
  std::vector<int> owner(bytes.size(), 0);
  size_t before = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (total > 0) {
      const double middle = (static_cast<double>(before) + 0.5 * bytes[i]) / total;
      owner[i] = std::min(world_size - 1, static_cast<int>(middle * world_size));
    }
    before += bytes[i];
  }
  return owner;
}

void write_checkpoint(const std::string& path, const CheckpointHeader& header,
                      const std::vector<CheckpointEntry>& entries, Collective& col,
                      const CheckpointWriteOptions& options) {
  const std::string tmp = path + ".tmp";
  silence_hdf5_errors();
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  col.broadcast(&now, sizeof(now), 0);
  std::vector<size_t> sizes;
  for (const auto& e : entries) sizes.push_back(e.bytes());
  // Datasets are laid out in creation order: consecutive runs make each rank's writes (and a
  // later read's) one stretch of the file.
  const std::vector<int> owner = assign_runs_by_bytes(sizes, col.size());
  TempFileGuard guard{tmp, col.rank() == 0};
  const std::string where = "checkpoint '" + path + "': ";

  std::string error;
  // A disk without room is found before any file exists.
  if (col.rank() == 0) {
    const std::string shortage = space_shortage(path, sizes);
    if (!shortage.empty()) error = where + "not written: " + shortage;
  }
  agree(col, error);
  H5Id file;
  std::vector<H5Id> sets;
  // Collective: every rank creates the same file, groups and datasets.
  try {
    H5Id fapl = access_list(col);
    const H5Id fcpl = checksummed_create_list(), gcpl = checksummed_group_list();
    file = H5Id(RN_HDF5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get())),
                H5Fclose);
    H5Id dcpl(RN_HDF5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
    // Every byte is written below: filling first would write the file twice.
    RN_HDF5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
    RN_HDF5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
    for (const auto& e : entries) {
      H5Id type = file_type(e.type, e.bytes());
      H5Id space = dataspace(e);
      create_parent_groups(file.get(), e.path, gcpl.get());
      sets.emplace_back(
          RN_HDF5_CHECK(H5Dcreate2(file.get(), e.path.c_str(), type.get(), space.get(), H5P_DEFAULT,
                                   dcpl.get(), H5P_DEFAULT)),
          H5Dclose);
    }
    if (col.rank() == 0) {  // every tensor's place, and the metadata blocks among them
      uint64_t end = 0;
      for (size_t i = 0; i < sets.size(); ++i)
        if (const haddr_t at = H5Dget_offset(sets[i].get()); at != HADDR_UNDEF)
          end = std::max<uint64_t>(end, at + sizes[i]);
      reserve(tmp, end);
    }
  } catch (const std::exception& e) {
    error = where + "cannot create '" + tmp + "': " + e.what() + space_note(path, sizes);
  }
  agree(col, error);

  // Independent: each rank writes the datasets assigned to it.
  std::vector<uint32_t> crcs(entries.size(), 0);
  try {
    std::vector<char> buf;
    Writeback writeback(tmp);
    for (size_t i = 0; i < entries.size(); ++i) {
      if (owner[i] != col.rank()) continue;
      const auto& e = entries[i];
      buf.resize(std::max({e.bytes(), buf.size(), size_t{1}}));
      const void* bytes = e.fill(buf.data());
      // A large dataset's checksum runs on a second core while its bytes go to the file.
      const bool overlap = e.bytes() >= (1u << 20);
      auto crc = std::async(overlap ? std::launch::async : std::launch::deferred, crc_of, bytes,
                            e.bytes());
      H5Id mtype = e.type == EntryType::text ? file_type(e.type, e.bytes()) : H5Id();
      const herr_t rc =
          H5Dwrite(sets[i].get(), e.type == EntryType::text ? mtype.get() : native_type(e.type),
                   H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes);
      crcs[i] = crc.get();
      RN_HDF5_CHECK(rc);
      writeback.wrote(H5Dget_offset(sets[i].get()), e.bytes());
    }
    if (options.pause_after_data_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(options.pause_after_data_ms));
  } catch (const std::exception& e) {
    error = where + "writing '" + tmp + "' failed: " + e.what() + space_note(path, sizes);
  }
  agree(col, error);
  merge_owned(col, crcs);

  // Collective again: attributes (the same values on every rank), then close.
  try {
    for (size_t i = 0; i < entries.size(); ++i) write_attribute(sets[i].get(), "crc32", crcs[i]);
    const hid_t root = file.get();
    write_attribute(root, "format", std::string(kCheckpointFormat));
    write_attribute(root, "format_version", int64_t{kCheckpointFormatVersion});
    write_attribute(root, "model", header.model);
    write_attribute(root, "world_size", int64_t{header.world_size});
    write_attribute(root, "epoch", header.epoch);
    write_attribute(root, "step", header.step);
    write_attribute(root, "created", iso_time(now));
    write_attribute(root, "project_version", header.project_version);
    sets.clear();
    RN_HDF5_CHECK(H5Fflush(file.get(), H5F_SCOPE_GLOBAL));
    file.close();
  } catch (const std::exception& e) {
    error = where + "finishing '" + tmp + "' failed: " + e.what() + space_note(path, sizes);
  }
  agree(col, error);

  // Every rank is done: rank 0 makes the file durable, then gives it its name.
  if (col.rank() == 0) {
    fsync_path(tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
      error = where + "cannot rename '" + tmp + "': " + ec.message();
    else
      guard.keep = true,
      fsync_path(fs::path(path).parent_path().empty() ? fs::path(".")
                                                      : fs::path(path).parent_path());
  }
  agree(col, error);
}

}  // namespace rn::io

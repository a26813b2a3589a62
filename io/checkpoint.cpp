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

namespace {

// One checkpoint write, phase by phase. Every rank runs every phase; a phase ends agreed: a
// failure on any rank becomes the same exception on every rank before the next phase begins, so
// no rank waits in a collective call that another rank has left.
class CheckpointWriter {
 public:
  CheckpointWriter(const std::string& path, const CheckpointHeader& header,
                   const std::vector<CheckpointEntry>& entries, Collective& col,
                   const CheckpointWriteOptions& options)
      : path_(path),
        tmp_(path + ".tmp"),
        where_("checkpoint '" + path + "': "),
        header_(header),
        entries_(entries),
        col_(col),
        options_(options),
        guard_{tmp_, col.rank() == 0} {
    now_ = std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
    col_.broadcast(&now_, sizeof(now_), 0);
    for (const auto& e : entries_) sizes_.push_back(e.bytes());
    // Datasets are laid out in creation order: consecutive runs make each rank's writes (and a
    // later read's) one stretch of the file.
    owner_ = assign_runs_by_bytes(sizes_, col_.size());
  }

  // A disk without room is found before any file exists (rank 0 looks).
  void check_space() {
    if (col_.rank() == 0) {
      const std::string shortage = space_shortage(path_, sizes_);
      if (!shortage.empty()) error_ = where_ + "not written: " + shortage;
    }
    agree(col_, error_);
  }

  // Collective: every rank creates the same file, groups and datasets; rank 0 reserves the
  // file's blocks.
  void create() {
    try {
      H5Id fapl = access_list(col_);
      const H5Id fcpl = checksummed_create_list();
      file_ = H5Id(RN_HDF5_CHECK(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get())),
                   H5Fclose);
      H5Id dcpl(RN_HDF5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
      // Every byte is written below: filling first would write the file twice.
      RN_HDF5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
      RN_HDF5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
      std::vector<std::string> paths;
      for (const auto& e : entries_) paths.push_back(e.path);
      create_groups(file_.get(), paths);
      for (const auto& e : entries_) {
        H5Id type = file_type(e.type, e.bytes());
        H5Id space = dataspace(e);
        sets_.emplace_back(
            RN_HDF5_CHECK(H5Dcreate2(file_.get(), e.path.c_str(), type.get(), space.get(),
                                     H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)),
            H5Dclose);
      }
      if (col_.rank() == 0) reserve(tmp_, file_end());
    } catch (const std::exception& e) {
      error_ = where_ + "cannot create '" + tmp_ + "': " + e.what() + space_note(path_, sizes_);
    }
    agree(col_, error_);
  }

  // Independent: this rank writes the datasets assigned to it, and their checksums.
  void write_share() {
    crcs_.assign(entries_.size(), 0);
    try {
      std::vector<char> buf;
      Writeback writeback(tmp_);
      for (size_t i = 0; i < entries_.size(); ++i) {
        if (owner_[i] != col_.rank()) continue;
        write_dataset(i, buf);
        writeback.wrote(H5Dget_offset(sets_[i].get()), entries_[i].bytes());
      }
      if (options_.pause_after_data_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(options_.pause_after_data_ms));
    } catch (const std::exception& e) {
      error_ = where_ + "writing '" + tmp_ + "' failed: " + e.what() + space_note(path_, sizes_);
    }
    agree(col_, error_);
  }

  // Collective again: every checksum to every rank, the attributes (the same values on every
  // rank), then close.
  void finish() {
    merge_owned(col_, crcs_);
    try {
      for (size_t i = 0; i < entries_.size(); ++i)
        write_attribute(sets_[i].get(), "crc32", crcs_[i]);
      write_header(file_.get());
      sets_.clear();
      RN_HDF5_CHECK(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL));
      file_.close();
    } catch (const std::exception& e) {
      error_ = where_ + "finishing '" + tmp_ + "' failed: " + e.what() + space_note(path_, sizes_);
    }
    agree(col_, error_);
  }

  // Every rank is done: rank 0 makes the file durable, then gives it its name.
  void publish() {
    if (col_.rank() == 0) {
      fsync_path(tmp_);
      std::error_code ec;
      fs::rename(tmp_, path_, ec);
      if (ec)
        error_ = where_ + "cannot rename '" + tmp_ + "': " + ec.message();
      else
        guard_.keep = true,
        fsync_path(fs::path(path_).parent_path().empty() ? fs::path(".")
                                                         : fs::path(path_).parent_path());
    }
    agree(col_, error_);
  }

 private:
  // The end of the last dataset: every tensor's place, and the metadata blocks among them.
  uint64_t file_end() const {
    uint64_t end = 0;
    for (size_t i = 0; i < sets_.size(); ++i)
      if (const haddr_t at = H5Dget_offset(sets_[i].get()); at != HADDR_UNDEF)
        end = std::max<uint64_t>(end, at + sizes_[i]);
    return end;
  }

  void write_dataset(size_t i, std::vector<char>& buf) {
    const auto& e = entries_[i];
    buf.resize(std::max({e.bytes(), buf.size(), size_t{1}}));
    const void* bytes = e.fill(buf.data());
    // A large dataset's checksum runs on a second core while its bytes go to the file.
    const bool overlap = e.bytes() >= (1u << 20);
    auto crc =
        std::async(overlap ? std::launch::async : std::launch::deferred, crc_of, bytes, e.bytes());
    H5Id mtype = e.type == EntryType::text ? file_type(e.type, e.bytes()) : H5Id();
    const herr_t rc =
        H5Dwrite(sets_[i].get(), e.type == EntryType::text ? mtype.get() : native_type(e.type),
                 H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes);
    crcs_[i] = crc.get();
    RN_HDF5_CHECK(rc);
  }

  void write_header(hid_t root) const {
    write_attribute(root, "format", std::string(kCheckpointFormat));
    write_attribute(root, "format_version", int64_t{kCheckpointFormatVersion});
    write_attribute(root, "model", header_.model);
    write_attribute(root, "world_size", int64_t{header_.world_size});
    write_attribute(root, "epoch", header_.epoch);
    write_attribute(root, "step", header_.step);
    write_attribute(root, "created", iso_time(now_));
    write_attribute(root, "project_version", header_.project_version);
  }

  const std::string path_, tmp_, where_;
  const CheckpointHeader& header_;
  const std::vector<CheckpointEntry>& entries_;
  Collective& col_;
  const CheckpointWriteOptions& options_;
  TempFileGuard guard_;  // removes the temporary file unless it was published
  int64_t now_ = 0;      // rank 0's clock, the file's "created"
  std::vector<size_t> sizes_;
  std::vector<int> owner_;  // the rank writing each dataset
  std::string error_;       // this rank's failure in the current phase
  H5Id file_;
  std::vector<H5Id> sets_;
  std::vector<uint32_t> crcs_;
};

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointHeader& header,
                      const std::vector<CheckpointEntry>& entries, Collective& col,
                      const CheckpointWriteOptions& options) {
  silence_hdf5_errors();
  CheckpointWriter writer(path, header, entries, col, options);
  writer.check_space();
  writer.create();
  writer.write_share();
  writer.finish();
  writer.publish();
}

}  // namespace rn::io

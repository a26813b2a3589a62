// HDF5 checkpoint files: written by all ranks together through parallel HDF5 (MPI-IO), each
// rank writing the datasets assigned to it; read back with per-dataset CRC-32 verification.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/collective.h"

namespace rn::io {

// Element types a checkpoint stores; `text` is one fixed-length string (the config).
enum class EntryType : uint8_t { f32, f64, i64, text };
size_t entry_type_size(EntryType t);  // 1 for text
const char* entry_type_name(EntryType t);

// One dataset to write. `path` is relative to the root ("model/conv1.weight"); its group is
// created as needed. `fill` gives the dataset's bytes: it writes them into `scratch` (bytes() long)
// and returns it, or returns memory of its own that stays valid until the write returns (a plain
// host tensor, saving a copy). It runs only on the rank the dataset is assigned to, so a rank
// fetches (downloads, reorders) only what it writes.
struct CheckpointEntry {
  std::string path;
  std::vector<int64_t> shape;  // empty: a scalar; for text, the string's length in bytes
  EntryType type = EntryType::f32;
  std::function<const void*(void* scratch)> fill;
  size_t bytes() const;
};

// The root attributes. `created` is filled in by the writer (rank 0's clock).
struct CheckpointHeader {
  std::string model;
  int world_size = 1;
  int64_t epoch = 0, step = 0;
  std::string created;
  std::string project_version;
};

inline constexpr const char* kCheckpointFormat = "resnet-checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;

// Which rank handles each of `bytes`, taken in order (file order): consecutive runs of about
// equal bytes (an item goes to the rank whose share holds its middle), so that each rank reads
// or writes one stretch of the file; every rank computes the same answer.
std::vector<int> assign_runs_by_bytes(const std::vector<size_t>& bytes, int world_size);

struct CheckpointWriteOptions {
  // Tests: holds the file half-written this long after the datasets' bytes, so that a test can
  // stop or kill a rank inside a write.
  int pause_after_data_ms = 0;
};

// Writes `path` as `path.tmp` and renames it once every rank has finished and the file is on
// disk. `comm` holds the ranks that write it together (every rank calls with the same header and
// entries, in the same order; a single process is a collective of one). A failure on any rank
// throws on every rank with that rank's message; the temporary file is removed and whatever
// already stood at `path` is untouched.
void write_checkpoint(const std::string& path, const CheckpointHeader& header,
                      const std::vector<CheckpointEntry>& entries, Collective& comm,
                      const CheckpointWriteOptions& options = {});

// A dataset's bytes. The allocator leaves new elements uninitialised: the read overwrites them
// at once, and zeroing hundreds of megabytes first would cost a tenth of the read.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using Bytes = std::vector<char, UninitializedAllocator<char>>;

struct DatasetInfo {
  std::string path;
  std::vector<int64_t> shape;
  EntryType type = EntryType::f32;
  size_t bytes = 0;
  uint32_t crc32 = 0;  // as stored
  // Stored contiguously at `offset` in the file, exactly as the bytes are in memory (no filter,
  // the native byte order): such a dataset can be read with plain file reads.
  bool raw = false;
  uint64_t offset = 0;
};

struct CheckpointSummary {
  std::string format;
  int format_version = 0;
  CheckpointHeader header;
  std::vector<DatasetInfo> datasets;  // sorted by path
  size_t bytes() const;
};

// The root attributes and the list of datasets, without reading any tensor (one process).
// Throws one line naming the file for a missing, non-HDF5, truncated or foreign file.
CheckpointSummary read_checkpoint_summary(const std::string& path);

using Placement = std::function<char*(const DatasetInfo& d)>;
struct CheckpointReadOptions {
  // Whether every rank of the read runs on one machine (the rank environment knows): then each
  // reads the others' shares too, through the shared page cache, instead of receiving them.
  bool one_node = false;
  // Receives the file's attributes and dataset list, when given.
  CheckpointSummary* summary = nullptr;
  // Where `place` returns a pointer (to d.bytes writable bytes) for a dataset, its bytes land
  // there instead, on every rank, and the map leaves it out: a tensor read straight into its
  // final home costs no fresh memory, whose page faults would cost as much as the disk.
  Placement place;
};

// Every dataset's bytes, each verified against its stored CRC-32 (a mismatch names the dataset
// and the file). Each rank of `comm` reads and verifies its share (a consecutive run of the
// file); ranks on one machine then read the rest too, ranks on several broadcast their shares;
// an error on one rank is thrown on every rank with the same message.
std::map<std::string, Bytes> read_checkpoint(const std::string& path, Collective& comm,
                                             const CheckpointReadOptions& options = {});

// The datasets whose bytes do not match their checksum (empty when all do); one process.
std::vector<std::string> verify_checkpoint(const std::string& path);

}  // namespace rn::io

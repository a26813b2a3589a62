// Reading checkpoint files: the summary (attributes and dataset list), verified full reads shared
// across ranks, and the checksum verdict of `resnet ckpt inspect`.
#include <fcntl.h>
#include <hdf5.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/hdf5_handle.h"

namespace rn::io {
namespace {

namespace fs = std::filesystem;

std::string hex(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

// The innermost reason of an RN_HDF5_CHECK error ("incorrect metadata checksum after all read
// attempts"), without the layers above it and the failed expression.
std::string hdf5_reason(const std::string& what) {
  std::string msg = what;
  const size_t cut = msg.rfind("; ");
  if (cut != std::string::npos) msg = msg.substr(cut + 2);
  const size_t expr = msg.find(" (H5");
  if (expr != std::string::npos) msg = msg.substr(0, expr);
  if (msg.rfind("[hdf5] ", 0) == 0) msg = msg.substr(7);
  return msg;
}

CheckpointSummary summarize(hid_t file, const std::string& path);

// Opens `path` read-only, with one clear line for each way it can fail to be a checkpoint. Every
// rank opens it on its own through HDF5's POSIX driver: reading needs no collective metadata, and
// MPI-IO's layers made opening ResNet-50's 601 datasets take twice as long.
H5Id open_checkpoint(const std::string& path) {
  silence_hdf5_errors();
  const std::string where = "checkpoint '" + path + "': ";
  std::error_code ec;
  if (!fs::exists(path, ec)) RN_FAIL(where << "no such file");
  if (!fs::is_regular_file(path, ec)) RN_FAIL(where << "not a regular file");
  const int version = superblock_version(path);
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (version < 0 || is_h5 == 0) RN_FAIL(where << "not an HDF5 file");
  // Checkpoints written before the checksummed format: their metadata is read in a child first.
  if (version < 2)
    probe_in_child(path, [&] {
      H5Id file(RN_HDF5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)), H5Fclose);
      summarize(file.get(), path);
    });
  H5Id fapl(RN_HDF5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  try {
    return H5Id(RN_HDF5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get())), H5Fclose);
  } catch (const Error& e) {
    // The innermost HDF5 message says why ("truncated file: eof = ..."); the rest is noise.
    RN_FAIL(where << "cannot be opened (damaged or truncated?): " << hdf5_reason(e.what()));
  }
}

EntryType type_of(hid_t type, const std::string& name) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return EntryType::f32;
  if (cls == H5T_FLOAT && size == 8) return EntryType::f64;
  if (cls == H5T_INTEGER && size == 8) return EntryType::i64;
  if (cls == H5T_STRING && !H5Tis_variable_str(type)) return EntryType::text;
  RN_FAIL("dataset '" << name << "' has a type checkpoints do not use");
}

struct VisitState {
  std::vector<DatasetInfo>* out;
  std::string error;
};

herr_t visit_dataset(hid_t root, const char* name, const H5O_info_t* info, void* data) {
  auto& st = *static_cast<VisitState*>(data);
  if (info->type != H5O_TYPE_DATASET) return 0;
  try {
    H5Id set(RN_HDF5_CHECK(H5Dopen2(root, name, H5P_DEFAULT)), H5Dclose);
    H5Id type(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
    H5Id space(RN_HDF5_CHECK(H5Dget_space(set.get())), H5Sclose);
    DatasetInfo d;
    d.path = name;
    d.type = type_of(type.get(), name);
    const int rank = RN_HDF5_CHECK(H5Sget_simple_extent_ndims(space.get()));
    std::vector<hsize_t> dims(rank);
    RN_HDF5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
    d.shape.assign(dims.begin(), dims.end());
    d.bytes = H5Tget_size(type.get());
    for (auto n : dims) d.bytes *= n;
    if (d.type == EntryType::text) d.shape = {static_cast<int64_t>(d.bytes)};
    int64_t crc = -1;
    H5Id attr;
    if (RN_HDF5_CHECK(H5Aexists(set.get(), "crc32")) > 0) {
      uint32_t v = 0;
      attr = H5Id(RN_HDF5_CHECK(H5Aopen(set.get(), "crc32", H5P_DEFAULT)), H5Aclose);
      RN_HDF5_CHECK(H5Aread(attr.get(), H5T_NATIVE_UINT32, &v));
      crc = v;
    }
    if (crc < 0) RN_FAIL("dataset '" << name << "' has no crc32 attribute");
    d.crc32 = static_cast<uint32_t>(crc);
    // H5Dget_offset is undefined but for contiguous storage, which has no filters.
    if (d.bytes > 0 &&
        (d.type == EntryType::text || H5Tequal(type.get(), native_type(d.type)) > 0)) {
      const haddr_t offset = H5Dget_offset(set.get());
      d.raw = offset != HADDR_UNDEF;
      d.offset = offset;
    }
    st.out->push_back(std::move(d));
  } catch (const std::exception& e) {
    const std::string what = e.what();
    st.error = what.rfind("[hdf5] ", 0) == 0
                   ? "dataset '" + std::string(name) + "' is damaged: " + hdf5_reason(what)
                   : what;
    return -1;
  }
  return 0;
}

CheckpointSummary summarize(hid_t file, const std::string& path) {
  const std::string where = "checkpoint '" + path + "': ";
  CheckpointSummary s;
  try {
    if (!read_attribute(file, "format", s.format) || s.format != kCheckpointFormat)
      RN_FAIL("not a resnet checkpoint (root attribute 'format' is not '" << kCheckpointFormat
                                                                          << "')");
    int64_t v = 0;
    read_attribute(file, "format_version", v);
    s.format_version = static_cast<int>(v);
    if (s.format_version != kCheckpointFormatVersion)
      RN_FAIL("format_version " << s.format_version << " is not the supported "
                                << kCheckpointFormatVersion);
    read_attribute(file, "model", s.header.model);
    if (read_attribute(file, "world_size", v)) s.header.world_size = static_cast<int>(v);
    read_attribute(file, "epoch", s.header.epoch);
    read_attribute(file, "step", s.header.step);
    read_attribute(file, "created", s.header.created);
    read_attribute(file, "project_version", s.header.project_version);
    VisitState st{&s.datasets, {}};
    try {
      // Native order: HDF5 1.10 walks a group's links where they are stored, where name order
      // would first build a table of them, and on a damaged fractal heap (a group of more than
      // 8 links written by another program in the 1.8 format) it frees that half-built table's
      // uninitialised entries. Sorted by name below, as name order would give them.
      RN_HDF5_CHECK(H5Ovisit(file, H5_INDEX_NAME, H5_ITER_NATIVE, visit_dataset, &st));
    } catch (const Error& e) {
      if (!st.error.empty()) RN_FAIL(st.error);
      RN_FAIL("its groups are damaged: " << hdf5_reason(e.what()));
    }
    std::sort(s.datasets.begin(), s.datasets.end(),
              [](const DatasetInfo& a, const DatasetInfo& b) { return a.path < b.path; });
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (what.rfind("[hdf5] ", 0) == 0) RN_FAIL(where << "damaged metadata: " << hdf5_reason(what));
    RN_FAIL(where << what);
  }
  return s;
}

// Reads dataset `d` of checkpoint `path` through HDF5 into `dst` (d.bytes long); in a file of
// HDF5's original format (`unchecked`) whose values are not contiguous, in a child
// (read_in_child).
void read_dataset(hid_t file, const DatasetInfo& d, char* dst, const std::string& path,
                  bool unchecked) {
  if (d.bytes == 0) return;
  H5Id set(RN_HDF5_CHECK(H5Dopen2(file, d.path.c_str(), H5P_DEFAULT)), H5Dclose);
  H5Id type(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
  const hid_t mem = d.type == EntryType::text ? type.get() : native_type(d.type);
  auto read = [&](void* to) {
    RN_HDF5_CHECK(H5Dread(set.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, to));
  };
  if (unchecked && !stored_contiguously(set.get()) && read_in_child(path, dst, d.bytes, read))
    return;
  read(dst);
}

// Reads whole `iov` from `fd` at `offset`, however the kernel splits it.
void preadv_fully(int fd, std::vector<iovec>& iov, uint64_t offset, const std::string& path) {
  size_t first = 0;
  while (first < iov.size()) {
    const int n = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t got = ::preadv(fd, iov.data() + first, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) RN_FAIL("checkpoint '" << path << "': read failed: " << std::strerror(errno));
    if (got == 0) RN_FAIL("checkpoint '" << path << "': ends early (truncated?)");
    offset += static_cast<uint64_t>(got);
    for (size_t left = static_cast<size_t>(got); left > 0;) {
      const size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take, left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
    while (first < iov.size() && iov[first].iov_len == 0) ++first;
  }
}

// Reads the raw datasets `sets` (in file order) straight into `dst` with a few large sequential
// reads: the small gaps between them (object headers) go to a scratch buffer, so the disk sees
// one stretch. `done(first, last)` is called as each read lands [first, last) of `sets`.
template <typename Done>
void read_raw(const std::string& path, const std::vector<const DatasetInfo*>& sets,
              const std::vector<char*>& dst, Done done) {
  if (sets.empty()) return;
  constexpr uint64_t kMaxGap = 256 << 10, kRun = 4 << 20;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) RN_FAIL("checkpoint '" << path << "': cannot open: " << std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<char> gap(kMaxGap);
  std::vector<iovec> iov;
  size_t first = 0;
  uint64_t start = sets[0]->offset, pos = start;
  for (size_t i = 0; i <= sets.size(); ++i) {
    const bool end = i == sets.size();
    if (!end && sets[i]->offset < pos)
      RN_FAIL("checkpoint '" << path << "': dataset '/" << sets[i]->path
                             << "' overlaps another (damaged?)");
    if (end || sets[i]->offset - pos > kMaxGap || pos - start >= kRun) {
      preadv_fully(fd, iov, start, path);
      done(first, i);
      if (end) break;
      iov.clear(), first = i, start = pos = sets[i]->offset;
    }
    if (sets[i]->offset > pos) iov.push_back({gap.data(), sets[i]->offset - pos});
    iov.push_back({dst[i], sets[i]->bytes});
    pos = sets[i]->offset + sets[i]->bytes;
  }
}

std::string checksum_error(const std::string& path, const DatasetInfo& d, uint32_t got) {
  return "checkpoint '" + path + "': dataset '/" + d.path + "' fails its checksum (stored crc32 " +
         hex(d.crc32) + ", computed " + hex(got) + "): the file is damaged";
}

// Which rank reads each dataset: ranks take consecutive stretches of the file, the raw datasets
// in file order, then the rest.
struct ReadPlan {
  std::vector<size_t> order;  // the datasets in reading order
  std::vector<int> owner;     // the rank reading each dataset
};

ReadPlan plan_reads(const CheckpointSummary& s, int ranks) {
  ReadPlan plan;
  plan.order.resize(s.datasets.size());
  std::iota(plan.order.begin(), plan.order.end(), 0);
  std::stable_sort(plan.order.begin(), plan.order.end(), [&](size_t a, size_t b) {
    const auto& x = s.datasets[a];
    const auto& y = s.datasets[b];
    return x.raw != y.raw ? x.raw : x.raw && x.offset < y.offset;
  });
  std::vector<size_t> sizes;
  for (size_t i : plan.order) sizes.push_back(s.datasets[i].bytes);
  const std::vector<int> run_owner = assign_runs_by_bytes(sizes, ranks);
  plan.owner.resize(s.datasets.size());
  for (size_t k = 0; k < plan.order.size(); ++k) plan.owner[plan.order[k]] = run_owner[k];
  return plan;
}

// Where each dataset's bytes go: where `place` says, else a buffer of `out`.
std::vector<char*> place_datasets(const CheckpointSummary& s, const ReadPlan& plan,
                                  const Placement& place, std::map<std::string, Bytes>& out) {
  std::vector<char*> home(s.datasets.size(), nullptr);
  for (size_t i : plan.order) {
    const auto& d = s.datasets[i];
    home[i] = place ? place(d) : nullptr;
    if (!home[i]) {
      auto& buf = out[d.path];
      buf.resize(d.bytes);
      home[i] = buf.data();
    }
  }
  return home;
}

// Reads and verifies this rank's datasets into `home`: the raw ones in large sequential reads,
// each read's checksums on a second core while the next read goes on, the others through HDF5.
// With `one_node`, the other ranks' raw datasets too (ranks that share a machine share its page
// cache: each reads the others' tensors, from memory once they are in, instead of receiving
// them). Returns the first error, or "".
std::string read_share(hid_t file, const std::string& path, const CheckpointSummary& s,
                       const ReadPlan& plan, const std::vector<char*>& home, int rank,
                       bool one_node) {
  const bool unchecked = superblock_version(path) < 2;
  std::vector<const DatasetInfo*> raw, rest;
  std::vector<char*> dst, rest_dst;
  std::vector<size_t> other;
  for (size_t i : plan.order) {
    const auto& d = s.datasets[i];
    if (plan.owner[i] == rank)
      d.raw ? (raw.push_back(&d), dst.push_back(home[i])) : other.push_back(i);
    else if (one_node && d.raw)
      rest.push_back(&d), rest_dst.push_back(home[i]);
  }
  std::vector<std::future<std::string>> checks;
  auto verify = [&](size_t first, size_t last) {
    std::string bad;
    for (size_t k = first; k < last && bad.empty(); ++k) {
      const uint32_t got = crc_of(dst[k], raw[k]->bytes);
      if (got != raw[k]->crc32) bad = checksum_error(path, *raw[k], got);
    }
    return bad;
  };
  read_raw(path, raw, dst, [&](size_t first, size_t last) {
    checks.push_back(std::async(std::launch::async, verify, first, last));
  });
  read_raw(path, rest, rest_dst, [](size_t, size_t) {});
  std::string error;
  for (size_t i : other) {
    const auto& d = s.datasets[i];
    read_dataset(file, d, home[i], path, unchecked);
    const uint32_t got = crc_of(home[i], d.bytes);
    if (got != d.crc32 && error.empty()) error = checksum_error(path, d, got);
  }
  for (auto& c : checks) {
    std::string bad = c.get();
    if (!bad.empty() && error.empty()) error = bad;
  }
  return error;
}

}  // namespace

CheckpointSummary read_checkpoint_summary(const std::string& path) {
  H5Id file = open_checkpoint(path);
  return summarize(file.get(), path);
}

std::map<std::string, Bytes> read_checkpoint(const std::string& path, Collective& col,
                                             const CheckpointReadOptions& options) {
  std::string error;
  CheckpointSummary s;
  H5Id file;
  try {
    file = open_checkpoint(path);
    s = summarize(file.get(), path);
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree(col, error);
  const bool one_node = col.size() > 1 && options.one_node;
  const ReadPlan plan = plan_reads(s, col.size());
  std::map<std::string, Bytes> out;
  std::vector<char*> home;
  try {
    home = place_datasets(s, plan, options.place, out);
    error = read_share(file.get(), path, s, plan, home, col.rank(), one_node);
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree(col, error);
  file.close();
  for (size_t i = 0; i < s.datasets.size(); ++i)
    if (!(one_node && s.datasets[i].raw))
      broadcast_bytes(col, home[i], s.datasets[i].bytes, plan.owner[i]);
  if (options.summary) *options.summary = std::move(s);
  return out;
}

std::vector<std::string> verify_checkpoint(const std::string& path) {
  H5Id file = open_checkpoint(path);
  const CheckpointSummary s = summarize(file.get(), path);
  const bool unchecked = superblock_version(path) < 2;
  std::vector<std::string> bad;
  for (const auto& d : s.datasets) {
    Bytes buf(d.bytes);
    try {
      read_dataset(file.get(), d, buf.data(), path, unchecked);
    } catch (const std::exception&) {
      bad.push_back("/" + d.path);
      continue;
    }
    if (crc_of(buf.data(), buf.size()) != d.crc32) bad.push_back("/" + d.path);
  }
  return bad;
}

}  // namespace rn::io

// Reading checkpoint files: the summary (attributes and dataset list), verified full reads shared
// across ranks, and the checksum verdict of `resnet ckpt inspect`.
#include <hdf5.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <iomanip>
#include <sstream>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/hdf5_handle.h"

namespace rn::io {
namespace {

namespace fs = std::filesystem;

uint32_t crc_of(const Bytes* b) {
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t off = 0;
  while (off < b->size()) {
    const uInt n = static_cast<uInt>(std::min<size_t>(b->size() - off, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(b->data() + off), n);
    off += n;
  }
  return static_cast<uint32_t>(crc);
}

std::string hex(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

// Opens `path` read-only, with one clear line for each way it can fail to be a checkpoint.
H5Id open_checkpoint(const std::string& path, MPI_Comm comm) {
  silence_hdf5_errors();
  const std::string where = "checkpoint '" + path + "': ";
  std::error_code ec;
  if (!fs::exists(path, ec)) RN_FAIL(where << "no such file");
  if (!fs::is_regular_file(path, ec)) RN_FAIL(where << "not a regular file");
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 == 0) RN_FAIL(where << "not an HDF5 file");
  H5Id fapl(RN_HDF5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  if (comm != MPI_COMM_NULL) RN_HDF5_CHECK(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL));
  try {
    return H5Id(RN_HDF5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get())), H5Fclose);
  } catch (const Error& e) {
    // The innermost HDF5 message says why ("truncated file: eof = ..."); the rest is noise.
    std::string msg = e.what();
    const size_t cut = msg.rfind("; ");
    if (cut != std::string::npos) msg = msg.substr(cut + 2);
    const size_t expr = msg.find(" (H5Fopen");
    if (expr != std::string::npos) msg = msg.substr(0, expr);
    RN_FAIL(where << "cannot be opened (damaged or truncated?): " << msg);
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
    st.out->push_back(std::move(d));
  } catch (const std::exception& e) {
    st.error = e.what();
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
    if (H5Ovisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_dataset, &st) < 0)
      RN_FAIL((st.error.empty() ? std::string("cannot list its datasets") : st.error));
  } catch (const std::exception& e) {
    RN_FAIL(where << e.what());
  }
  return s;
}

Bytes read_dataset(hid_t file, const DatasetInfo& d) {
  Bytes buf(std::max<size_t>(d.bytes, 1));
  H5Id set(RN_HDF5_CHECK(H5Dopen2(file, d.path.c_str(), H5P_DEFAULT)), H5Dclose);
  H5Id type(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
  hid_t mem = type.get();
  if (d.type == EntryType::f32) mem = H5T_NATIVE_FLOAT;
  if (d.type == EntryType::f64) mem = H5T_NATIVE_DOUBLE;
  if (d.type == EntryType::i64) mem = H5T_NATIVE_INT64;
  RN_HDF5_CHECK(H5Dread(set.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
  buf.resize(d.bytes);
  return buf;
}

std::string checksum_error(const std::string& path, const DatasetInfo& d, uint32_t got) {
  return "checkpoint '" + path + "': dataset '/" + d.path + "' fails its checksum (stored crc32 " +
         hex(d.crc32) + ", computed " + hex(got) + "): the file is damaged";
}

}  // namespace

CheckpointSummary read_checkpoint_summary(const std::string& path) {
  H5Id file = open_checkpoint(path, MPI_COMM_NULL);
  return summarize(file.get(), path);
}

std::map<std::string, Bytes> read_checkpoint(const std::string& path, MPI_Comm comm,
                                             CheckpointSummary* summary) {
  const Collective col(comm);
  std::string error;
  CheckpointSummary s;
  H5Id file;
  try {
    file = open_checkpoint(path, comm);
    s = summarize(file.get(), path);
  } catch (const std::exception& e) {
    error = e.what();
  }
  col.agree(error);
  std::vector<size_t> sizes;
  for (const auto& d : s.datasets) sizes.push_back(d.bytes);
  const std::vector<int> owner = assign_by_bytes(sizes, col.size());
  std::map<std::string, Bytes> out;
  try {
    // A large dataset's checksum runs on a second core while the next dataset is read.
    std::vector<std::pair<size_t, std::future<uint32_t>>> crcs;
    for (size_t i = 0; i < s.datasets.size(); ++i) {
      const auto& d = s.datasets[i];
      auto& buf = out[d.path];
      if (owner[i] != col.rank()) {
        buf.resize(d.bytes);
        continue;
      }
      buf = read_dataset(file.get(), d);
      crcs.emplace_back(
          i, std::async(d.bytes >= (1u << 20) ? std::launch::async : std::launch::deferred, crc_of,
                        &buf));
    }
    for (auto& [i, crc] : crcs) {
      const uint32_t got = crc.get();
      if (got != s.datasets[i].crc32 && error.empty())
        error = checksum_error(path, s.datasets[i], got);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  col.agree(error);
  file.close();
  for (size_t i = 0; i < s.datasets.size(); ++i) {
    auto& buf = out[s.datasets[i].path];
    col.broadcast(buf.data(), buf.size(), owner[i]);
  }
  if (summary) *summary = std::move(s);
  return out;
}

std::vector<std::string> verify_checkpoint(const std::string& path) {
  H5Id file = open_checkpoint(path, MPI_COMM_NULL);
  const CheckpointSummary s = summarize(file.get(), path);
  std::vector<std::string> bad;
  for (const auto& d : s.datasets) {
    Bytes buf;
    try {
      buf = read_dataset(file.get(), d);
    } catch (const std::exception&) {
      bad.push_back("/" + d.path);
      continue;
    }
    if (crc_of(&buf) != d.crc32) bad.push_back("/" + d.path);
  }
  return bad;
}

}  // namespace rn::io

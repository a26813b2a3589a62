// ArrayReader / ArrayWriter: one HDF5 file of plain datasets, one process.
#include "io/array_file.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "core/check.h"

namespace rn::io {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return shape.empty() ? "a scalar" : s;
}

namespace {

std::string type_name(hid_t type) {
  const size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return "float" + std::to_string(size * 8);
    case H5T_INTEGER:
      return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(size * 8);
    case H5T_STRING:
      return "string";
    default:
      return "a compound or other non-numeric type";
  }
}

// The shape of dataset `set` (`name`); a dimension beyond its own maximum is one HDF5 never
// writes (a damaged dataspace, which in the original format has no checksum).
std::vector<int64_t> shape_of(hid_t set, const std::string& path, const std::string& name) {
  H5Id space(RN_HDF5_CHECK(H5Dget_space(set)), H5Sclose);
  const int rank = RN_HDF5_CHECK(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> dims(rank), most(rank);
  RN_HDF5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), most.data()));
  const std::vector<int64_t> shape(dims.begin(), dims.end());
  for (int i = 0; i < rank; ++i)
    if (most[i] != H5S_UNLIMITED && dims[i] > most[i])
      RN_FAIL("'" << path << "': dataset '" << name << "' claims " << shape_text(shape)
                  << " values, beyond its maximum shape "
                  << shape_text(std::vector<int64_t>(most.begin(), most.end())) << " (damaged?)");
  return shape;
}

int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// The element count of dataset `set` (`name`) of shape `shape`, refused in one line when the
// array would not fit in this machine's memory, or when it is stored uncompressed (contiguous or
// compact) in fewer bytes than it claims: a damaged or foreign file can claim any shape.
int64_t checked_count(hid_t set, const std::string& path, const std::string& name,
                      const std::vector<int64_t>& shape, size_t element_bytes) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  const uint64_t memory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                          static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  const uint64_t most = memory / element_bytes;
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || static_cast<uint64_t>(d) > most / n)
      RN_FAIL("'" << path << "': dataset '" << name << "' claims " << shape_text(shape)
                  << " values, more than this machine's " << (memory >> 20) << " MiB hold");
    n *= static_cast<uint64_t>(d);
  }
  H5Id dcpl(RN_HDF5_CHECK(H5Dget_create_plist(set)), H5Pclose);
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    // Chunks of another rank than the values (HDF5 never writes them) send its reading astray.
    hsize_t chunk[H5S_MAX_RANK];
    const int chunk_rank = H5Pget_chunk(dcpl.get(), H5S_MAX_RANK, chunk);
    if (chunk_rank != static_cast<int>(shape.size()))
      RN_FAIL("'" << path << "': dataset '" << name << "' has " << shape.size()
                  << " dimension(s) but chunks of " << chunk_rank << " (damaged?)");
  }
  const hsize_t stored = H5Dget_storage_size(set);
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED && stored < n * element_bytes)
    RN_FAIL("'" << path << "': dataset '" << name << "' claims " << n << " values but stores "
                << stored << " bytes (damaged?)");
  return static_cast<int64_t>(n);
}

}  // namespace

ArrayReader::ArrayReader(const std::string& path, size_t child_read_bytes)
    : path_(path), child_read_bytes_(child_read_bytes) {
  silence_hdf5_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) RN_FAIL("'" << path << "': no such file");
  if (!std::filesystem::is_regular_file(path, ec)) RN_FAIL("'" << path << "': not a regular file");
  const int version = superblock_version(path);
  if (version < 0 || H5Fis_hdf5(path.c_str()) <= 0) RN_FAIL("'" << path << "': not an HDF5 file");
  // h5py writes HDF5's original format by default: its metadata is read first in a child
  // (here the superblock and root group, in open_dataset each dataset's way and header).
  unchecked_ = version < 2;
  if (unchecked_)
    probe_in_child(path, [&] {
      H5Id file(RN_HDF5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)), H5Fclose);
    });
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) RN_FAIL("'" << path << "': cannot be opened (damaged or truncated?)");
  file_ = H5Id(id, H5Fclose);
}

bool ArrayReader::has(const std::string& name) const {
  // H5Lexists fails (rather than answering no) when a parent group is missing: ask level by level.
  std::string sofar;
  size_t start = name.front() == '/' ? 1 : 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    sofar.push_back('/');
    sofar.append(name, start, end - start);
    if (H5Lexists(file_.get(), sofar.c_str(), H5P_DEFAULT) <= 0) return false;
    start = end + 1;
  }
  return true;
}

H5Id ArrayReader::open_dataset(const std::string& name) const {
  if (unchecked_ && probed_.insert(name).second)
    probe_in_child(path_, [&] {
      H5Id set = open_unprobed(name);
      H5Id type(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
      H5Id space(RN_HDF5_CHECK(H5Dget_space(set.get())), H5Sclose);
      H5Id dcpl(RN_HDF5_CHECK(H5Dget_create_plist(set.get())), H5Pclose);
      (void)H5Dget_storage_size(set.get());  // walks a chunked dataset's index
    });
  return open_unprobed(name);
}

std::vector<int64_t> ArrayReader::shape(const std::string& name) const {
  return shape_of(open_dataset(name).get(), path_, name);
}

void ArrayReader::read_values(hid_t set, hid_t memory_type, const std::vector<int64_t>& shape,
                              void* dst, size_t bytes) const {
  auto read_all = [&](void* to) {
    RN_HDF5_CHECK(H5Dread(set, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, to));
  };
  if (!unchecked_ || stored_contiguously(set)) return read_all(dst);
  if (shape.empty() || bytes <= child_read_bytes_) {
    if (!read_in_child(path_, dst, bytes, read_all)) read_all(dst);
    return;
  }
  // In slabs of whole rows (along the first dimension), so that the memory shared with the
  // child stays within child_read_bytes_ (one row at least) however large the array.
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  const int rank = static_cast<int>(dims.size());
  const size_t row = bytes / dims[0];
  const hsize_t rows = std::max<hsize_t>(1, child_read_bytes_ / row);
  for (hsize_t first = 0; first < dims[0]; first += rows) {
    std::vector<hsize_t> start(rank, 0), count = dims;
    start[0] = first;
    count[0] = std::min(rows, dims[0] - first);
    H5Id file_space(RN_HDF5_CHECK(H5Dget_space(set)), H5Sclose);
    RN_HDF5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                      count.data(), nullptr));
    H5Id memory_space(RN_HDF5_CHECK(H5Screate_simple(rank, count.data(), nullptr)), H5Sclose);
    auto read = [&](void* to) {
      RN_HDF5_CHECK(
          H5Dread(set, memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT, to));
    };
    char* to = static_cast<char*>(dst) + first * row;
    if (!read_in_child(path_, to, count[0] * row, read)) read(to);
  }
}

H5Id ArrayReader::open_unprobed(const std::string& name) const {
  if (!has(name)) RN_FAIL("'" << path_ << "': no dataset '" << name << "'");
  const hid_t id = H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT);
  if (id < 0) RN_FAIL("'" << path_ << "': '" << name << "' is not a dataset");
  return H5Id(id, H5Dclose);
}

FloatArray ArrayReader::read_f32(const std::string& name) const {
  H5Id set = open_dataset(name);
  H5Id type(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 4)
    RN_FAIL("'" << path_ << "': dataset '" << name << "' is " << type_name(type.get())
                << ", expected float32");
  FloatArray a;
  a.shape = shape_of(set.get(), path_, name);
  a.values.resize(
      static_cast<size_t>(checked_count(set.get(), path_, name, a.shape, sizeof(float))));
  if (!a.values.empty())
    read_values(set.get(), H5T_NATIVE_FLOAT, a.shape, a.values.data(),
                a.values.size() * sizeof(float));
  return a;
}

std::vector<int64_t> ArrayReader::read_integers(const std::string& name,
                                                std::vector<int64_t>* shape) const {
  H5Id set = open_dataset(name);
  H5Id type(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    RN_FAIL("'" << path_ << "': dataset '" << name << "' is " << type_name(type.get())
                << ", expected integers");
  const std::vector<int64_t> dims = shape_of(set.get(), path_, name);
  std::vector<int64_t> v(
      static_cast<size_t>(checked_count(set.get(), path_, name, dims, sizeof(int64_t))));
  // HDF5 converts any integer width and sign to the native int64 on reading.
  if (!v.empty())
    read_values(set.get(), H5T_NATIVE_INT64, dims, v.data(), v.size() * sizeof(int64_t));
  if (shape) *shape = dims;
  return v;
}

ArrayWriter::ArrayWriter(const std::string& path) : path_(path) {
  silence_hdf5_errors();
  const H5Id fapl = checksummed_access_list(), fcpl = checksummed_create_list();
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get());
  if (id < 0) RN_FAIL("'" << path << "': cannot be created (folder missing or not writable?)");
  file_ = H5Id(id, H5Fclose);
}

void ArrayWriter::write(const std::string& name, const std::vector<int64_t>& shape, hid_t file_type,
                        hid_t memory_type, const void* values) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Id space(RN_HDF5_CHECK(dims.empty() ? H5Screate(H5S_SCALAR)
                                        : H5Screate_simple(static_cast<int>(dims.size()),
                                                           dims.data(), nullptr)),
             H5Sclose);
  create_parent_groups(file_.get(), name, checksummed_group_list().get());
  H5Id set(RN_HDF5_CHECK(H5Dcreate2(file_.get(), name.c_str(), file_type, space.get(), H5P_DEFAULT,
                                    H5P_DEFAULT, H5P_DEFAULT)),
           H5Dclose);
  if (count(shape) > 0)
    RN_HDF5_CHECK(H5Dwrite(set.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values));
}

void ArrayWriter::write_f32(const std::string& name, const std::vector<int64_t>& shape,
                            const float* values) {
  write(name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, values);
}

void ArrayWriter::write_f64(const std::string& name, double value) {
  write(name, {}, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

void ArrayWriter::write_i64(const std::string& name, const std::vector<int64_t>& shape,
                            const int64_t* values) {
  write(name, shape, H5T_STD_I64LE, H5T_NATIVE_INT64, values);
}

}  // namespace rn::io

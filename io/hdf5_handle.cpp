// HDF5 attribute helpers, the checksum, and the MPI agreement steps of the checkpoint code.
#include "io/hdf5_handle.h"

#include <mpi.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "core/check.h"

namespace rn::io {

void silence_hdf5_errors() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

H5Id checksummed_access_list() {
  H5Id fapl(RN_HDF5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  RN_HDF5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18));
  return fapl;
}

int superblock_version(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  for (std::streamoff at = 0; f; at = at == 0 ? 512 : at * 2) {
    char head[9];
    f.seekg(at);
    if (!f.read(head, sizeof head)) return -1;
    if (std::memcmp(head, kSignature, 8) == 0) return static_cast<unsigned char>(head[8]);
  }
  return -1;
}

bool probe_in_child(const std::string& path, const std::function<void()>& body, double limit_s) {
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t pid = ::fork();
  if (pid < 0) return false;  // no child to spare: the caller reads the file as it is
  // The child's own statuses: read through, or an exception (the caller then meets it too).
  // Anything else (a signal, or a sanitizer's exit on a crash) is the crash this looks for.
  constexpr int kRead = 0, kThrew = 97;
  if (pid == 0) {
    int rc = kRead;
    try {
      body();
    } catch (...) {
      rc = kThrew;
    }
    // Straight to the kernel: no exit handlers, and no sanitizer's exit checks of what the child
    // inherited (ThreadSanitizer would take a thread of the parent's, finished but not yet
    // joined at the fork, for a leak and exit with its own status).
    ::syscall(SYS_exit_group, rc);
  }
  // Waited for with a time limit: damaged metadata can also send HDF5 round a loop.
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(50);
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return false;  // its status is lost (SIGCHLD ignored?)
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > limit_s) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      RN_FAIL("'" << path << "': damaged: HDF5 did not finish reading it in " << limit_s
                  << " s; the file is in HDF5's original format, whose metadata has no checksums");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(20000));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kRead) return true;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kThrew) return false;
  const std::string how = WIFSIGNALED(status)
                              ? strsignal(WTERMSIG(status))
                              : "exit status " + std::to_string(WEXITSTATUS(status));
  RN_FAIL("'" << path << "': damaged: HDF5 crashed reading its metadata (" << how
              << "); the file is in HDF5's original format, whose metadata has no checksums");
}

bool read_in_child(const std::string& path, void* dst, size_t bytes,
                   const std::function<void(void*)>& read) {
  if (bytes == 0) return false;
  void* shared = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return false;  // the caller reads as it would without a child
  struct Unmap {
    void* at;
    size_t bytes;
    ~Unmap() { ::munmap(at, bytes); }
  } unmap{shared, bytes};
  // As long as reading at 4 MiB/s takes, and a minute more.
  const double limit_s = kChildLimitS + static_cast<double>(bytes) / (4 << 20);
  if (!probe_in_child(
          path, [&] { read(shared); }, limit_s))
    return false;
  std::memcpy(dst, shared, bytes);
  return true;
}

bool stored_contiguously(hid_t set) {
  H5Id dcpl(RN_HDF5_CHECK(H5Dget_create_plist(set)), H5Pclose);
  return H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS;
}

namespace {

// Compact storage for up to 65535 links or attributes (HDF5's largest), never dense.
void keep_compact(hid_t list) {
  RN_HDF5_CHECK(H5Pset_link_phase_change(list, 65535, 65535));
  RN_HDF5_CHECK(H5Pset_attr_phase_change(list, 65535, 65535));
}

}  // namespace

H5Id checksummed_create_list() {
  H5Id fcpl(RN_HDF5_CHECK(H5Pcreate(H5P_FILE_CREATE)), H5Pclose);
  keep_compact(fcpl.get());
  return fcpl;
}

H5Id checksummed_group_list() {
  H5Id gcpl(RN_HDF5_CHECK(H5Pcreate(H5P_GROUP_CREATE)), H5Pclose);
  keep_compact(gcpl.get());
  return gcpl;
}

void create_parent_groups(hid_t file, const std::string& path, hid_t gcpl) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string group = path.substr(0, slash);
    if (RN_HDF5_CHECK(H5Lexists(file, group.c_str(), H5P_DEFAULT)) > 0) continue;
    H5Id g(RN_HDF5_CHECK(H5Gcreate2(file, group.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT)),
           H5Gclose);
  }
}

void create_groups(hid_t file, const std::vector<std::string>& paths) {
  struct Group {
    std::set<std::string> links;
    size_t name_bytes = 0;
  };
  std::vector<std::string> order;  // parents before their children, as the paths meet them
  std::map<std::string, Group> groups;
  for (const std::string& path : paths)
    for (size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      const std::string group = path.substr(0, slash);
      const size_t next = path.find('/', slash + 1);
      const std::string link =
          path.substr(slash + 1, next == std::string::npos ? std::string::npos : next - slash - 1);
      auto [it, added] = groups.try_emplace(group);
      if (added) order.push_back(group);
      if (it->second.links.insert(link).second) it->second.name_bytes += link.size();
    }
  for (const std::string& group : order) {
    if (RN_HDF5_CHECK(H5Lexists(file, group.c_str(), H5P_DEFAULT)) > 0) continue;
    const Group& g = groups.at(group);
    const H5Id gcpl = checksummed_group_list();
    const unsigned links = static_cast<unsigned>(std::min<size_t>(g.links.size(), 65535));
    const unsigned name = static_cast<unsigned>(
        std::min<size_t>(g.name_bytes / std::max<size_t>(g.links.size(), 1) + 1, 65535));
    RN_HDF5_CHECK(H5Pset_est_link_info(gcpl.get(), links, name));
    H5Id g_id(RN_HDF5_CHECK(H5Gcreate2(file, group.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT)),
              H5Gclose);
  }
}

namespace {

void write_raw(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* data) {
  H5Id space(RN_HDF5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose);
  H5Id attr(RN_HDF5_CHECK(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT)),
            H5Aclose);
  RN_HDF5_CHECK(H5Awrite(attr.get(), mem_type, data));
}

H5Id open_attribute(hid_t obj, const char* name) {
  if (RN_HDF5_CHECK(H5Aexists(obj, name)) <= 0) return H5Id();
  return H5Id(RN_HDF5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
}

}  // namespace

void write_attribute(hid_t obj, const char* name, const std::string& value) {
  H5Id type(RN_HDF5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
  RN_HDF5_CHECK(H5Tset_size(type.get(), std::max<size_t>(value.size(), 1)));
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_raw(obj, name, type.get(), type.get(), padded.data());
}

void write_attribute(hid_t obj, const char* name, int64_t value) {
  write_raw(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void write_attribute(hid_t obj, const char* name, uint32_t value) {
  write_raw(obj, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, &value);
}

bool read_attribute(hid_t obj, const char* name, std::string& value) {
  H5Id attr = open_attribute(obj, name);
  if (attr.get() < 0) return false;
  H5Id type(RN_HDF5_CHECK(H5Aget_type(attr.get())), H5Tclose);
  RN_CHECK(H5Tget_class(type.get()) == H5T_STRING, "attribute '" << name << "' is not a string");
  RN_CHECK(!H5Tis_variable_str(type.get()),
           "attribute '" << name << "' is a variable-length string");
  const size_t n = H5Tget_size(type.get());
  std::string buf(n, '\0');
  RN_HDF5_CHECK(H5Aread(attr.get(), type.get(), buf.data()));
  value = buf.substr(0, buf.find('\0'));
  return true;
}

bool read_attribute(hid_t obj, const char* name, int64_t& value) {
  H5Id attr = open_attribute(obj, name);
  if (attr.get() < 0) return false;
  H5Id type(RN_HDF5_CHECK(H5Aget_type(attr.get())), H5Tclose);
  RN_CHECK(H5Tget_class(type.get()) == H5T_INTEGER, "attribute '" << name << "' is not an integer");
  RN_HDF5_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &value));
  return true;
}

uint32_t crc_of(const void* data, size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {  // zlib takes a uInt length
    const uInt n = static_cast<uInt>(std::min<size_t>(bytes, 1u << 30));
    crc = crc32(crc, p, n);
    p += n, bytes -= n;
  }
  return static_cast<uint32_t>(crc);
}

hid_t native_type(EntryType t) {
  switch (t) {
    case EntryType::f32:
      return H5T_NATIVE_FLOAT;
    case EntryType::f64:
      return H5T_NATIVE_DOUBLE;
    case EntryType::i64:
      return H5T_NATIVE_INT64;
    case EntryType::text:
      break;
  }
  return -1;
}

void agree(Collective& comm, const std::string& error) {
  if (comm.size() == 1) {
    if (!error.empty()) throw Error(error);
    return;
  }
  // The lowest rank with an error speaks for all.
  const std::vector<uint64_t> flags =
      comm.all_gather(error.empty() ? static_cast<uint64_t>(comm.size()) : comm.rank());
  const int first = static_cast<int>(*std::min_element(flags.begin(), flags.end()));
  if (first == comm.size()) return;
  uint64_t len = error.size();
  comm.broadcast(&len, sizeof(len), first);
  std::string msg = comm.rank() == first ? error : std::string(len, '\0');
  broadcast_bytes(comm, msg.data(), len, first);
  throw Error(msg);
}

void broadcast_bytes(Collective& comm, void* data, size_t bytes, int root) {
  if (comm.size() == 1) return;
  auto* p = static_cast<char*>(data);
  while (bytes > 0) {
    const size_t n = std::min<size_t>(bytes, size_t{1} << 30);
    comm.broadcast(p, n, root);
    p += n, bytes -= n;
  }
}

void merge_owned(Collective& comm, std::vector<uint32_t>& values) {
  if (comm.size() == 1 || values.empty()) return;
  // One owner per value: the sum is the owner's value, exact in a double.
  std::vector<double> sums(values.begin(), values.end());
  comm.all_reduce_sum(sums.data(), sums.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<uint32_t>(sums[i]);
}

void set_mpio_driver(hid_t fapl, const Collective& comm) {
  const void* handle = comm.mpi_handle();
  RN_CHECK(handle != nullptr,
           "[checkpoint] " << comm.size() << " ranks write one file, but no MPI runs them");
  RN_HDF5_CHECK(H5Pset_fapl_mpio(fapl, *static_cast<const MPI_Comm*>(handle), MPI_INFO_NULL));
}

}  // namespace rn::io

// Listing image folders as torchvision does, caching the listing, reading the files.
#include "io/image_folder.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "core/check.h"

namespace rn::io {
namespace {

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// What os.walk sees in one folder: subfolders (links followed) and everything else.
struct FolderEntries {
  std::vector<std::string> dirs, files;
};

FolderEntries read_folder(const std::string& path) {
  FolderEntries e;
  DIR* d = opendir(path.c_str());
  if (!d) RN_FAIL("image folder: cannot list '" << path << "': " << std::strerror(errno));
  while (dirent* ent = readdir(d)) {
    const std::string name = ent->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    // stat follows links, as os.walk(followlinks=True) and DirEntry.is_dir() do; a broken
    // link counts as a file.
    const bool is_dir = stat((path + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    (is_dir ? e.dirs : e.files).push_back(name);
  }
  closedir(d);
  return e;
}

// One class folder: os.walk's folders sorted by path, each folder's files sorted by name.
// Folders already seen (by device and inode) are not walked again, so a link cycle ends.
struct ClassWalk {
  std::vector<std::string> files;  // relative to the root
  std::vector<std::pair<std::string, int64_t>> folders;
};

ClassWalk walk_class(const std::string& root, const std::string& cls) {
  ClassWalk w;
  std::vector<std::string> pending{cls};
  std::set<std::pair<dev_t, ino_t>> seen;
  std::vector<std::pair<std::string, std::vector<std::string>>> listed;
  while (!pending.empty()) {
    const std::string rel = pending.back();
    pending.pop_back();
    const std::string full = root + "/" + rel;
    struct stat st;
    if (stat(full.c_str(), &st) != 0) continue;
    if (!seen.insert({st.st_dev, st.st_ino}).second) continue;
    w.folders.emplace_back(rel, mtime_ns(st));
    FolderEntries e = read_folder(full);
    for (const auto& d : e.dirs) pending.push_back(rel + "/" + d);
    std::vector<std::string> images;
    for (auto& f : e.files)
      if (has_image_extension(f)) images.push_back(std::move(f));
    std::sort(images.begin(), images.end());
    listed.emplace_back(rel, std::move(images));
  }
  // sorted(os.walk(...)) orders the (root, dirs, files) tuples by the folder's path string.
  std::sort(listed.begin(), listed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [rel, images] : listed)
    for (const auto& f : images) w.files.push_back(rel + "/" + f);
  return w;
}

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_str(std::vector<uint8_t>& out, const std::string& s) {
  put_u64(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

struct Reader {
  const std::vector<uint8_t>& b;
  const std::string& what;
  size_t at = 0;
  uint64_t u64() {
    if (b.size() - at < 8) RN_FAIL(what << ": file list is truncated");
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[at + i]) << (8 * i);
    at += 8;
    return v;
  }
  std::string str() {
    const uint64_t n = u64();
    if (b.size() - at < n) RN_FAIL(what << ": file list is truncated");
    std::string s(reinterpret_cast<const char*>(b.data() + at), n);
    at += n;
    return s;
  }
  uint64_t count(uint64_t min_bytes_each) {
    const uint64_t n = u64();
    if (min_bytes_each > 0 && n > (b.size() - at) / min_bytes_each)
      RN_FAIL(what << ": file list is damaged (a count of " << n << ")");
    return n;
  }
};

constexpr char kMagic[] = "resnet-file-list-1";

}  // namespace

bool has_image_extension(const std::string& name) {
  static const char* const exts[] = {".jpg", ".jpeg", ".png",  ".ppm", ".bmp",
                                     ".pgm", ".tif",  ".tiff", ".webp"};
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* e : exts) {
    const size_t n = std::strlen(e);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, e) == 0) return true;
  }
  return false;
}

FolderListing list_image_folder(const std::string& root, int threads) {
  struct stat st;
  if (stat(root.c_str(), &st) != 0)
    RN_FAIL("image folder '" << root << "': " << std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) RN_FAIL("image folder '" << root << "': not a directory");
  FolderListing l;
  l.root = root;
  l.classes = read_folder(root).dirs;
  std::sort(l.classes.begin(), l.classes.end());
  if (l.classes.empty())
    RN_FAIL("image folder '" << root << "': no class folders (expected " << root
                             << "/<class>/<image>)");
  l.folders.emplace_back("", mtime_ns(st));
  std::vector<ClassWalk> walks(l.classes.size());
  std::atomic<size_t> next{0};
  std::vector<std::string> errors(walks.size());
  auto work = [&] {
    for (size_t i; (i = next++) < walks.size();) {
      try {
        walks[i] = walk_class(root, l.classes[i]);
      } catch (const Error& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  const int n = std::clamp(threads, 1, static_cast<int>(walks.size()));
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw Error(e);
  for (size_t c = 0; c < walks.size(); ++c) {
    if (walks[c].files.empty()) l.empty_classes.push_back(l.classes[c]);
    for (auto& f : walks[c].files) {
      l.files.push_back(std::move(f));
      l.labels.push_back(static_cast<int32_t>(c));
    }
    for (auto& f : walks[c].folders) l.folders.push_back(std::move(f));
  }
  return l;
}

std::vector<uint8_t> serialize(const FolderListing& l) {
  std::vector<uint8_t> out(kMagic, kMagic + sizeof kMagic);
  put_str(out, l.root);
  put_u64(out, l.classes.size());
  for (const auto& c : l.classes) put_str(out, c);
  put_u64(out, l.files.size());
  for (size_t i = 0; i < l.files.size(); ++i) {
    put_str(out, l.files[i]);
    put_u64(out, static_cast<uint64_t>(l.labels[i]));
  }
  put_u64(out, l.empty_classes.size());
  for (const auto& c : l.empty_classes) put_str(out, c);
  put_u64(out, l.folders.size());
  for (const auto& [f, t] : l.folders) {
    put_str(out, f);
    put_u64(out, static_cast<uint64_t>(t));
  }
  return out;
}

FolderListing deserialize_listing(const std::vector<uint8_t>& bytes, const std::string& what) {
  if (bytes.size() < sizeof kMagic || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    RN_FAIL(what << ": not a file list of this version");
  Reader r{bytes, what, sizeof kMagic};
  FolderListing l;
  l.root = r.str();
  for (uint64_t i = 0, n = r.count(8); i < n; ++i) l.classes.push_back(r.str());
  for (uint64_t i = 0, n = r.count(16); i < n; ++i) {
    l.files.push_back(r.str());
    const uint64_t label = r.u64();
    if (label >= l.classes.size()) RN_FAIL(what << ": label " << label << " out of range");
    l.labels.push_back(static_cast<int32_t>(label));
  }
  for (uint64_t i = 0, n = r.count(8); i < n; ++i) l.empty_classes.push_back(r.str());
  for (uint64_t i = 0, n = r.count(16); i < n; ++i) {
    std::string f = r.str();
    l.folders.emplace_back(std::move(f), static_cast<int64_t>(r.u64()));
  }
  if (r.at != bytes.size()) RN_FAIL(what << ": trailing bytes after the file list");
  return l;
}

bool load_cached_listing(const std::string& cache_path, const std::string& root,
                         FolderListing& listing) {
  std::vector<uint8_t> bytes;
  try {
    read_whole_file(cache_path, bytes);
  } catch (const BadSample&) {
    return false;  // no cache yet
  }
  FolderListing l;
  try {
    l = deserialize_listing(bytes, cache_path);
  } catch (const Error&) {
    return false;  // damaged or older: listed again and rewritten
  }
  if (l.root != root) return false;
  for (const auto& [rel, t] : l.folders) {
    struct stat st;
    const std::string full = rel.empty() ? root : root + "/" + rel;
    if (stat(full.c_str(), &st) != 0 || mtime_ns(st) != t) return false;
  }
  listing = std::move(l);
  return true;
}

void save_cached_listing(const std::string& cache_path, const FolderListing& listing) {
  const std::vector<uint8_t> bytes = serialize(listing);
  const std::string tmp = cache_path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
    if (!f) RN_FAIL("cannot write the file list cache '" << tmp << "'");
  }
  if (std::rename(tmp.c_str(), cache_path.c_str()) != 0)
    RN_FAIL("cannot write the file list cache '" << cache_path << "': " << std::strerror(errno));
}

FolderListing list_image_folder_once(Collective& comm, const std::string& root,
                                     const std::string& cache, int threads, bool* from_cache) {
  std::vector<uint8_t> bytes;
  std::string error;
  if (comm.rank() == 0) {
    try {
      FolderListing l;
      const bool cached = !cache.empty() && load_cached_listing(cache, root, l);
      if (!cached) {
        l = list_image_folder(root, threads);
        if (!cache.empty()) {
          std::error_code ec;
          std::filesystem::create_directories(std::filesystem::path(cache).parent_path(), ec);
          save_cached_listing(cache, l);
        }
      }
      if (from_cache) *from_cache = cached;
      bytes = serialize(l);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  // The outcome first, so that an error on rank 0 ends every rank with its message.
  uint64_t size = error.empty() ? bytes.size() : 0;
  uint64_t failed = error.empty() ? 0 : error.size();
  comm.broadcast(&failed, sizeof failed, 0);
  if (failed) {
    error.resize(failed);
    comm.broadcast(error.data(), failed, 0);
    throw Error(error);
  }
  comm.broadcast(&size, sizeof size, 0);
  bytes.resize(size);
  comm.broadcast(bytes.data(), size, 0);
  return deserialize_listing(bytes, "file list of " + root);
}

FolderSource::FolderSource(FolderListing listing) : listing_(std::move(listing)) {
  RN_CHECK(
      listing_.files.size() == listing_.labels.size(),
      "[folder] " << listing_.files.size() << " files, " << listing_.labels.size() << " labels");
}

std::string FolderSource::path(int64_t index) const {
  return listing_.root + "/" + listing_.files[static_cast<size_t>(index)];
}

void FolderSource::read(int64_t index, std::vector<uint8_t>& bytes) const {
  read_whole_file(path(index), bytes);
}

void read_whole_file(const std::string& path, std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw BadSample(str_cat("cannot open: ", std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw BadSample("not a regular file");
  }
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw BadSample(n == 0 ? std::string("file shrank while being read")
                             : str_cat("cannot read: ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace rn::io

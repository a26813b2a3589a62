// Writing and reading packed data sets.
#include "io/packed.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "io/hdf5_handle.h"
#include "io/resample.h"

namespace rn::io {
namespace {

// One sample as it goes into the file.
struct Packed {
  std::vector<uint8_t> bytes;
  bool bad = false, resized = false;
  std::string problem;
  uint64_t bytes_in = 0;
};

// Re-encodes an image whose shorter side exceeds `shorter` so that it becomes `shorter`.
bool shrink(const std::vector<uint8_t>& in, int shorter, int quality, std::vector<uint8_t>& out,
            SampleScratch& s) {
  const ImageHeader h = read_image_header(in.data(), in.size());
  const int small = std::min(h.width, h.height);
  if (small <= shorter) return false;
  const double scale = static_cast<double>(shorter) / small;
  const int ow = std::max(1, static_cast<int>(std::lround(h.width * scale)));
  const int oh = std::max(1, static_cast<int>(std::lround(h.height * scale)));
  DecodeRequest req;
  req.out_width = ow, req.out_height = oh;
  req.partial = false;
  decode_image(in.data(), in.size(), req, s.image);
  const DecodedImage& img = s.image;
  std::vector<float> planes(3 * static_cast<size_t>(ow) * oh);
  const float mul[3] = {1, 1, 1}, add[3] = {0, 0, 0};
  resample_box(
      img.pixels.data(), img.width, img.height, img.channels,
      static_cast<size_t>(img.width) * img.channels, 0, 0, img.width, img.height,
      ResampleOut{.width = ow, .height = oh, .mul = mul, .add = add, .planes = planes.data()},
      s.resample);
  const int c = img.channels;
  const size_t plane = static_cast<size_t>(ow) * oh;
  std::vector<uint8_t> pixels(plane * c);
  for (size_t i = 0; i < plane; ++i)
    for (int k = 0; k < c; ++k)
      pixels[i * c + k] =
          static_cast<uint8_t>(std::clamp(std::lround(planes[k * plane + i]), 0L, 255L));
  out = encode_jpeg(pixels.data(), ow, oh, c, quality);
  return true;
}

Packed pack_one(const std::string& path, const PackOptions& o, SampleScratch& s) {
  Packed p;
  try {
    read_whole_file(path, p.bytes);
    p.bytes_in = p.bytes.size();
    if (o.resize_shorter > 0) {
      std::vector<uint8_t> smaller;
      if (shrink(p.bytes, o.resize_shorter, o.quality, smaller, s)) {
        p.bytes.swap(smaller);
        p.resized = true;
      }
    } else {
      // Decoding the whole image is the only way to know that it decodes.
      decode_image(p.bytes.data(), p.bytes.size(), DecodeRequest{.partial = false}, s.image);
    }
  } catch (const BadSample& e) {
    p.bad = true;
    p.problem = e.what();
  }
  return p;
}

void write_blob(hid_t file, const char* name, const std::vector<uint8_t>& data) {
  const hsize_t n = data.size();
  H5Id space(RN_HDF5_CHECK(H5Screate_simple(1, &n, nullptr)), H5Sclose);
  H5Id set(RN_HDF5_CHECK(H5Dcreate2(file, name, H5T_NATIVE_UINT8, space.get(), H5P_DEFAULT,
                                    H5P_DEFAULT, H5P_DEFAULT)),
           H5Dclose);
  if (n > 0)
    RN_HDF5_CHECK(
        H5Dwrite(set.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()));
}

template <typename T>
void write_array(hid_t file, const char* name, hid_t type, const std::vector<T>& data) {
  const hsize_t n = data.size();
  H5Id space(RN_HDF5_CHECK(H5Screate_simple(1, &n, nullptr)), H5Sclose);
  H5Id set(RN_HDF5_CHECK(
               H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)),
           H5Dclose);
  if (n > 0) RN_HDF5_CHECK(H5Dwrite(set.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()));
}

std::vector<uint8_t> joined(const std::vector<std::string>& items) {
  std::vector<uint8_t> out;
  for (const auto& s : items) {
    out.insert(out.end(), s.begin(), s.end());
    out.push_back(0);
  }
  return out;
}

std::vector<std::string> split_nul(const std::vector<uint8_t>& blob) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < blob.size(); ++i)
    if (blob[i] == 0) {
      out.emplace_back(reinterpret_cast<const char*>(blob.data() + start), i - start);
      start = i + 1;
    }
  return out;
}

// A 1-D dataset's length and contents, checked against the type expected.
template <typename T>
std::vector<T> read_array(hid_t file, const char* name, hid_t type, const std::string& where) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) RN_FAIL(where << "no dataset '" << name << "'");
  H5Id set(RN_HDF5_CHECK(H5Dopen2(file, name, H5P_DEFAULT)), H5Dclose);
  H5Id space(RN_HDF5_CHECK(H5Dget_space(set.get())), H5Sclose);
  H5Id ftype(RN_HDF5_CHECK(H5Dget_type(set.get())), H5Tclose);
  if (H5Sget_simple_extent_ndims(space.get()) != 1)
    RN_FAIL(where << "dataset '" << name << "' is not one-dimensional");
  if (H5Tget_class(ftype.get()) != H5Tget_class(type) ||
      H5Tget_size(ftype.get()) != H5Tget_size(type))
    RN_FAIL(where << "dataset '" << name << "' has the wrong element type");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  std::vector<T> out(static_cast<size_t>(n));
  if (n > 0) RN_HDF5_CHECK(H5Dread(set.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()));
  return out;
}

// Empty class folders: an error with --stop-on-bad, else a warning each (the label is kept).
void check_empty_classes(const FolderListing& listing, const std::string& from,
                         const PackOptions& o) {
  if (listing.empty_classes.empty()) return;
  if (o.stop_on_bad)
    RN_FAIL("image folder '" << from << "': class folder '" << listing.empty_classes.front()
                             << "' has no images");
  for (const auto& c : listing.empty_classes)
    if (o.warn) o.warn("class folder '" + from + "/" + c + "' has no images; its label is kept");
}

// Files [begin, end) of the listing read (and shrunk, or test-decoded) by `scratch.size()`
// threads.
std::vector<Packed> pack_window(const FolderListing& listing, size_t begin, size_t end,
                                const PackOptions& o, std::vector<SampleScratch>& scratch) {
  std::vector<Packed> done(end - begin);
  std::atomic<size_t> next{begin};
  auto work = [&](size_t t) {
    for (size_t i; (i = next++) < end;)
      done[i - begin] = pack_one(listing.root + "/" + listing.files[i], o, scratch[t]);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < scratch.size(); ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& t : pool) t.join();
  return done;
}

// Every image's bytes, in listing order, appended to the raw file `raw_path`; `offsets` gets
// each image's end. Returns the first failure, or "".
std::string pack_to_raw(const FolderListing& listing, const PackOptions& o,
                        const std::string& raw_path, std::vector<uint64_t>& offsets,
                        PackResult& r) {
  std::FILE* raw = std::fopen(raw_path.c_str(), "wb");
  if (!raw) RN_FAIL("data pack: cannot write '" << raw_path << "': " << std::strerror(errno));
  const int threads = std::max(1, o.threads);
  const size_t window = static_cast<size_t>(threads) * 32;
  std::vector<SampleScratch> scratch(static_cast<size_t>(threads));
  std::string failure;
  for (size_t begin = 0; begin < listing.files.size() && failure.empty(); begin += window) {
    const size_t end = std::min(listing.files.size(), begin + window);
    std::vector<Packed> done = pack_window(listing, begin, end, o, scratch);
    for (size_t i = begin; i < end; ++i) {
      Packed& p = done[i - begin];
      const std::string name = listing.root + "/" + listing.files[i];
      if (p.bad) {
        if (o.stop_on_bad) {
          failure = "bad sample " + name + ": " + p.problem;
          break;
        }
        ++r.bad;
        if (o.warn) o.warn("bad sample " + name + ": " + p.problem + "; stored as it is");
      }
      r.resized += p.resized;
      r.bytes_in += p.bytes_in;
      if (!p.bytes.empty() && std::fwrite(p.bytes.data(), 1, p.bytes.size(), raw) != p.bytes.size())
        failure = "cannot write '" + raw_path + "': " + std::strerror(errno);
      offsets.push_back(offsets.back() + p.bytes.size());
    }
    if (o.progress) o.progress(static_cast<int64_t>(end), r.samples);
  }
  if (std::fclose(raw) != 0 && failure.empty())
    failure = "cannot write '" + raw_path + "': " + std::strerror(errno);
  return failure;
}

// /images: a contiguous dataset of `total` bytes, filled from the raw file in 64 MiB pieces.
void write_images(hid_t file, const std::string& raw_path, hsize_t total) {
  H5Id space(RN_HDF5_CHECK(H5Screate_simple(1, &total, nullptr)), H5Sclose);
  H5Id dcpl(RN_HDF5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
  RN_HDF5_CHECK(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS));
  RN_HDF5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
  H5Id images(RN_HDF5_CHECK(H5Dcreate2(file, "images", H5T_NATIVE_UINT8, space.get(), H5P_DEFAULT,
                                       dcpl.get(), H5P_DEFAULT)),
              H5Dclose);
  std::FILE* in = std::fopen(raw_path.c_str(), "rb");
  if (!in) RN_FAIL("data pack: cannot read back '" << raw_path << "'");
  std::vector<uint8_t> buf(64 << 20);
  for (hsize_t at = 0; at < total;) {
    const hsize_t n = std::min<hsize_t>(buf.size(), total - at);
    if (std::fread(buf.data(), 1, n, in) != n) {
      std::fclose(in);
      RN_FAIL("data pack: '" << raw_path << "' ends early");
    }
    H5Id fspace(RN_HDF5_CHECK(H5Dget_space(images.get())), H5Sclose);
    RN_HDF5_CHECK(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &at, nullptr, &n, nullptr));
    H5Id mspace(RN_HDF5_CHECK(H5Screate_simple(1, &n, nullptr)), H5Sclose);
    RN_HDF5_CHECK(H5Dwrite(images.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT,
                           buf.data()));
    at += n;
  }
  std::fclose(in);
}

// The packed file `path`: its attributes, the images from the raw file, offsets, labels,
// classes and paths.
void write_packed(const std::string& path, const std::string& from, const PackOptions& o,
                  const std::string& raw_path, const FolderListing& listing,
                  const std::vector<uint64_t>& offsets) {
  const H5Id fapl = checksummed_access_list(), fcpl = checksummed_create_list();
  H5Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
  if (file.get() < 0) RN_FAIL("data pack: cannot create '" << path << "'");
  write_attribute(file.get(), "format", std::string(kPackedFormat));
  write_attribute(file.get(), "format_version", static_cast<int64_t>(kPackedFormatVersion));
  write_attribute(file.get(), "source",
                  std::filesystem::absolute(from).lexically_normal().string());
  write_attribute(file.get(), "resize_shorter", static_cast<int64_t>(o.resize_shorter));
  write_attribute(file.get(), "quality",
                  static_cast<int64_t>(o.resize_shorter > 0 ? o.quality : 0));
  write_images(file.get(), raw_path, offsets.back());
  write_array(file.get(), "offsets", H5T_NATIVE_UINT64, offsets);
  write_array(file.get(), "labels", H5T_NATIVE_INT32, listing.labels);
  write_blob(file.get(), "classes", joined(listing.classes));
  write_blob(file.get(), "paths", joined(listing.files));
  RN_HDF5_CHECK(H5Fflush(file.get(), H5F_SCOPE_GLOBAL));
}

}  // namespace

PackResult pack_image_folder(const std::string& from, const std::string& to, const PackOptions& o) {
  silence_hdf5_errors();
  RN_CHECK(o.quality >= 1 && o.quality <= 100, "--quality " << o.quality << " is not in 1..100");
  RN_CHECK(o.resize_shorter >= 0, "--resize-shorter " << o.resize_shorter);
  const FolderListing listing = list_image_folder(from, o.threads);
  check_empty_classes(listing, from, o);
  const std::string tmp = to + ".tmp";
  const std::string raw_tmp = to + ".images.tmp";
  struct Cleanup {
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& p : paths) std::remove(p.c_str());
    }
  } cleanup{{raw_tmp, tmp}};

  // The images go to a raw file first: the contiguous HDF5 dataset needs its size up front.
  PackResult r;
  r.samples = static_cast<int64_t>(listing.files.size());
  std::vector<uint64_t> offsets{0};
  offsets.reserve(listing.files.size() + 1);
  const std::string failure = pack_to_raw(listing, o, raw_tmp, offsets, r);
  if (!failure.empty()) RN_FAIL("data pack: " << failure);
  r.bytes_out = offsets.back();
  write_packed(tmp, from, o, raw_tmp, listing, offsets);
  if (std::rename(tmp.c_str(), to.c_str()) != 0)
    RN_FAIL("data pack: cannot rename '" << tmp << "' to '" << to << "': " << std::strerror(errno));
  return r;
}

PackedSource::PackedSource(const std::string& path) : path_(path) {
  silence_hdf5_errors();
  const std::string where = "packed file '" + path + "': ";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) RN_FAIL(where << "no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) RN_FAIL(where << "not an HDF5 file");
  {
    H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (file.get() < 0) RN_FAIL(where << "cannot be opened (damaged or truncated?)");
    std::string format;
    if (!read_attribute(file.get(), "format", format) || format != kPackedFormat)
      RN_FAIL(where << "not a packed data set (root attribute 'format' is not '" << kPackedFormat
                    << "'; make one with resnet data pack)");
    int64_t v = 0;
    read_attribute(file.get(), "format_version", v);
    if (v != kPackedFormatVersion)
      RN_FAIL(where << "format_version " << v << " is not the supported " << kPackedFormatVersion);
    read_attribute(file.get(), "source", source_);
    if (read_attribute(file.get(), "resize_shorter", v)) resize_shorter_ = static_cast<int>(v);
    if (read_attribute(file.get(), "quality", v)) quality_ = static_cast<int>(v);
    offsets_ = read_array<uint64_t>(file.get(), "offsets", H5T_NATIVE_UINT64, where);
    labels_ = read_array<int32_t>(file.get(), "labels", H5T_NATIVE_INT32, where);
    classes_ = split_nul(read_array<uint8_t>(file.get(), "classes", H5T_NATIVE_UINT8, where));
    paths_ = split_nul(read_array<uint8_t>(file.get(), "paths", H5T_NATIVE_UINT8, where));
    if (H5Lexists(file.get(), "images", H5P_DEFAULT) <= 0) RN_FAIL(where << "no dataset 'images'");
    H5Id images(RN_HDF5_CHECK(H5Dopen2(file.get(), "images", H5P_DEFAULT)), H5Dclose);
    H5Id space(RN_HDF5_CHECK(H5Dget_space(images.get())), H5Sclose);
    hsize_t n = 0;
    if (H5Sget_simple_extent_ndims(space.get()) != 1)
      RN_FAIL(where << "dataset 'images' is not one-dimensional");
    H5Sget_simple_extent_dims(space.get(), &n, nullptr);
    if (offsets_.size() != labels_.size() + 1)
      RN_FAIL(where << offsets_.size() << " offsets for " << labels_.size()
                    << " labels (expected one more offset than labels)");
    if (paths_.size() != labels_.size())
      RN_FAIL(where << paths_.size() << " paths for " << labels_.size() << " labels");
    if (labels_.empty()) RN_FAIL(where << "holds no samples");
    if (classes_.empty()) RN_FAIL(where << "names no classes");
    if (offsets_.front() != 0 || offsets_.back() != n)
      RN_FAIL(where << "offsets span [" << offsets_.front() << ", " << offsets_.back()
                    << ") but 'images' holds " << n << " bytes");
    for (size_t i = 1; i < offsets_.size(); ++i)
      if (offsets_[i] < offsets_[i - 1]) RN_FAIL(where << "offsets decrease at sample " << i - 1);
    for (size_t i = 0; i < labels_.size(); ++i)
      if (labels_[i] < 0 || static_cast<size_t>(labels_[i]) >= classes_.size())
        RN_FAIL(where << "sample " << i << " has label " << labels_[i] << " but there are "
                      << classes_.size() << " classes");
    const haddr_t at = H5Dget_offset(images.get());
    if (n > 0 && at == HADDR_UNDEF)
      RN_FAIL(where << "dataset 'images' is not stored contiguously (not written by data pack?)");
    base_ = n > 0 ? at : 0;
  }
  struct stat st;
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) RN_FAIL(where << "cannot open: " << std::strerror(errno));
  if (fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) < base_ + offsets_.back()) {
    ::close(fd_);
    RN_FAIL(where << "is shorter than its images (truncated?)");
  }
}

PackedSource::~PackedSource() {
  if (fd_ >= 0) ::close(fd_);
}

std::string PackedSource::path(int64_t index) const {
  return path_ + ":" + paths_[static_cast<size_t>(index)];
}

void PackedSource::read(int64_t index, std::vector<uint8_t>& bytes) const {
  const uint64_t begin = offsets_[static_cast<size_t>(index)];
  const size_t n = static_cast<size_t>(sample_bytes(index));
  bytes.resize(n);
  for (size_t done = 0; done < n;) {
    const ssize_t got =
        ::pread(fd_, bytes.data() + done, n - done, static_cast<off_t>(base_ + begin + done));
    read_calls_.fetch_add(1, std::memory_order_relaxed);
    if (got < 0 && errno == EINTR) continue;
    if (got > 0) read_bytes_.fetch_add(got, std::memory_order_relaxed);
    if (got <= 0)
      throw BadSample(got == 0 ? std::string("the packed file ends early")
                               : str_cat("cannot read: ", std::strerror(errno)));
    done += static_cast<size_t>(got);
  }
}

std::string PackedSource::read_vectors(std::vector<iovec>& iov, uint64_t from) const {
  const size_t max_iov = std::min<size_t>(IOV_MAX, 1024);
  uint64_t done = 0;
  for (size_t first = 0; first < iov.size();) {
    const ssize_t got =
        ::preadv(fd_, iov.data() + first, static_cast<int>(std::min(iov.size() - first, max_iov)),
                 static_cast<off_t>(base_ + from + done));
    read_calls_.fetch_add(1, std::memory_order_relaxed);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      return got == 0 ? std::string("the packed file ends early")
                      : str_cat("cannot read: ", std::strerror(errno));
    read_bytes_.fetch_add(got, std::memory_order_relaxed);
    done += static_cast<uint64_t>(got);
    // A short read: step over the iovecs it filled and into the one it ended in.
    for (size_t left = static_cast<size_t>(got); left > 0 && first < iov.size();) {
      if (left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      } else {
        iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
        left = 0;
      }
    }
  }
  return "";
}

void PackedSource::read_many(const int64_t* indices, size_t n,
                             std::vector<std::vector<uint8_t>>& out,
                             std::vector<std::string>& errors) const {
  size_read_buffers(n, out, errors);
  // Per thread, kept from call to call: the file order, the iovecs, the sink for gaps.
  thread_local std::vector<uint32_t> order;
  thread_local std::vector<iovec> iov;
  thread_local std::vector<uint8_t> sink;
  order.resize(n);
  for (size_t k = 0; k < n; ++k) order[k] = static_cast<uint32_t>(k);
  auto begin_of = [&](uint32_t k) { return offsets_[static_cast<size_t>(indices[k])]; };
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return begin_of(a) != begin_of(b) ? begin_of(a) < begin_of(b) : a < b;
  });
  if (sink.size() < kMaxGap) sink.resize(kMaxGap);
  const size_t max_iov = std::min<size_t>(IOV_MAX, 1024);
  for (size_t r = 0; r < n;) {
    // One run: samples in file order, each starting at most kMaxGap after the previous one
    // ends; a sample listed twice in the batch is read once and copied.
    const uint64_t run_begin = begin_of(order[r]);
    uint64_t at = run_begin;
    iov.clear();
    size_t e = r;
    for (; e < n; ++e) {
      const uint32_t k = order[e];
      const int64_t index = indices[k];
      const uint64_t b = offsets_[static_cast<size_t>(index)];
      const uint64_t len = sample_bytes(index);
      if (e > r && b >= at &&
          (b - at > kMaxGap || b + len - run_begin > kMaxRead || iov.size() + 2 > max_iov))
        break;
      out[k].resize(static_cast<size_t>(len));
      if (b < at) continue;  // the same sample as the previous one
      if (b > at) iov.push_back({sink.data(), static_cast<size_t>(b - at)});
      if (len > 0) iov.push_back({out[k].data(), static_cast<size_t>(len)});
      at = b + len;
    }
    const std::string error = read_vectors(iov, run_begin);
    for (size_t j = r; j < e; ++j) {
      const uint32_t k = order[j];
      if (!error.empty()) {
        errors[k] = error;
      } else if (j > r && indices[k] == indices[order[j - 1]]) {
        out[k] = out[order[j - 1]];
      }
    }
    r = e;
  }
}

std::string describe_packed(const std::string& path) {
  const PackedSource p(path);
  std::vector<int64_t> per_class(p.class_names().size(), 0);
  uint64_t smallest = UINT64_MAX, largest = 0;
  for (int64_t i = 0; i < p.size(); ++i) {
    ++per_class[static_cast<size_t>(p.label(i))];
    smallest = std::min(smallest, p.sample_bytes(i));
    largest = std::max(largest, p.sample_bytes(i));
  }
  std::ostringstream os;
  os << path << ": " << kPackedFormat << " version " << kPackedFormatVersion << "\n"
     << "  source:   " << (p.source().empty() ? "?" : p.source()) << "\n"
     << "  samples:  " << p.size() << " in " << p.class_names().size() << " classes\n"
     << "  images:   " << p.image_bytes() << " bytes (" << std::fixed << std::setprecision(1)
     << p.image_bytes() / 1048576.0 << " MiB), " << smallest << " to " << largest
     << " bytes per sample, mean " << p.image_bytes() / p.size() << "\n"
     << "  encoding: "
     << (p.resize_shorter() > 0
             ? str_cat("shorter side at most ", p.resize_shorter(), ", JPEG quality ", p.quality())
             : std::string("the source files as they were"))
     << "\n  classes:  ";
  const size_t show = std::min<size_t>(per_class.size(), 10);
  for (size_t c = 0; c < show; ++c)
    os << (c ? ", " : "") << p.class_names()[c] << " (" << per_class[c] << ")";
  if (show < per_class.size()) os << ", ... " << per_class.size() - show << " more";
  os << "\n";
  return os.str();
}

}  // namespace rn::io

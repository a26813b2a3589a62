// Reading the binary CIFAR files.
#include "io/cifar.h"

#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "io/dataset.h"

namespace rn::io {
namespace {

constexpr int kPixels = 3 * 32 * 32;

int label_bytes(CifarKind k) {
  return k == CifarKind::cifar10 ? 1 : 2;
}

int classes(CifarKind k) {
  return k == CifarKind::cifar10 ? 10 : k == CifarKind::cifar100_fine ? 100 : 20;
}

}  // namespace

std::vector<std::string> cifar_files(const std::string& root, CifarKind kind, Split split) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) RN_FAIL("data.root '" << root << "': no such directory");
  std::vector<std::string> names;
  if (kind == CifarKind::cifar10) {
    if (split == Split::train)
      for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
    else
      names.push_back("test_batch.bin");
  } else {
    names.push_back(split == Split::train ? "train.bin" : "test.bin");
  }
  // The archives unpack into a folder of their own; both it and the root itself are accepted.
  const std::string sub = kind == CifarKind::cifar10 ? "cifar-10-batches-bin" : "cifar-100-binary";
  fs::path dir = root;
  if (!fs::exists(dir / names.front(), ec) && fs::exists(dir / sub / names.front(), ec)) dir /= sub;
  std::vector<std::string> files;
  for (const auto& n : names) {
    const fs::path p = dir / n;
    if (!fs::is_regular_file(p, ec))
      RN_FAIL(p.string() << ": no such file in data.root '" << root << "' (the binary version of "
                         << (kind == CifarKind::cifar10 ? "CIFAR-10" : "CIFAR-100") << ")");
    files.push_back(p.string());
  }
  return files;
}

ImageSet load_cifar(const std::string& root, CifarKind kind, Split split, int64_t limit) {
  if (limit < 0) RN_FAIL("data limit " << limit << " is negative (0 means all samples)");
  const int lb = label_bytes(kind);
  const size_t record = static_cast<size_t>(lb) + kPixels;
  ImageSet set;
  set.channels = 3, set.height = 32, set.width = 32;
  set.num_classes = classes(kind);
  std::vector<uint8_t> buf;
  for (const auto& path : cifar_files(root, kind, split)) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) RN_FAIL(path << ": cannot open");
    const auto size = static_cast<size_t>(f.tellg());
    if (size == 0 || size % record != 0)
      RN_FAIL(path << ": " << size << " bytes is not a whole number of " << record
                   << "-byte records (" << lb << " label byte(s) + 3072 pixels)");
    buf.resize(size);
    f.seekg(0);
    if (!f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(size)))
      RN_FAIL(path << ": read failed");
    const size_t n = size / record;
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* r = buf.data() + i * record;
      // CIFAR-100 records hold the coarse label first, then the fine one.
      const int label = kind == CifarKind::cifar100_fine ? r[1] : r[0];
      if (label >= set.num_classes)
        RN_FAIL(path << ": record " << i << " has label " << label << ", outside 0.."
                     << set.num_classes - 1);
      set.labels.push_back(label);
      set.pixels.insert(set.pixels.end(), r + lb, r + record);
    }
    set.count += static_cast<int64_t>(n);
    if (limit > 0 && set.count >= limit) break;
  }
  keep_first(set, limit);
  return set;
}

std::vector<uint8_t> cifar_records(const ImageSet& data, CifarKind kind,
                                   const std::vector<int32_t>& coarse) {
  RN_CHECK(data.channels == 3 && data.height == 32 && data.width == 32,
           "[cifar] images are " << data.channels << "x" << data.height << "x" << data.width);
  std::vector<uint8_t> out;
  for (int64_t i = 0; i < data.count; ++i) {
    const auto li = static_cast<size_t>(i);
    if (kind == CifarKind::cifar10) {
      out.push_back(static_cast<uint8_t>(data.labels[li]));
    } else {
      out.push_back(static_cast<uint8_t>(coarse.empty() ? 0 : coarse[li]));
      out.push_back(static_cast<uint8_t>(data.labels[li]));
    }
    out.insert(out.end(), data.sample(i), data.sample(i) + kPixels);
  }
  return out;
}

}  // namespace rn::io

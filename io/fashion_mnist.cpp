// Fashion-MNIST: locating its four idx files under data.root and reading one split.
#include "io/fashion_mnist.h"

#include <filesystem>
#include <system_error>

#include "core/check.h"
#include "io/dataset.h"
#include "io/idx_reader.h"

namespace rn::io {

std::string find_idx_file(const std::string& root, const std::string& stem) {
  const std::filesystem::path plain = std::filesystem::path(root) / stem;
  const std::filesystem::path gz = std::filesystem::path(root) / (stem + ".gz");
  std::error_code ec;
  if (std::filesystem::is_regular_file(plain, ec)) return plain.string();
  if (std::filesystem::is_regular_file(gz, ec)) return gz.string();
  RN_FAIL(gz.string() << ": no such file (nor " << plain.string() << ") in data.root '" << root
                      << "'");
}

ImageSet load_fashion_mnist(const std::string& root, Split split, int64_t limit) {
  if (limit < 0) RN_FAIL("data limit " << limit << " is negative (0 means all samples)");
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) {
    RN_FAIL("data.root '" << root << "': no such directory");
  }
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images = find_idx_file(root, prefix + "-images-idx3-ubyte");
  const std::string labels = find_idx_file(root, prefix + "-labels-idx1-ubyte");
  ImageSet set = read_idx_images_and_labels(images, labels);
  keep_first(set, limit);
  return set;
}

}  // namespace rn::io

// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 60000 training and 10000 test images, 1x28x28.
#pragma once

#include <cstdint>
#include <string>

#include "io/image_set.h"

namespace rn::io {

enum class Split { train, test };

// The path of one of the four files under `root`, plain preferred over `.gz` when both exist;
// `stem` is e.g. "train-images-idx3-ubyte". Throws naming both candidates when neither exists.
std::string find_idx_file(const std::string& root, const std::string& stem);

// Reads <root>/{train|t10k}-{images-idx3|labels-idx1}-ubyte[.gz]; `limit` > 0 keeps only the
// first `limit` samples (data.train_limit / data.test_limit), 0 keeps all.
ImageSet load_fashion_mnist(const std::string& root, Split split, int64_t limit = 0);

}  // namespace rn::io

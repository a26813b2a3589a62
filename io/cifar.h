// CIFAR-10 and CIFAR-100 (Krizhevsky 2009), the binary versions: records of label byte(s) then
// 3072 pixel bytes (1024 red, 1024 green, 1024 blue, rows of 32).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/fashion_mnist.h"
#include "io/image_set.h"

namespace rn::io {

enum class CifarKind { cifar10, cifar100_fine, cifar100_coarse };

// The split's files under `root` (or under root/cifar-10-batches-bin, root/cifar-100-binary):
// CIFAR-10 data_batch_1..5.bin / test_batch.bin, CIFAR-100 train.bin / test.bin.
std::vector<std::string> cifar_files(const std::string& root, CifarKind kind, Split split);

// Reads the split; `limit` > 0 keeps the first `limit` samples. Each file must hold whole
// records and every label must be in range; else one error line naming the file.
ImageSet load_cifar(const std::string& root, CifarKind kind, Split split, int64_t limit = 0);

// Records of `kind` for `data` (count x 3 x 32 x 32) and labels (CIFAR-100: `labels` are the
// fine labels, `coarse` the coarse ones): the files' layout, for tests and conversions.
std::vector<uint8_t> cifar_records(const ImageSet& data, CifarKind kind,
                                   const std::vector<int32_t>& coarse = {});

}  // namespace rn::io

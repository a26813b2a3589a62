// ArrayReader on files in HDF5's original format (h5py's default), chunked and compressed as
// h5py writes them when asked: the values come back whole through the child that reads them,
// and a dataspace that claims more than its own maximum is refused before anything is read.
#include "io/array_file.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "io/hdf5_handle.h"
#include "tests/error_of.h"
#include "tests/scratch_dir.h"

namespace rn::io {
namespace {

using test::error_of;

class ArrayFileTest : public ::testing::Test {
 protected:
  // `name` in `file`: `values` (native `mem` type, stored as `file_type`) in chunks of
  // `chunk_rows` along the first dimension, deflated; the maximum shape given as the shape.
  static void add_chunked(hid_t file, const char* name, const std::vector<hsize_t>& dims,
                          hid_t file_type, hid_t mem, const void* values, hsize_t chunk_rows) {
    const int rank = static_cast<int>(dims.size());
    const hid_t space = H5Screate_simple(rank, dims.data(), dims.data());
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    std::vector<hsize_t> chunk = dims;
    chunk[0] = chunk_rows;
    H5Pset_chunk(dcpl, rank, chunk.data());
    H5Pset_deflate(dcpl, 4);
    const hid_t set = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ASSERT_GE(set, 0);
    ASSERT_GE(H5Dwrite(set, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
    H5Dclose(set);
    H5Pclose(dcpl);
    H5Sclose(space);
  }

  // 13 images of 1 x 4 x 4 and 13 int32 labels, in HDF5's original format (the library's
  // defaults, as h5py writes).
  std::string write_original_format() {
    const std::string p = scratch_.file("h5py_like.h5");
    images_.resize(13 * 16);
    std::iota(images_.begin(), images_.end(), -50.0f);
    labels_.resize(13);
    for (size_t i = 0; i < labels_.size(); ++i) labels_[i] = static_cast<int32_t>(i % 10);
    const hid_t file = H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(file, 0);
    add_chunked(file, "images", {13, 1, 4, 4}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, images_.data(), 3);
    add_chunked(file, "labels", {13}, H5T_STD_I32LE, H5T_NATIVE_INT32, labels_.data(), 4);
    H5Fclose(file);
    return p;
  }

  // In file `p`, the one dataspace of 13 values (its dimension 13, then its maximum 13, 8 bytes
  // each): the dimension made 16,777,229 as one flipped bit would, and the maximum too if asked.
  static void patch_dataspace_of_13(const std::string& p, bool maximum_too) {
    std::ifstream f(p, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
    char pattern[16] = {};
    pattern[0] = pattern[8] = 13;
    auto at = std::search(bytes.begin(), bytes.end(), pattern, pattern + 16);
    ASSERT_NE(at, bytes.end()) << "no dataspace of 13 values in " << p;
    at[3] = 1;
    if (maximum_too) at[11] = 1;
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
  }

  test::ScratchDir scratch_;
  std::vector<float> images_;
  std::vector<int32_t> labels_;
};

TEST_F(ArrayFileTest, ChunkedValuesOfTheOriginalFormatAreReadWhole) {
  const std::string p = write_original_format();
  ASSERT_EQ(superblock_version(p), 0);  // the format whose values are read in a child
  const ArrayReader in(p);
  EXPECT_EQ(in.shape("/images"), (std::vector<int64_t>{13, 1, 4, 4}));
  EXPECT_EQ(in.shape("/labels"), (std::vector<int64_t>{13}));
  const FloatArray images = in.read_f32("/images");
  EXPECT_EQ(images.shape, (std::vector<int64_t>{13, 1, 4, 4}));
  EXPECT_EQ(images.values, images_);
  std::vector<int64_t> shape;
  const std::vector<int64_t> labels = in.read_integers("/labels", &shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{13}));
  EXPECT_EQ(labels, std::vector<int64_t>(labels_.begin(), labels_.end()));
  // A read that fails in the child fails the same way here: the type is checked first, and a
  // missing dataset is named.
  EXPECT_NE(error_of([&] { in.read_f32("/labels"); }).find("is int32, expected float32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { in.shape("/nothing"); }).find("no dataset '/nothing'"),
            std::string::npos);
  // Large arrays come through the child in slabs of whole rows: here 1 or 3 images (64 bytes
  // each) and 1, 12 or all 13 labels (8 bytes each) at a time, across chunks of 3 and 4.
  for (size_t slab : {size_t{1}, size_t{100}, size_t{200}}) {
    const ArrayReader small(p, slab);
    EXPECT_EQ(small.read_f32("/images").values, images_) << slab;
    EXPECT_EQ(small.read_integers("/labels", &shape),
              std::vector<int64_t>(labels_.begin(), labels_.end()))
        << slab;
  }
}

// A dataspace whose shape exceeds its own maximum (one flipped bit in a dimension of a file
// without checksums) is refused by its shape, before a value is read or memory taken for it.
TEST_F(ArrayFileTest, ShapeBeyondItsMaximumIsRefused) {
  const std::string p = write_original_format();
  patch_dataspace_of_13(p, false);
  const ArrayReader in(p);
  const std::string e = error_of([&] { in.shape("/labels"); });
  EXPECT_NE(e.find("'" + p +
                   "': dataset '/labels' claims 16777229 values, beyond its maximum "
                   "shape 13 (damaged?)"),
            std::string::npos)
      << e;
  EXPECT_EQ(error_of([&] { in.read_f32("/images"); }), "");  // the other dataset is intact
}

// Shapes within their own maximum are still held against what is stored and what memory holds:
// a contiguous dataset whose shape and maximum both claim more than its bytes, and an extensible
// (chunked, unlimited) one grown to more values than this machine's memory.
TEST_F(ArrayFileTest, ShapesWithinTheirMaximumAreHeldAgainstStorageAndMemory) {
  const std::string p = scratch_.file("contiguous.h5");
  const hid_t file = H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hsize_t n = 13, unlimited = H5S_UNLIMITED, chunk = 4, huge = hsize_t{1} << 40;
  const std::vector<float> values(n, 1.5f);
  const hid_t space = H5Screate_simple(1, &n, &n);
  const hid_t set =
      H5Dcreate2(file, "labels", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  const hid_t grow_space = H5Screate_simple(1, &n, &unlimited);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, &chunk);
  const hid_t grown =
      H5Dcreate2(file, "grown", H5T_IEEE_F32LE, grow_space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(H5Dset_extent(grown, &huge), 0);  // no chunk is written: the file stays small
  H5Dclose(grown), H5Pclose(dcpl), H5Sclose(grow_space), H5Dclose(set), H5Sclose(space);
  H5Fclose(file);
  patch_dataspace_of_13(p, true);
  const ArrayReader in(p);
  std::string e = error_of([&] { in.read_f32("/labels"); });
  EXPECT_NE(e.find("dataset '/labels' claims 16777229 values but stores 52 bytes (damaged?)"),
            std::string::npos)
      << e;
  e = error_of([&] { in.read_f32("/grown"); });
  EXPECT_NE(e.find("dataset '/grown' claims 1099511627776 values, more than this machine's"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace rn::io

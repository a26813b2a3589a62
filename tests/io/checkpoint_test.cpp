// HDF5 checkpoint files in one process: a round trip keeps every byte (also of files laid out by
// another writer, and read into place), the ranks' runs of the file, and each damaged or foreign
// file gives one clear error naming it.
#include "io/checkpoint.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/check.h"
#include "io/hdf5_handle.h"
#include "tests/error_of.h"
#include "tests/scratch_dir.h"

namespace fs = std::filesystem;

namespace rn::io {
namespace {

class CheckpointFileTest : public ::testing::Test {
 protected:
  OneProcess one_;  // the writer and reader are one process
  void SetUp() override { dir_ = scratch_.dir(); }
  void TearDown() override { fs::remove_all(dir_); }

  // Weights of 1000 floats, a scalar, an int vector and a text, with known contents.
  std::vector<CheckpointEntry> entries() {
    weights_.resize(1000);
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = 0.001f * i - 0.3f;
    ints_ = {1, -2, 3, 1LL << 40};
    return {
        {"model/conv1.weight",
         {10, 1, 10, 10},
         EntryType::f32,
         [this](void*) -> const void* { return weights_.data(); }},
        {"trainer/lr",
         {},
         EntryType::f64,
         [](void* d) {
           *static_cast<double*>(d) = 0.125;
           return d;
         }},
        {"trainer/ints",
         {2, 2},
         EntryType::i64,
         [this](void*) -> const void* { return ints_.data(); }},
        {"config",
         {5},
         EntryType::text,
         [](void* d) {
           std::memcpy(d, "a: 1\n", 5);
           return d;
         }},
    };
  }
  std::string write(const std::string& name) {
    const std::string p = (dir_ / name).string();
    CheckpointHeader h{.model = "resnet20", .world_size = 1, .epoch = 2, .step = 7};
    write_checkpoint(p, h, entries(), one_);
    return p;
  }
  static std::string error_of(const std::function<void()>& f) { return test::error_of(f); }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
  std::vector<float> weights_;
  std::vector<int64_t> ints_;
};

TEST_F(CheckpointFileTest, RoundTripKeepsEveryByte) {
  const std::string p = write("a.h5");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  const CheckpointSummary s = read_checkpoint_summary(p);
  EXPECT_EQ(s.format, kCheckpointFormat);
  EXPECT_EQ(s.header.model, "resnet20");
  EXPECT_EQ(s.header.epoch, 2);
  EXPECT_EQ(s.header.step, 7);
  EXPECT_EQ(s.datasets.size(), 4u);
  auto data = read_checkpoint(p, one_);
  ASSERT_EQ(data.size(), 4u);
  EXPECT_EQ(std::memcmp(data.at("model/conv1.weight").data(), weights_.data(), 4000), 0);
  double lr = 0;
  std::memcpy(&lr, data.at("trainer/lr").data(), 8);
  EXPECT_EQ(lr, 0.125);
  EXPECT_EQ(std::memcmp(data.at("trainer/ints").data(), ints_.data(), 32), 0);
  EXPECT_EQ(std::string(data.at("config").begin(), data.at("config").end()), "a: 1\n");
  EXPECT_TRUE(verify_checkpoint(p).empty());
}

// resnet1202's checkpoint holds 7,208 tensors under /model alone. Each group is made large
// enough for its links at once: growing a compact group link by link took 220 s for that
// network (time quadratic in the links); 8,000 tensors in one group now take a few seconds.
TEST_F(CheckpointFileTest, ManyTensorsInOneGroupWriteInLinearTime) {
  std::vector<CheckpointEntry> many;
  const float value = 0.5f;
  for (int i = 0; i < 8000; ++i)
    many.push_back(
        {"model/layer" + std::to_string(i / 10) + "." + std::to_string(i % 10) + ".conv1.weight",
         {1},
         EntryType::f32,
         [&value](void*) -> const void* { return &value; }});
  const std::string p = (dir_ / "many.h5").string();
  const auto start = std::chrono::steady_clock::now();
  write_checkpoint(p, CheckpointHeader{.model = "resnet20"}, many, one_);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 30.0) << "8,000 tensors in one group";
  EXPECT_EQ(read_checkpoint_summary(p).datasets.size(), 8000u);
  EXPECT_TRUE(verify_checkpoint(p).empty());
}

TEST_F(CheckpointFileTest, RanksTakeConsecutiveRunsOfAboutEqualBytes) {
  // Each item goes to the rank whose equal share of the total holds the item's middle.
  EXPECT_EQ(assign_runs_by_bytes({100, 10, 60, 50, 1, 1}, 2),
            (std::vector<int>{0, 0, 1, 1, 1, 1}));  // middles at 50, 105, 140, ... of 222
  EXPECT_EQ(assign_runs_by_bytes({10, 10, 10, 10}, 2), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(assign_runs_by_bytes({5, 5, 5}, 4), (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(assign_runs_by_bytes({0, 0}, 3), (std::vector<int>{0, 0}));
  const std::vector<size_t> many(100, 7);
  const auto owner = assign_runs_by_bytes(many, 3);
  EXPECT_TRUE(std::is_sorted(owner.begin(), owner.end()));
  for (int r = 0; r < 3; ++r) {
    const auto n = std::count(owner.begin(), owner.end(), r);
    EXPECT_GE(n, 33) << r;
    EXPECT_LE(n, 34) << r;
  }
}

// A file of the format that another writer (h5py, say) laid out otherwise: metadata between the
// tensors, a chunked and compressed dataset, a big-endian one. The reader takes the plain ones
// with file reads and the others through HDF5, and every byte comes back.
TEST_F(CheckpointFileTest, DatasetsStoredOtherwiseReadTheSame) {
  const std::string p = (dir_ / "other.h5").string();
  std::vector<float> a(5000), b(3000), c(2000), d(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f * i;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 1.0f - 0.25f * i;
  for (size_t i = 0; i < c.size(); ++i) c[i] = 3.0f + i;
  for (size_t i = 0; i < d.size(); ++i) d[i] = -2.0f * i;
  auto crc = [](const std::vector<float>& v) {
    return static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(v.data()), v.size() * sizeof(float)));
  };
  {
    H5Id file(H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    ASSERT_GE(file.get(), 0);
    write_attribute(file.get(), "format", std::string(kCheckpointFormat));
    write_attribute(file.get(), "format_version", int64_t{kCheckpointFormatVersion});
    write_attribute(file.get(), "model", std::string("resnet20"));
    H5Id group(H5Gcreate2(file.get(), "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    auto add = [&](const char* name, const std::vector<float>& v, hid_t file_type, hid_t dcpl) {
      const hsize_t n = v.size();
      H5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
      H5Id set(
          H5Dcreate2(group.get(), name, file_type, space.get(), H5P_DEFAULT, dcpl, H5P_DEFAULT),
          H5Dclose);
      ASSERT_GE(set.get(), 0);
      ASSERT_GE(H5Dwrite(set.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
      write_attribute(set.get(), "crc32", crc(v));
    };
    H5Id chunked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    const hsize_t chunk = 512;
    H5Pset_chunk(chunked.get(), 1, &chunk);
    H5Pset_deflate(chunked.get(), 4);
    add("a", a, H5T_IEEE_F32LE, H5P_DEFAULT);
    add("b", b, H5T_IEEE_F32LE, chunked.get());
    add("c", c, H5T_IEEE_F32BE, H5P_DEFAULT);
    add("d", d, H5T_IEEE_F32LE, H5P_DEFAULT);  // read with a together, across what lies between
  }
  // HDF5's original format: b's values (through its chunk index) are read in a child.
  ASSERT_EQ(superblock_version(p), 0);
  CheckpointSummary s;
  const auto data = read_checkpoint(p, one_, CheckpointReadOptions{.summary = &s});
  std::map<std::string, bool> raw;
  for (const auto& d : s.datasets) raw[d.path] = d.raw;
  EXPECT_TRUE(raw.at("model/a"));
  EXPECT_FALSE(raw.at("model/b"));
  EXPECT_FALSE(raw.at("model/c"));
  EXPECT_TRUE(raw.at("model/d"));
  auto same = [&](const std::string& key, const std::vector<float>& v) {
    const Bytes& got = data.at(key);
    return got.size() == v.size() * sizeof(float) &&
           std::memcmp(got.data(), v.data(), got.size()) == 0;
  };
  EXPECT_TRUE(same("model/a", a));
  EXPECT_TRUE(same("model/b", b));
  EXPECT_TRUE(same("model/c", c));
  EXPECT_TRUE(same("model/d", d));
  EXPECT_TRUE(verify_checkpoint(p).empty());

  // Placed: the bytes land where the caller says, and the map leaves them out.
  std::vector<float> home(a.size(), -1.0f);
  const auto placed =
      read_checkpoint(p, one_, CheckpointReadOptions{.place = [&](const DatasetInfo& d) {
                        return d.path == "model/a" ? reinterpret_cast<char*>(home.data()) : nullptr;
                      }});
  EXPECT_EQ(placed.count("model/a"), 0u);
  EXPECT_EQ(home, a);
  EXPECT_TRUE(same("model/c", c));
}

TEST_F(CheckpointFileTest, FlippedByteNamesTheDatasetAndTheFile) {
  const std::string p = write("a.h5");
  // The weights are the only 4000-byte run of these floats: find them and flip one bit.
  std::string bytes;
  {
    std::ifstream f(p, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(weights_.data()), 64));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 40] ^= 0x04;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  const std::string e = error_of([&] { read_checkpoint(p, one_); });
  EXPECT_NE(e.find("'/model/conv1.weight' fails its checksum"), std::string::npos) << e;
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_EQ(verify_checkpoint(p), std::vector<std::string>{"/model/conv1.weight"});
}

// HDF5 checks every piece of metadata the project writes before it parses it: version 2
// superblock and object headers (which carry checksums) and groups and attributes kept in their
// object headers (compact) however many there are, instead of fractal heaps without checksums.
TEST_F(CheckpointFileTest, MetadataIsCheckedByHdf5) {
  std::vector<CheckpointEntry> many = entries();
  for (int i = 0; i < 40; ++i)
    many.push_back(
        {"model/extra" + std::to_string(i), {4}, EntryType::f32, [this](void*) -> const void* {
           return weights_.data();
         }});
  const std::string p = (dir_ / "many.h5").string();
  write_checkpoint(p, CheckpointHeader{.model = "resnet20", .project_version = "1.2.3"}, many,
                   one_);
  H5Id file(H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  ASSERT_GE(file.get(), 0);
  H5F_info2_t info{};
  ASSERT_GE(H5Fget_info2(file.get(), &info), 0);
  EXPECT_EQ(info.super.version, 2u);
  H5G_info_t group{};
  ASSERT_GE(H5Gget_info_by_name(file.get(), "model", &group, H5P_DEFAULT), 0);
  EXPECT_EQ(group.nlinks, 41u);
  EXPECT_EQ(group.storage_type, H5G_STORAGE_TYPE_COMPACT);
  for (const char* object : {"/", "model", "model/extra7"}) {
    H5O_info_t o{};
    ASSERT_GE(H5Oget_info_by_name2(file.get(), object, &o, H5O_INFO_HDR | H5O_INFO_META_SIZE,
                                   H5P_DEFAULT),
              0);
    EXPECT_EQ(o.hdr.version, 2u) << object;
    EXPECT_EQ(o.meta_size.attr.heap_size, 0u) << object << ": attributes in a fractal heap";
    EXPECT_EQ(o.meta_size.obj.heap_size, 0u) << object << ": links in a fractal heap";
  }
}

// One bit flipped in each byte of the metadata in turn: the read either fails with one error
// naming the file or returns every byte as written (a bit nothing reads); it never crashes.
TEST_F(CheckpointFileTest, EveryFlippedMetadataBitIsAnErrorOrHarmless) {
  const std::string p = write("a.h5");
  const auto good = read_checkpoint(p, one_);
  std::string bytes;
  {
    std::ifstream f(p, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::vector<bool> raw(bytes.size(), false);
  for (const DatasetInfo& d : read_checkpoint_summary(p).datasets)
    if (d.raw) std::fill_n(raw.begin() + static_cast<ptrdiff_t>(d.offset), d.bytes, true);
  // The metadata: the bytes outside the datasets, each stretch without its trailing zeros (the
  // unused rest of HDF5's metadata block).
  std::vector<size_t> meta;
  for (size_t at = 0; at < bytes.size();) {
    if (raw[at]) {
      ++at;
      continue;
    }
    size_t end = at;
    while (end < bytes.size() && !raw[end]) ++end;
    size_t used = end;
    while (used > at && bytes[used - 1] == 0) --used;
    for (size_t i = at; i < used; ++i) meta.push_back(i);
    at = end;
  }
  const std::string copy = (dir_ / "flipped.h5").string();
  std::ofstream(copy, std::ios::binary) << bytes;
  std::fstream f(copy, std::ios::binary | std::ios::in | std::ios::out);
  auto put = [&](size_t at, char c) {
    f.seekp(static_cast<std::streamoff>(at));
    f.put(c);
    f.flush();
  };
  int flipped = 0, errors = 0;
  for (size_t at : meta) {
    put(at, static_cast<char>(bytes[at] ^ (1 << (at % 8))));
    ++flipped;
    try {
      const auto got = read_checkpoint(copy, one_);
      ASSERT_EQ(got.size(), good.size()) << "byte " << at;
      for (const auto& [name, value] : good) {
        ASSERT_TRUE(got.count(name)) << "byte " << at << ": " << name;
        ASSERT_TRUE(
            std::equal(value.begin(), value.end(), got.at(name).begin(), got.at(name).end()))
            << "byte " << at << ": " << name;
      }
    } catch (const Error& e) {
      ++errors;
      const std::string what = e.what();
      ASSERT_NE(what.find("checkpoint '" + copy + "'"), std::string::npos) << what;
      ASSERT_EQ(what.find('\n'), std::string::npos) << what;
      ASSERT_EQ(what.find(".cpp:"), std::string::npos) << "byte " << at << ": " << what;
    }
    put(at, bytes[at]);
  }
  EXPECT_GT(flipped, 1000);
  EXPECT_GT(errors, flipped * 9 / 10) << "of " << flipped << " flips";
}

// Files in HDF5's original format are read first in a child: a crash there is an error line
// naming the file, an exception there is left for the caller to meet, success changes nothing.
TEST_F(CheckpointFileTest, ProbeInAChildTurnsACrashIntoAnError) {
  // A signal (SIGKILL here: the sanitizers would report a SIGSEGV before dying of it), and the
  // exit status a sanitizer gives a crash it caught.
  const std::string e = error_of([] { probe_in_child("x.h5", [] { std::raise(SIGKILL); }); });
  EXPECT_NE(e.find("'x.h5': damaged: HDF5 crashed reading its metadata"), std::string::npos) << e;
  EXPECT_NE(error_of([] { probe_in_child("x.h5", [] { std::_Exit(1); }); }).find("exit status 1"),
            std::string::npos);
  EXPECT_EQ(error_of([] { probe_in_child("x.h5", [] { throw Error("in the child"); }); }), "");
  EXPECT_EQ(error_of([] { probe_in_child("x.h5", [] {}); }), "");
  // A child that does not finish in its time limit is killed, and named the same way.
  const auto start = std::chrono::steady_clock::now();
  const std::string slow = error_of([] {
    probe_in_child(
        "x.h5", [] { std::this_thread::sleep_for(std::chrono::seconds(30)); }, 0.5);
  });
  EXPECT_NE(slow.find("'x.h5': damaged: HDF5 did not finish reading it in 0.5 s"),
            std::string::npos)
      << slow;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // Whether the body ran through tells the caller whether the child's work can be used.
  EXPECT_TRUE(probe_in_child("x.h5", [] {}));
  EXPECT_FALSE(probe_in_child("x.h5", [] { throw Error("in the child"); }));
  // The probe decides by the superblock's version, read without HDF5.
  EXPECT_EQ(superblock_version(write("new.h5")), 2);
  const std::string old = (dir_ / "old.h5").string();
  H5Fclose(H5Fcreate(old.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  EXPECT_EQ(superblock_version(old), 0);
  const std::string text = (dir_ / "text").string();
  std::ofstream(text) << "not hdf5";
  EXPECT_EQ(superblock_version(text), -1);
}

// Values read in a child come back through shared memory; the child's own memory is not ours.
TEST_F(CheckpointFileTest, ReadInAChildBringsBackTheValuesOrNamesTheCrash) {
  std::vector<int32_t> dst(100000, -1);
  const size_t bytes = dst.size() * sizeof(int32_t);
  int in_this_process = 0;
  EXPECT_TRUE(read_in_child("x.h5", dst.data(), bytes, [&](void* to) {
    for (size_t i = 0; i < dst.size(); ++i) static_cast<int32_t*>(to)[i] = static_cast<int32_t>(i);
    in_this_process = 1;  // written in the child's copy only
  }));
  EXPECT_EQ(in_this_process, 0);
  for (size_t i = 0; i < dst.size(); i += 997) ASSERT_EQ(dst[i], static_cast<int32_t>(i));
  EXPECT_EQ(dst.back(), static_cast<int32_t>(dst.size() - 1));
  // A read that throws leaves `dst` as it was: the caller reads itself and meets the error.
  std::vector<int32_t> untouched(16, 7);
  EXPECT_FALSE(read_in_child("x.h5", untouched.data(), 64, [](void* to) {
    std::memset(to, 0, 64);
    throw Error("in the child");
  }));
  EXPECT_EQ(untouched, std::vector<int32_t>(16, 7));
  EXPECT_FALSE(read_in_child("x.h5", untouched.data(), 0, [](void*) {}));
  // A crash is the probe's one-line error, and nothing is copied.
  const std::string e = error_of([&] {
    read_in_child("x.h5", untouched.data(), 64, [](void* to) {
      std::memset(to, 0, 64);
      std::raise(SIGKILL);
    });
  });
  EXPECT_NE(e.find("'x.h5': damaged: HDF5 crashed reading"), std::string::npos) << e;
  EXPECT_EQ(untouched, std::vector<int32_t>(16, 7));
}

TEST_F(CheckpointFileTest, TruncatedFileIsNamed) {
  const std::string p = write("a.h5");
  fs::resize_file(p, fs::file_size(p) / 2);
  const std::string e = error_of([&] { read_checkpoint_summary(p); });
  EXPECT_NE(e.find("checkpoint '" + p + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(CheckpointFileTest, ForeignFilesAreRefused) {
  const std::string text = (dir_ / "text.h5").string();
  std::ofstream(text) << "not hdf5 at all\n";
  EXPECT_NE(error_of([&] { read_checkpoint_summary(text); }).find("not an HDF5 file"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { read_checkpoint_summary((dir_ / "none.h5").string()); }).find("no such file"),
      std::string::npos);
}

TEST_F(CheckpointFileTest, FailedWriteLeavesTheOldFileAlone) {
  const std::string p = write("a.h5");
  const auto size = fs::file_size(p);
  // A directory where the temporary file must go: the create fails like an unwritable disk.
  fs::create_directories(p + ".tmp");
  const std::string e =
      error_of([&] { write_checkpoint(p, CheckpointHeader{.model = "other"}, entries(), one_); });
  EXPECT_NE(e.find("cannot create '" + p + ".tmp'"), std::string::npos) << e;
  EXPECT_EQ(fs::file_size(p), size);
  EXPECT_EQ(read_checkpoint_summary(p).header.model, "resnet20");
}

}  // namespace
}  // namespace rn::io

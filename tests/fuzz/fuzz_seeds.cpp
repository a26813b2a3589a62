// Writes the seed corpora of the fuzz targets, made by the project's own writers:
//   fuzz_seeds DIR   ->  DIR/<target>/<seed files>   (the configs are copied by fuzz.sh)
#include <hdf5.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/array_file.h"
#include "io/checkpoint.h"
#include "io/cifar.h"
#include "io/hdf5_handle.h"
#include "io/image_decode.h"
#include "io/packed.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

void save(const fs::path& p, const Bytes& b, const Bytes& prefix = {}) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(prefix.data()),
          static_cast<std::streamsize>(prefix.size()));
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

Bytes gzip(const Bytes& in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);  // 31: gzip wrapper
  Bytes out(deflateBound(&z, in.size()) + 32);
  z.next_in = const_cast<uint8_t*>(in.data()), z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data(), z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

Bytes pattern(size_t n, int seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((i * 37 + seed * 11) ^ (i >> 3));
  return b;
}

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// A PNG written by hand (8-bit gray or RGB, no interlace): chunks of length, type, data, CRC.
Bytes png(int w, int h, int channels) {
  Bytes raw;
  const Bytes px = pattern(static_cast<size_t>(w) * h * channels, channels);
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), px.begin() + y * w * channels, px.begin() + (y + 1) * w * channels);
  }
  uLongf zn = compressBound(raw.size());
  Bytes z(zn);
  compress(z.data(), &zn, raw.data(), raw.size());
  z.resize(zn);
  Bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto chunk = [&](const char* type, const Bytes& data) {
    put32(out, static_cast<uint32_t>(data.size()));
    const size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    put32(out, static_cast<uint32_t>(
                   crc32(0, out.data() + start, static_cast<uInt>(out.size() - start))));
  };
  Bytes ihdr;
  put32(ihdr, static_cast<uint32_t>(w)), put32(ihdr, static_cast<uint32_t>(h));
  ihdr.insert(ihdr.end(), {8, static_cast<uint8_t>(channels == 1 ? 0 : 2), 0, 0, 0});
  chunk("IHDR", ihdr);
  chunk("IDAT", z);
  chunk("IEND", {});
  return out;
}

Bytes jpeg(int w, int h, int channels, int quality) {
  const Bytes px = pattern(static_cast<size_t>(w) * h * channels, w);
  return rn::io::encode_jpeg(px.data(), w, h, channels, quality);
}

Bytes idx(const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, 8, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) put32(b, d), n *= d;
  const Bytes v = pattern(n, 3);
  b.insert(b.end(), v.begin(), v.end());
  if (dims.size() == 1)
    for (size_t i = 0; i < n; ++i) b[b.size() - n + i] = static_cast<uint8_t>(i % 10);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_seeds DIR\n";
    return 2;
  }
  const fs::path dir = argv[1];
  try {
    for (const char* t : {"idx", "cifar", "image", "packed", "checkpoint", "array"})
      fs::create_directories(dir / t);
    // idx: images and labels, plain and gzipped.
    save(dir / "idx/images", idx({3, 4, 5}));
    save(dir / "idx/images.gz", gzip(idx({3, 4, 5})));
    save(dir / "idx/labels", idx({6}));
    save(dir / "idx/labels.gz", gzip(idx({6})));

    // CIFAR: the first byte picks the kind (0: CIFAR-10, 1: CIFAR-100 fine, 2: coarse).
    rn::io::ImageSet set;
    set.count = 2, set.channels = 3, set.height = 32, set.width = 32;
    set.pixels = pattern(2 * 3 * 32 * 32, 5);
    set.labels = {3, 7};
    set.num_classes = 10;
    save(dir / "cifar/cifar10", rn::io::cifar_records(set, rn::io::CifarKind::cifar10), {0});
    save(dir / "cifar/cifar100",
         rn::io::cifar_records(set, rn::io::CifarKind::cifar100_fine, {1, 19}), {1});

    // Images: the first byte picks the views (see image_fuzz.cpp).
    const std::vector<std::pair<std::string, Bytes>> images = {{"rgb.jpg", jpeg(40, 30, 3, 90)},
                                                               {"gray.jpg", jpeg(17, 23, 1, 75)},
                                                               {"cmyk.jpg", jpeg(16, 16, 4, 90)},
                                                               {"rgb.png", png(20, 13, 3)},
                                                               {"gray.png", png(9, 31, 1)}};
    for (size_t i = 0; i < images.size(); ++i)
      save(dir / "image" / images[i].first, images[i].second, {static_cast<uint8_t>(i)});

    // A packed file of five images in two classes.
    const fs::path folder = dir / "tmp-folder";
    for (size_t i = 0; i < images.size(); ++i)
      save(folder / (i % 2 ? "cat" : "dog") / images[i].first, images[i].second);
    rn::io::pack_image_folder(folder.string(), (dir / "packed/five.h5").string(), {});
    fs::remove_all(folder);

    // A checkpoint of a few small tensors, as the trainer writes them.
    std::vector<rn::io::CheckpointEntry> entries;
    std::vector<std::vector<float>> values;
    for (int i = 0; i < 4; ++i) values.emplace_back(static_cast<size_t>(6 + 3 * i), 0.25f * i);
    const char* names[] = {"model/conv1.weight", "model/fc.bias", "optimizer/conv1.weight",
                           "optimizer/fc.bias"};
    for (int i = 0; i < 4; ++i) {
      const float* v = values[static_cast<size_t>(i)].data();
      entries.push_back({names[i],
                         {static_cast<int64_t>(values[static_cast<size_t>(i)].size())},
                         rn::io::EntryType::f32,
                         [v](void*) -> const void* { return v; }});
    }
    static const int64_t seed = 1;
    entries.push_back(
        {"state/seed", {}, rn::io::EntryType::i64, [](void*) -> const void* { return &seed; }});
    static const std::string text = "model: {name: resnet20}\n";
    entries.push_back({"config",
                       {static_cast<int64_t>(text.size())},
                       rn::io::EntryType::text,
                       [](void*) -> const void* { return text.data(); }});
    rn::io::CheckpointHeader header;
    header.model = "resnet20", header.epoch = 1, header.step = 10, header.project_version = "0.1.0";
    rn::OneProcess one;
    rn::io::write_checkpoint((dir / "checkpoint/small.h5").string(), header, entries, one);
    // The same checkpoint in a few KiB: written as the writer does (checksummed format, compact
    // groups) but without its 1 MiB metadata block, so that mutations land on structure.
    {
      const fs::path p = dir / "checkpoint" / "compact.h5";
      using rn::io::H5Id;
      const H5Id fapl = rn::io::checksummed_access_list(), fcpl = rn::io::checksummed_create_list(),
                 gcpl = rn::io::checksummed_group_list();
      H5Id f(H5Fcreate(p.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
      rn::io::write_attribute(f.get(), "format", std::string(rn::io::kCheckpointFormat));
      rn::io::write_attribute(f.get(), "format_version",
                              static_cast<int64_t>(rn::io::kCheckpointFormatVersion));
      rn::io::write_attribute(f.get(), "model", std::string("resnet20"));
      rn::io::write_attribute(f.get(), "epoch", int64_t{1});
      for (int i = 0; i < 4; ++i) {
        const auto& v = values[static_cast<size_t>(i)];
        rn::io::create_parent_groups(f.get(), names[i], gcpl.get());
        const hsize_t n = v.size();
        H5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
        H5Id set(H5Dcreate2(f.get(), names[i], H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose);
        H5Dwrite(set.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
        rn::io::write_attribute(set.get(), "crc32", rn::io::crc_of(v.data(), v.size() * 4));
      }
    }

    // Array files of infer and step; the last byte picks the channels (odd: 3).
    for (int c : {1, 3}) {
      const fs::path p = dir / "array" / ("c" + std::to_string(c) + ".h5");
      {
        rn::io::ArrayWriter w(p.string());
        std::vector<float> x(static_cast<size_t>(2 * c * 4 * 4), 0.5f);
        w.write_f32("images", {2, c, 4, 4}, x.data());
        const int64_t labels[] = {1, 9};
        w.write_i64("labels", {2}, labels);
      }
      Bytes b = read(p);
      b.push_back(static_cast<uint8_t>(c));
      save(p, b);
    }
    // The same as h5py writes it by default: HDF5's original format, whose metadata carries no
    // checksums (what users give infer and step); and with chunks=, compression= (a chunk index
    // of one image or label per chunk, deflated).
    for (const bool chunked : {false, true}) {
      const fs::path p = dir / "array" / (chunked ? "h5py_chunked.h5" : "h5py.h5");
      const hid_t f = H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
      const hsize_t dims[4] = {2, 1, 4, 4}, n = 2, chunk4[4] = {1, 1, 4, 4}, chunk1 = 1;
      const hid_t s4 = H5Screate_simple(4, dims, nullptr), s1 = H5Screate_simple(1, &n, nullptr);
      const hid_t p4 = H5Pcreate(H5P_DATASET_CREATE), p1 = H5Pcreate(H5P_DATASET_CREATE);
      if (chunked) {
        H5Pset_chunk(p4, 4, chunk4), H5Pset_deflate(p4, 4);
        H5Pset_chunk(p1, 1, &chunk1), H5Pset_deflate(p1, 4);
      }
      std::vector<float> x(32, 0.25f);
      const int64_t labels[] = {0, 3};
      const hid_t d4 = H5Dcreate2(f, "images", H5T_IEEE_F32LE, s4, H5P_DEFAULT, p4, H5P_DEFAULT);
      H5Dwrite(d4, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
      const hid_t d1 = H5Dcreate2(f, "labels", H5T_STD_I64LE, s1, H5P_DEFAULT, p1, H5P_DEFAULT);
      H5Dwrite(d1, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
      H5Dclose(d1), H5Dclose(d4), H5Pclose(p1), H5Pclose(p4), H5Sclose(s1), H5Sclose(s4);
      if (H5Fclose(f) < 0) throw std::runtime_error("cannot write " + p.string());
      Bytes b = read(p);
      b.push_back(0);  // one channel
      save(p, b);
    }
  } catch (const std::exception& e) {
    std::cerr << "fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

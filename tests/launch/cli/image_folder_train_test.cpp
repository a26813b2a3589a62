// `resnet train` and `resnet eval` end to end on JPEG folders the test makes: RGB, grayscale and
// CMYK images of several sizes, a corrupt and a truncated file, a file that is not an image and
// an empty class folder; two ranks train, then evaluate with 1 and with 10 crops, as a folder
// and as the packed files `resnet data pack` makes of it; `resnet predict` and `resnet export`
// on the trained network.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/image_decode.h"
#include "run_command.h"
#include "tests/scratch_dir.h"

namespace fs = std::filesystem;
using rn::test::have_mpirun;
using rn::test::json_number;
using rn::test::read_text;
using rn::test::run_resnet;

namespace {

void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// A JPEG whose colour depends on its class, so that a few steps can learn something.
std::vector<uint8_t> class_jpeg(int cls, int w, int h, int channels, int seed) {
  std::vector<uint8_t> p(static_cast<size_t>(w) * h * channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c)
        p[(static_cast<size_t>(y) * w + x) * channels + c] =
            static_cast<uint8_t>((c == cls % 3 ? 180 : 40) + (x * 3 + y * (seed % 5 + 1)) % 60);
  return rn::io::encode_jpeg(p.data(), w, h, channels, 90);
}

class ImageFolderTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(rn::test::resnet_binary())) GTEST_SKIP() << "resnet binary not built";
    if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
    dir_ = scratch_.dir();
    // train: 32 files (2 ranks x 2 batches of 8, so every file is seen each epoch), 2 bad;
    // val: 13 files, 1 bad. Classes: bird, cat, dog and the empty "zebra".
    const char* classes[] = {"bird", "cat", "dog"};
    for (const std::string split : {"train", "val"}) {
      const int per_class = split == "train" ? 10 : 4;
      for (int c = 0; c < 3; ++c) {
        const fs::path d = dir_ / "data" / split / classes[c];
        for (int i = 0; i < per_class; ++i) {
          const int seed = c * 31 + i;
          const int channels = i == 1 ? 1 : i == 2 ? 4 : 3;  // gray, CMYK, RGB
          write_file(d / (std::to_string(i) + (i % 2 ? ".JPEG" : ".jpg")),
                     class_jpeg(c, 40 + seed % 4 * 9, 36 + seed % 3 * 11, channels, seed));
        }
        write_file(d / "notes.txt", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
      }
      fs::create_directories(dir_ / "data" / split / "zebra");
    }
    const fs::path train = dir_ / "data" / "train";
    // Corrupt: an image extension on text. Truncated: a JPEG cut in its scan data.
    write_file(train / "bird" / "corrupt.jpg", {'<', 'h', 't', 'm', 'l', '>'});
    auto whole = class_jpeg(1, 64, 48, 3, 7);
    whole.resize(whole.size() * 2 / 3);
    write_file(train / "cat" / "truncated.jpg", whole);
    write_file(dir_ / "data" / "val" / "dog" / "empty.jpg", {});
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string config(const std::string& kind) {
    const fs::path p = dir_ / ("config_" + kind + ".yaml");
    std::ofstream(p) << "run_dir: " << (dir_ / ("run_" + kind)).string() << "\n"
                     << "model: {name: resnet20, in_channels: 3, num_classes: 4}\n"
                     << "data:\n  kind: " << kind << "\n  root: " << root(kind) << "\n"
                     << "  batch_size: 8\n  test_batch_size: 10\n  workers: 2\n"
                     << "  augment: {recipe: torchvision, crop: 32, hflip: true}\n"
                     << "  eval_resize: 36\n  eval_crop: 32\n"
                     << "optim: {lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4, schedule: cosine}\n"
                     << "train: {epochs: 2, seed: 3, threads: 1, log_every: 1}\n"
                     << "checkpoint: {every_epochs: 1, keep_last: 5}\n";
    return p.string();
  }
  std::string root(const std::string& kind) const {
    return (dir_ / (kind == "packed" ? "packed" : "data")).string();
  }
  fs::path last_checkpoint(const std::string& kind) const {
    fs::path last;
    for (const auto& e : fs::directory_iterator(dir_ / ("run_" + kind) / "checkpoints"))
      if (e.path().extension() == ".h5" && e.path() > last) last = e.path();
    return last;
  }

  // Trains on 2 ranks and evaluates the last checkpoint with 1 and 10 crops on 2 ranks.
  void train_and_evaluate(const std::string& kind) {
    const auto r = run_resnet("train --config " + config(kind), rn::test::mpirun_prefix(2));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // Every bad file and the empty class are named.
    for (const char* name : {"bird/corrupt.jpg", "cat/truncated.jpg", "dog/empty.jpg"})
      EXPECT_NE(r.err.find(name), std::string::npos) << name << " not reported:\n" << r.err;
    if (kind == "image_folder") {
      EXPECT_NE(r.err.find("'zebra' has no images"), std::string::npos) << r.err;
    }
    EXPECT_EQ(r.err.find("notes.txt"), std::string::npos) << "not an image file: not listed";
    std::istringstream metrics(read_text(dir_ / ("run_" + kind) / "metrics.jsonl"));
    std::vector<std::string> lines;
    for (std::string l; std::getline(metrics, l);) lines.push_back(l);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(json_number(lines[1], "step"), 4);  // 32 files / (2 ranks x 8) x 2 epochs
    for (const auto& l : lines) {
      EXPECT_EQ(json_number(l, "bad_samples"), 2) << l;       // corrupt + truncated, each epoch
      EXPECT_EQ(json_number(l, "bad_test_samples"), 1) << l;  // dog/empty.jpg
      EXPECT_TRUE(std::isfinite(json_number(l, "train_loss"))) << l;
    }
    const fs::path ckpt = last_checkpoint(kind);
    ASSERT_FALSE(ckpt.empty());
    for (int crops : {1, 10}) {
      const auto e = run_resnet("eval --config " + config(kind) + " --checkpoint " + ckpt.string() +
                                    " --crops " + std::to_string(crops) + " --json",
                                rn::test::mpirun_prefix(2));
      ASSERT_EQ(e.exit_code, 0) << e.err;
      EXPECT_EQ(json_number(e.out, "crops"), crops) << e.out;
      EXPECT_EQ(json_number(e.out, "samples"), 13) << e.out;  // every val file, once
      EXPECT_EQ(json_number(e.out, "bad_samples"), 1) << e.out;
      const double top1 = json_number(e.out, "top1"), top5 = json_number(e.out, "top5");
      EXPECT_GE(top1, 0.0) << e.out;
      EXPECT_LE(top1, 1.0) << e.out;
      EXPECT_EQ(top5, 1.0) << "4 classes: the true one is always in the top 5; " << e.out;
    }
  }

  rn::test::ScratchDir scratch_;
  fs::path dir_;
};

TEST_F(ImageFolderTrainTest, TwoRanksTrainAndEvaluateWithOneAndTenCrops) {
  train_and_evaluate("image_folder");
  // The file list was made once and cached beside the run.
  EXPECT_TRUE(fs::exists(dir_ / "run_image_folder" / "data" / "train.files"));
}

TEST_F(ImageFolderTrainTest, PackedFilesTrainAsTheFolderDoes) {
  fs::create_directories(dir_ / "packed");
  for (const std::string split : {"train", "val"}) {
    const auto p = run_resnet("data pack --from " + (dir_ / "data" / split).string() + " --to " +
                              (dir_ / "packed" / (split + ".h5")).string() + " --threads 2");
    ASSERT_EQ(p.exit_code, 0) << p.err;
  }
  train_and_evaluate("packed");
  // The same seeds, the same samples: the folder's run and the packed run learn the same.
  train_and_evaluate("image_folder");
  const std::string a = read_text(dir_ / "run_packed" / "metrics.jsonl");
  const std::string b = read_text(dir_ / "run_image_folder" / "metrics.jsonl");
  for (const char* key : {"train_loss", "test_loss", "test_top1"})
    EXPECT_EQ(json_number(a, key), json_number(b, key)) << key << "\n" << a << "\n" << b;
}

// `resnet predict` on a folder laid out as a test split gives `eval`'s top-1 (alone and as an
// ensemble), with the folders' class names that every checkpoint carries, through resume too;
// files that are not images are named and counted, and the rest go on.
TEST_F(ImageFolderTrainTest, PredictNamesTheClassesAndAgreesWithEval) {
  // A split without bad images, so that eval substitutes nothing; predict also meets a text file
  // there and a corrupt PNG given by name.
  const fs::path clean = dir_ / "clean";
  for (const std::string split : {"train", "val"})
    for (const char* c : {"bird", "cat", "dog"})
      for (const auto& e : fs::directory_iterator(dir_ / "data" / split / c))
        if (e.path().extension() != ".txt" && e.path().filename() != "corrupt.jpg" &&
            e.path().filename() != "truncated.jpg" && e.path().filename() != "empty.jpg") {
          fs::create_directories(clean / split / c);
          fs::copy_file(e.path(), clean / split / c / e.path().filename());
        }
  write_file(clean / "val" / "cat" / "notes.txt", {'n', 'o', 't', 'e'});
  write_file(dir_ / "corrupt.png", {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0});
  const std::string set = " --set data.root=" + clean.string();
  const auto t = run_resnet("train --config " + config("image_folder") + set);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const fs::path ckpt = last_checkpoint("image_folder");
  const auto inspect = run_resnet("ckpt inspect " + ckpt.string() + " --json");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("\"class_names\": [\"bird\", \"cat\", \"dog\"]"), std::string::npos)
      << inspect.out;
  EXPECT_NE(inspect.out.find("\"resize\": 36, \"crop\": 32"), std::string::npos) << inspect.out;

  // Top-1 of predict: the files whose first class is their folder's name.
  const auto top1_of = [](const std::string& out) -> double {
    int n = 0, right = 0;
    std::istringstream lines(out);
    for (std::string l; std::getline(lines, l);) {
      const size_t colon = l.find(": ");
      if (colon == std::string::npos) {
        ADD_FAILURE() << "not a prediction line: " << l;
        return -1;
      }
      const std::string folder = fs::path(l.substr(0, colon)).parent_path().filename().string();
      right += l.compare(colon + 2, folder.size() + 1, folder + " ") == 0;
      ++n;
    }
    EXPECT_EQ(n, 12) << out;  // every image of the split, once
    return n ? static_cast<double>(right) / n : -1.0;
  };
  const std::string val = (clean / "val").string();
  const auto p = run_resnet("predict --checkpoint " + ckpt.string() + " --top 2 " + val + " " +
                            (dir_ / "corrupt.png").string());
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.err_lines_with("notes.txt: not a readable image"), 1) << p.err;
  EXPECT_EQ(p.err_lines_with("corrupt.png: not a readable image"), 1) << p.err;
  EXPECT_EQ(p.err_lines_with("12 image(s) in "), 1) << p.err;
  EXPECT_EQ(p.err_lines_with("; 2 file(s) not readable images"), 1) << p.err;
  const auto e = run_resnet("eval --config " + config("image_folder") + set + " --checkpoint " +
                            ckpt.string() + " --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_EQ(json_number(e.out, "samples"), 12) << e.out;
  // eval prints six decimals.
  EXPECT_NEAR(top1_of(p.out), json_number(e.out, "top1"), 1e-6) << p.out << e.out;

  // The ensemble of both epochs' checkpoints, as eval scores it.
  fs::path first = ckpt;
  for (const auto& f : fs::directory_iterator(dir_ / "run_image_folder" / "checkpoints"))
    if (f.path().extension() == ".h5" && f.path() < first) first = f.path();
  ASSERT_NE(first, ckpt);
  const std::string both = " --checkpoint " + first.string() + " --checkpoint " + ckpt.string();
  const auto pe = run_resnet("predict" + both + " " + val);
  ASSERT_EQ(pe.exit_code, 0) << pe.err;
  const auto ee = run_resnet("eval --config " + config("image_folder") + set + both + " --json");
  ASSERT_EQ(ee.exit_code, 0) << ee.err;
  EXPECT_NEAR(top1_of(pe.out), json_number(ee.out, "top1"), 1e-6) << pe.out << ee.out;
  // JSON Lines and CSV: one object per image, one row per image and rank.
  const auto j = run_resnet("predict --checkpoint " + ckpt.string() + " --top 3 --json " + val);
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(std::count(j.out.begin(), j.out.end(), '\n'), 12) << j.out;
  EXPECT_NE(j.out.find("\"top\": [{\"class\": \""), std::string::npos) << j.out;
  const auto c = run_resnet("predict --checkpoint " + ckpt.string() + " --top 3 --csv " + val);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out.rfind("file,rank,class,index,probability\n", 0), 0u) << c.out;
  EXPECT_EQ(std::count(c.out.begin(), c.out.end(), '\n'), 1 + 12 * 3) << c.out;

  // Resumed for a third epoch: the new checkpoint keeps the names.
  const auto r = run_resnet("train --config " + config("image_folder") + set +
                            " --set train.epochs=3 --resume auto");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path third = last_checkpoint("image_folder");
  EXPECT_NE(third, ckpt);
  const auto i3 = run_resnet("ckpt inspect " + third.string());
  EXPECT_NE(i3.out.find("  classes     bird, cat, dog (3)"), std::string::npos) << i3.out;

  // Bad inputs: one line each.
  for (const auto& [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {"predict --checkpoint " + (dir_ / "none.h5").string() + " " + val, "none.h5"},
           {"predict --checkpoint " + ckpt.string() + " " + (dir_ / "nowhere").string(),
            "nowhere': no such file or folder"},
           {"predict --checkpoint " + ckpt.string(), "at least one image file or folder"},
           {"predict --checkpoint " + ckpt.string() + " --crops 5 " + val,
            "--crops must be 1 or 10"},
           {"predict --checkpoint " + ckpt.string() + " " + (dir_ / "corrupt.png").string(),
            "no readable image among 1 file(s)"}}) {
    const auto b = run_resnet(args);
    EXPECT_NE(b.exit_code, 0) << args;
    EXPECT_EQ(b.out.find("file,"), std::string::npos);
    EXPECT_EQ(b.err_lines_with(needle), 1) << args << "\n" << b.err;
  }
  // A checkpoint without a transform (ckpt init knows no data) is refused, saying why.
  const fs::path bare = dir_ / "bare.h5";
  ASSERT_EQ(run_resnet("ckpt init --model resnet20 --classes 4 --seed 1 --output " + bare.string())
                .exit_code,
            0);
  const auto nb = run_resnet("predict --checkpoint " + bare.string() + " " + val);
  EXPECT_NE(nb.exit_code, 0);
  EXPECT_EQ(nb.err_lines().size(), 1u) << nb.err;
  EXPECT_EQ(nb.err_lines_with("has no evaluation transform"), 1) << nb.err;
}

// `resnet export` of a trained checkpoint: an ONNX file whose input is the transform's crop and
// whose metadata holds the class names and the transform the checkpoint carries; on 2 ranks the
// same file; every bad input one line, a non-zero exit and no file written.
TEST_F(ImageFolderTrainTest, ExportCarriesTheClassNamesAndTransform) {
  const auto t = run_resnet("train --config " + config("image_folder"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const fs::path ckpt = last_checkpoint("image_folder");
  const fs::path onnx_file = dir_ / "model.onnx";
  const std::string exp = "export --checkpoint " + ckpt.string() + " --to ";
  const auto e = run_resnet(exp + onnx_file.string());
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.out.find("export: resnet20 -> " + onnx_file.string() +
                       ": opset 13, input 1 x 3 x 32 x 32, logits 1 x 4"),
            std::string::npos)
      << e.out;

  onnx::ModelProto m;
  {
    std::ifstream f(onnx_file, std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&f));
  }
  EXPECT_EQ(m.producer_name(), "resnet");
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).version(), 13);
  std::map<std::string, std::string> meta;
  for (const auto& p : m.metadata_props()) meta[p.key()] = p.value();
  EXPECT_EQ(meta["model"], "resnet20");
  EXPECT_EQ(meta["class_names"], "bird\ncat\ndog\nzebra\n");
  const auto inspect = run_resnet("ckpt inspect " + ckpt.string() + " --json");
  const std::string& transform = meta["transform"];
  EXPECT_NE(transform.find("\"resize\": 36, \"crop\": 32"), std::string::npos) << transform;
  EXPECT_NE(inspect.out.find("\"transform\": " + transform), std::string::npos) << transform << "\n"
                                                                                << inspect.out;
  const auto& in = m.graph().input(0).type().tensor_type().shape();
  ASSERT_EQ(in.dim_size(), 4);
  EXPECT_EQ(in.dim(0).dim_value(), 1);
  EXPECT_EQ(in.dim(3).dim_value(), 32);
  // The weights are the checkpoint's: the classifier's bias, bit for bit.
  std::vector<float> bias(4);
  const hid_t f = H5Fopen(ckpt.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t d = H5Dopen2(f, "/model/fc.bias", H5P_DEFAULT);
  ASSERT_GE(d, 0);
  ASSERT_GE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, bias.data()), 0);
  H5Dclose(d);
  H5Fclose(f);
  std::string stored;
  for (const auto& init : m.graph().initializer())
    if (init.name() == "fc.bias") stored = init.raw_data();
  ASSERT_EQ(stored.size(), 4 * sizeof(float));
  EXPECT_EQ(std::memcmp(stored.data(), bias.data(), stored.size()), 0);

  // Under mpirun every rank reads the checkpoint and rank 0 writes the same file.
  const fs::path two = dir_ / "two.onnx";
  const auto e2 = run_resnet(exp + two.string(), rn::test::mpirun_prefix(2));
  ASSERT_EQ(e2.exit_code, 0) << e2.err;
  EXPECT_EQ(read_text(two), read_text(onnx_file));

  // Bad inputs: one line each, nothing written.
  const fs::path out = dir_ / "bad.onnx";
  fs::create_directories(dir_ / "a_folder");
  const fs::path bare = dir_ / "bare.h5";
  ASSERT_EQ(run_resnet("ckpt init --model resnet20 --classes 4 --seed 1 --output " + bare.string())
                .exit_code,
            0);
  for (const auto& [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {"export --checkpoint " + (dir_ / "none.h5").string() + " --to " + out.string(),
            "none.h5"},
           {exp + (dir_ / "missing" / "m.onnx").string(), "missing' does not exist"},
           {exp + (dir_ / "a_folder").string(), "is a folder"},
           {exp + out.string() + " --opset 9", "--opset 9 is not supported"},
           {exp + out.string() + " --opset 18", "opsets 11 to 17"},
           {exp + out.string() + " --batch 0", "--batch must be a positive integer or 'dynamic'"},
           {exp + out.string() + " --size 32x", "--size must be"},
           {exp + out.string() + " --size 0", "--size must be"},
           {"export --checkpoint " + bare.string() + " --to " + out.string(),
            "has no evaluation transform"},
           {"export --checkpoint " + ckpt.string(), "--to"}}) {
    const auto b = run_resnet(args);
    EXPECT_NE(b.exit_code, 0) << args;
    EXPECT_EQ(b.err_lines().size(), 1u) << args << "\n" << b.err;
    EXPECT_EQ(b.err_lines_with(needle), 1) << args << "\n" << b.err;
    EXPECT_FALSE(fs::exists(out)) << args;
    EXPECT_FALSE(fs::exists(out.string() + ".tmp")) << args;
  }
}

}  // namespace

// Rebuilding a network from a checkpoint, and reading the inputs of `infer` and `step`.
#include "launch/train/checkpoint_network.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace rn::launch {
namespace {

// The dimension `dim` of dataset `key` in the checkpoint, or a clear error when it is absent.
int dim_of(const io::CheckpointSummary& s, const std::string& path, const std::string& key,
           size_t rank, size_t dim) {
  for (const auto& d : s.datasets)
    if (d.path == key) {
      if (d.shape.size() != rank)
        RN_FAIL("checkpoint '" << path << "': '/" << key << "' has " << d.shape.size()
                               << " dimensions, expected " << rank);
      return static_cast<int>(d.shape[dim]);
    }
  RN_FAIL("checkpoint '" << path << "': no dataset '/" << key << "'");
}

}  // namespace

CheckpointNetwork load_checkpoint_network(const std::string& path, int threads, bool with_momentum,
                                          distributed::Communicator& comm,
                                          const CheckpointSharing& sharing, Device device) {
  const CheckpointData data = load_checkpoint(path, comm, sharing);
  const io::CheckpointSummary& s = data.summary;
  CheckpointNetwork out;
  // Every network of the zoo starts with conv1 and ends with fc.
  out.in_channels = dim_of(s, path, "model/conv1.weight", 4, 1);
  out.classes = dim_of(s, path, "model/fc.weight", 2, 0);
  models::ModelSpec spec;
  try {
    spec = models::model_spec(s.header.model, out.in_channels, out.classes);
  } catch (const Error& e) {
    RN_FAIL("checkpoint '" << path << "': model: " << e.what());
  }
  if (static_cast<int>(data.use.class_names.size()) > out.classes)
    RN_FAIL("checkpoint '" << path << "': '/meta/class_names' names " << data.use.class_names.size()
                           << " classes, the classifier has " << out.classes);
  if (data.use.has_transform && data.use.transform.channels != out.in_channels)
    RN_FAIL("checkpoint '" << path << "': '/meta/transform' gives " << data.use.transform.channels
                           << " channel(s), the network takes " << out.in_channels);
  out.use = data.use;
  out.backend = make_backend(device, threads);
  out.net = models::build_model(*out.backend, spec, 0);
  restore_model(data, path, *out.net, *out.backend, with_momentum);
  return out;
}

Tensor read_images(const io::ArrayReader& in, const std::string& path, int channels) {
  // The shape first, then the values (as for the labels below).
  const std::vector<int64_t> shape = in.shape("/images");
  if (shape.size() != 4 || shape[0] < 1 || shape[2] < 1 || shape[3] < 1)
    RN_FAIL("'" << path << "': '/images' is " << io::shape_text(shape)
                << ", expected N x C x H x W with N, H, W >= 1");
  if (shape[1] != channels)
    RN_FAIL("'" << path << "': '/images' has " << shape[1] << " channel(s), the model takes "
                << channels);
  const io::FloatArray a = in.read_f32("/images");
  Tensor t = Tensor::zeros(Shape(a.shape));
  std::memcpy(t.data(), a.values.data(), a.values.size() * sizeof(float));
  return t;
}

Tensor read_labels(const io::ArrayReader& in, const std::string& path, int64_t n, int classes) {
  // The shape first: a label count that is not the image count is refused before its values
  // are read (a damaged file can claim billions).
  std::vector<int64_t> shape = in.shape("/labels");
  if (shape.size() != 1 || shape[0] != n)
    RN_FAIL("'" << path << "': '/labels' is " << io::shape_text(shape) << ", expected " << n
                << " (one per image)");
  const std::vector<int64_t> v = in.read_integers("/labels", &shape);
  Tensor t = Tensor::zeros(Shape{n}, DType::i32);
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] < 0 || v[i] >= classes)
      RN_FAIL("'" << path << "': '/labels' [" << i << "] is " << v[i] << ", outside [0, " << classes
                  << ")");
    t.data_as<int32_t>()[i] = static_cast<int32_t>(v[i]);
  }
  return t;
}

}  // namespace rn::launch

// A network described by data: the generic builder turns any ModelSpec into a Network, and the
// zoo names the specs of every network of the three papers and torchvision's ResNet family.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/residual_units.h"

namespace rn::models {

enum class BlockKind { basic, bottleneck };
enum class StemKind {
  imagenet,  // 7x7/2 convolution, BN, ReLU, 3x3/2 max pooling
  cifar      // 3x3/1 convolution, BN, ReLU (the pre-activation nets leave BN/ReLU to the units)
};

struct ModelSpec {
  std::string name;
  BlockKind block = BlockKind::basic;
  std::vector<int> blocks;  // units per stage
  std::vector<int> planes;  // per stage (a bottleneck's output is planes * 4)
  int groups = 1;
  int width_per_group = 64;
  StemKind stem = StemKind::imagenet;
  int stem_channels = 64;
  bool preact = false;
  bool plain = false;  // no shortcuts (the degradation experiment)
  nn::ShortcutKind shortcut = nn::ShortcutKind::B;
  bool stride_on_3x3 = true;
  int in_channels = 3;
  int num_classes = 1000;
  bool zero_init_residual = false;
};

// The names `model_spec` knows, in a stable order.
std::vector<std::string> known_models();
// The spec of a named network; an unknown name is an error that lists the known ones.
ModelSpec model_spec(const std::string& name, int in_channels, int num_classes);

// A whole network: stem, stages of residual units, (final BN + ReLU), global pooling, fc.
class Network final : public nn::Module {
 public:
  Network(Backend& be, ModelSpec spec, uint64_t seed);
  const ModelSpec& spec() const { return spec_; }
  void set_training(bool on) override { Module::set_training(on), body_.set_training(on); }
  void collect(const std::string& prefix, std::vector<nn::NamedParameter>& params,
               std::vector<nn::NamedBuffer>& buffers) override {
    body_.collect(prefix, params, buffers);
  }
  void for_each_child(const std::function<void(nn::Module&)>& f) override { f(body_); }
  Shape output_shape(const Shape& in) const override { return body_.output_shape(in); }
  int64_t macs(const Shape& in) const override { return body_.macs(in); }
  int weighted_layers() const override { return body_.weighted_layers(); }

  std::vector<nn::NamedParameter> parameters();
  std::vector<nn::NamedBuffer> buffers();
  int64_t num_parameters();
  // Depth as the papers count it: weighted layers on the main path (projections excluded).
  int depth() const;

 protected:
  Tensor forward_impl(const Tensor& x) override { return body_.forward(x); }
  Tensor backward_impl(const Tensor& dy) override { return body_.backward(dy); }

 private:
  ModelSpec spec_;
  nn::Sequential body_{backend_};
};

std::unique_ptr<Network> build_model(Backend& be, const ModelSpec& spec, uint64_t seed);

}  // namespace rn::models

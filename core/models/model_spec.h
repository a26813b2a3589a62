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
  // Where BN and ReLU sit in each unit; full_preact is the pre-activation ResNet.
  nn::UnitActivation activation = nn::UnitActivation::original;
  bool plain = false;                               // no shortcuts (the degradation experiment)
  nn::ShortcutKind shortcut = nn::ShortcutKind::B;  // where the shape changes (options A/B/C)
  nn::ShortcutVariant variant = nn::ShortcutVariant::identity;
  float shortcut_scale = 0.5f;
  float gate_bias = 0.f;
  float shortcut_dropout = 0.5f;
  bool stride_on_3x3 = true;
  int in_channels = 3;
  int num_classes = 1000;
  bool zero_init_residual = false;

  bool preact() const { return activation == nn::UnitActivation::full_preact; }
  bool operator==(const ModelSpec&) const = default;
};

// The names `model_spec` knows, in a stable order.
std::vector<std::string> known_models();

// The spec of a named network. A name is a zoo name, or a zoo name (or "custom", which starts
// from nothing) followed by fields that change it, as model_name writes them:
// "resnet56{shortcut=exclusive_gate gate_bias=-6}". An unknown name is an error that lists the
// known ones; a bad field is an error that names it.
ModelSpec model_spec(const std::string& name, int in_channels, int num_classes);

// The fields of a spec, as the config's `model:` section and model names spell them.
const std::vector<std::string>& spec_fields();
// Sets field `key` of `s` from its text ("basic", "9,9,9", "-6"); an error says what the field
// takes ("'blocks' must be ...").
// `label` names the field in messages ("model.blocks"; default: the key).
void set_spec_field(ModelSpec& s, const std::string& key, const std::string& value,
                    const std::string& label = "");
// A per-stage list as field text: "9,9,9".
std::string stage_list(const std::vector<int>& v);
// The text of field `key` of `s`, as set_spec_field reads it.
std::string spec_field(const ModelSpec& s, const std::string& key);
// Checks the spec as a whole: one line naming the first bad field.
void validate_spec(const ModelSpec& s);
// The name that gives `s` back through model_spec: `base` when s is base's spec, else base
// followed by the fields that differ from it ("custom" lists every field).
std::string model_name(const std::string& base, const ModelSpec& s);

// A whole network: stem, stages of residual units, (final BN + ReLU), global pooling, fc.
class Network final : public nn::Module {
 public:
  Network(Backend& be, ModelSpec spec, nn::InitRng rng);
  const ModelSpec& spec() const { return spec_; }
  void set_training(bool on) override { Module::set_training(on), body_.set_training(on); }
  void collect(const std::string& prefix, std::vector<nn::NamedParameter>& params,
               std::vector<nn::NamedBuffer>& buffers) override {
    body_.collect(prefix, params, buffers);
  }
  void for_each_child(const std::function<void(nn::Module&)>& f) override { f(body_); }
  Shape output_shape(const Shape& in) const override { return body_.output_shape(in); }
  nn::GraphValue describe(nn::GraphBuilder& b, const std::string& prefix,
                          const nn::GraphValue& x) override {
    return body_.describe(b, prefix, x);
  }
  int64_t macs(const Shape& in) const override { return body_.macs(in); }
  int weighted_layers() const override { return body_.weighted_layers(); }

  std::vector<nn::NamedParameter> parameters();
  std::vector<nn::NamedBuffer> buffers();
  int64_t num_parameters();
  // Depth as the papers count it: weighted layers on the main path (projections excluded).
  int depth() const;
  // Keys every dropout layer's masks for the next training step from `key` (a function of the
  // seed, the step and the rank), so that masks never repeat and a resumed run redraws them.
  void set_noise_key(uint64_t key);
  // How many convolution weights the last training forward cast together (Backend::cast_many):
  // every convolution's in low precision once its plans are known, else 0.
  size_t batched_casts() const { return casts_.size(); }
  // How many convolution weight gradients the last backward left for its own batched cast into
  // f32 at its end (those the device wrote in the compute type, less those a gradient bucketer
  // cast with its buckets).
  size_t batched_grad_casts() const { return grad_casts_; }

 protected:
  // A training forward in low precision casts every convolution's weights in one batch first;
  // its backward casts the weight gradients still pending in one batch last.
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  ModelSpec spec_;
  nn::Sequential body_{backend_};
  std::vector<nn::Dropout*> dropouts_;  // in the order of the modules, for set_noise_key
  std::vector<nn::Conv2d*> convs_;      // found once, for the batched weight casts
  std::vector<nn::Parameter*> conv_weights_;
  std::vector<Backend::CastPair> casts_;
  size_t grad_casts_ = 0;
};

// The network of `spec`, its weights drawn from `seed` (He et al. for convolutions, PyTorch's
// defaults for the classifier).
std::unique_ptr<Network> build_model(Backend& be, const ModelSpec& spec, uint64_t seed);
// The same network with zero weights, nothing drawn: for what depends on its shapes alone
// (parameter counts, multiply-adds, gradient buckets), in a fraction of the time.
std::unique_ptr<Network> build_model_uninitialised(Backend& be, const ModelSpec& spec);

}  // namespace rn::models

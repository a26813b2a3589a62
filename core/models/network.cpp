// The generic builder: stem, stages, head, from a ModelSpec.
#include "core/backend/dropout_mask.h"
#include "core/check.h"
#include "core/models/model_spec.h"

namespace rn::models {

using nn::BasicUnit;
using nn::BatchNorm2d;
using nn::BottleneckUnit;
using nn::Conv2d;
using nn::Pool2d;

namespace {

// Unit `b` of stage `stage`, taking `channels` in: the first unit of every stage but the first
// halves the resolution.
nn::UnitOptions unit_options(const ModelSpec& s, size_t stage, int b, int channels) {
  return nn::UnitOptions{.in_channels = channels,
                         .planes = s.planes[stage],
                         .stride = (stage > 0 && b == 0) ? 2 : 1,
                         .groups = s.groups,
                         .width_per_group = s.width_per_group,
                         .stride_on_3x3 = s.stride_on_3x3,
                         .shortcut = s.shortcut,
                         .zero_init_last_bn = s.zero_init_residual,
                         .variant = s.variant,
                         .shortcut_scale = s.shortcut_scale,
                         .gate_bias = s.gate_bias,
                         .shortcut_dropout = s.shortcut_dropout,
                         .activation = s.activation};
}

void add_unit(nn::Sequential& seq, const std::string& name, const ModelSpec& s,
              const nn::UnitOptions& o, nn::InitRng& rng) {
  if (s.preact() && s.block == BlockKind::basic)
    seq.emplace<nn::PreActBasicUnit>(name, o, rng);
  else if (s.preact())
    seq.emplace<nn::PreActBottleneckUnit>(name, o, rng);
  else if (s.block == BlockKind::basic)
    seq.emplace<BasicUnit>(name, o, rng, s.plain);
  else
    seq.emplace<BottleneckUnit>(name, o, rng, s.plain);
}

}  // namespace

Network::Network(Backend& be, ModelSpec spec, nn::InitRng rng)
    : Module(be), spec_(std::move(spec)) {
  const ModelSpec& s = spec_;
  validate_spec(s);
  const bool imagenet = s.stem == StemKind::imagenet;
  body_.emplace<Conv2d>(
      "conv1", s.in_channels,
      imagenet ? ConvParams{.out_channels = s.stem_channels, .kernel = 7, .stride = 2, .pad = 3}
               : ConvParams{.out_channels = s.stem_channels, .kernel = 3, .stride = 1, .pad = 1},
      rng);
  // A CIFAR pre-activation net's first unit normalises the stem's output itself.
  if (imagenet || !s.preact()) body_.emplace<BatchNorm2d>("bn1", s.stem_channels, true);
  if (imagenet)
    body_.emplace<Pool2d>("maxpool",
                          PoolParams{.kind = PoolKind::max, .kernel = 3, .stride = 2, .pad = 1});

  const int expansion = s.block == BlockKind::bottleneck ? BottleneckUnit::kExpansion : 1;
  int channels = s.stem_channels;
  for (size_t stage = 0; stage < s.blocks.size(); ++stage) {
    auto& seq = body_.emplace<nn::Sequential>("layer" + std::to_string(stage + 1));
    for (int b = 0; b < s.blocks[stage]; ++b) {
      add_unit(seq, std::to_string(b), s, unit_options(s, stage, b, channels), rng);
      channels = s.planes[stage] * expansion;
    }
  }
  // Units whose sum is not activated are followed by the activation they leave out: BN + ReLU
  // after full pre-activation units, ReLU after ReLU-only pre-activation ones.
  if (s.preact()) body_.emplace<BatchNorm2d>("final_bn", channels, true);
  if (s.activation == nn::UnitActivation::relu_preact && !s.plain)
    body_.emplace<nn::ReLU>("final_relu");
  body_.emplace<Pool2d>("avgpool", PoolParams{.kind = PoolKind::avg, .global = true});
  body_.emplace<nn::Linear>("fc", channels, s.num_classes, rng);
  body_.set_needs_input_grad(false);
  // The dropout layers and convolutions, found once: set_noise_key and the batched weight
  // casts run every training step.
  std::function<void(nn::Module&)> find = [&](nn::Module& m) {
    if (auto* d = dynamic_cast<nn::Dropout*>(&m)) dropouts_.push_back(d);
    if (auto* c = dynamic_cast<nn::Conv2d*>(&m)) convs_.push_back(c);
    m.for_each_child(find);
  };
  find(body_);
  for (nn::Conv2d* c : convs_) {
    c->set_defer_grad_cast(true);
    conv_weights_.push_back(&c->weight());
  }
}

Tensor Network::forward_impl(const Tensor& x) {
  if (training_) {
    casts_.clear();
    for (nn::Conv2d* c : convs_) c->prepare_low_weight(casts_);
    if (!casts_.empty()) backend_.cast_many(casts_);
  }
  return body_.forward(x);
}

Tensor Network::backward_impl(const Tensor& dy) {
  Tensor dx = body_.backward(dy);
  grad_casts_ = nn::cast_pending_grads(backend_, conv_weights_);
  return dx;
}

std::vector<nn::NamedParameter> Network::parameters() {
  std::vector<nn::NamedParameter> p;
  std::vector<nn::NamedBuffer> b;
  collect("", p, b);
  return p;
}

std::vector<nn::NamedBuffer> Network::buffers() {
  std::vector<nn::NamedParameter> p;
  std::vector<nn::NamedBuffer> b;
  collect("", p, b);
  return b;
}

int64_t Network::num_parameters() {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.param->shape.numel();
  return n;
}

int Network::depth() const {
  int projections = 0;
  const ModelSpec& s = spec_;
  // Every stage whose first unit changes shape has one projection (option B), or every unit
  // has one (option C); plain nets and option A have none.
  if (!s.plain) {
    const int expansion = s.block == BlockKind::bottleneck ? BottleneckUnit::kExpansion : 1;
    int channels = s.stem_channels;
    for (size_t stage = 0; stage < s.blocks.size(); ++stage) {
      for (int b = 0; b < s.blocks[stage]; ++b) {
        const bool reshapes = (stage > 0 && b == 0) || channels != s.planes[stage] * expansion;
        projections += s.shortcut == nn::ShortcutKind::C ||
                       s.variant == nn::ShortcutVariant::conv1x1 ||
                       (s.shortcut == nn::ShortcutKind::B && reshapes);
        channels = s.planes[stage] * expansion;
      }
    }
  }
  return weighted_layers() - projections;
}

void Network::set_noise_key(uint64_t key) {
  uint64_t index = 0;
  for (nn::Dropout* d : dropouts_) d->set_key(mix64(key + ++index));
}

std::unique_ptr<Network> build_model(Backend& be, const ModelSpec& spec, uint64_t seed) {
  return std::make_unique<Network>(be, spec, nn::InitRng(seed));
}

std::unique_ptr<Network> build_model_uninitialised(Backend& be, const ModelSpec& spec) {
  return std::make_unique<Network>(be, spec, nn::InitRng::zeros());
}

}  // namespace rn::models

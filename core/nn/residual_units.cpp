// Residual units: the sum with the shortcut, and the four unit shapes built from layers.
#include "core/nn/residual_units.h"

#include "core/check.h"

namespace rn::nn {

void ResidualUnit::set_training(bool on) {
  Module::set_training(on);
  for_each_child([&](Module& child) { child.set_training(on); });
}

void ResidualUnit::collect(const std::string& prefix, std::vector<NamedParameter>& params,
                           std::vector<NamedBuffer>& buffers) {
  if (preact_) preact_->collect(join(prefix, "bn1"), params, buffers);
  branch_.collect(prefix, params, buffers);
  if (shortcut_) shortcut_->collect(join(prefix, "downsample"), params, buffers);
  if (gate_) gate_->collect(join(prefix, "gate"), params, buffers);
  if (post_) post_->collect(join(prefix, post_name_), params, buffers);
}

int64_t ResidualUnit::macs(const Shape& in) const {
  return branch_.macs(in) + (shortcut_ ? shortcut_->macs(in) : 0) + (gate_ ? gate_->macs(in) : 0);
}

// The gate's convolution is not counted: depth counts the layers on the signal's paths.
int ResidualUnit::weighted_layers() const {
  return branch_.weighted_layers() + (shortcut_ ? shortcut_->weighted_layers() : 0);
}

void ResidualUnit::make_shortcut(const UnitOptions& o, int out_channels, bool with_bn,
                                 InitRng& rng) {
  const bool reshapes = o.stride != 1 || o.in_channels != out_channels;
  projection_ = o.shortcut == ShortcutKind::C || o.variant == ShortcutVariant::conv1x1 ||
                (o.shortcut == ShortcutKind::B && reshapes);
  if (projection_) {
    auto seq = std::make_unique<Sequential>(backend_);
    seq->emplace<Conv2d>(
        "0", o.in_channels,
        ConvParams{.out_channels = out_channels, .kernel = 1, .stride = o.stride, .pad = 0}, rng);
    if (with_bn) seq->emplace<BatchNorm2d>("1", out_channels, false);
    shortcut_ = std::move(seq);
  } else if (reshapes) {
    RN_CHECK(out_channels >= o.in_channels, "[shortcut] option A cannot reduce channels "
                                                << o.in_channels << " -> " << out_channels);
    shortcut_ = std::make_unique<PadShortcut>(backend_, out_channels, o.stride);
  } else {
    shortcut_ = std::make_unique<Identity>(backend_);
  }
  shortcut_from_preact_ = preact_ != nullptr && projection_;
  switch (o.variant) {
    case ShortcutVariant::scale_both:
      branch_.emplace<Scale>("scale", 1.f - o.shortcut_scale);
      [[fallthrough]];
    case ShortcutVariant::scale_shortcut:
      shortcut_tail_ = std::make_unique<Scale>(backend_, o.shortcut_scale);
      break;
    case ShortcutVariant::dropout:
      shortcut_tail_ = std::make_unique<Dropout>(backend_, o.shortcut_dropout);
      break;
    case ShortcutVariant::exclusive_gate:
    case ShortcutVariant::shortcut_gate: {
      exclusive_gate_ = o.variant == ShortcutVariant::exclusive_gate;
      auto gate = std::make_unique<Sequential>(backend_);
      gate->emplace<Conv2d>("conv", o.in_channels,
                            ConvParams{.out_channels = out_channels,
                                       .kernel = 1,
                                       .stride = o.stride,
                                       .pad = 0,
                                       .bias = true},
                            rng, o.gate_bias);
      gate->emplace<Sigmoid>("sigmoid");
      gate_ = std::move(gate);
      break;
    }
    case ShortcutVariant::identity:
    case ShortcutVariant::conv1x1:
      break;
  }
}

Tensor ResidualUnit::forward_impl(const Tensor& x) {
  const Tensor a = preact_ ? preact_->forward(x) : x;
  Tensor h = branch_.forward(a);
  if (!shortcut_) return h;  // plain unit: its last BN already applied the ReLU
  Tensor s = shortcut_->forward(shortcut_from_preact_ ? a : x);
  if (shortcut_tail_) s = shortcut_tail_->forward(s);
  s = as_desc(s, h.desc());
  const bool relu = relu_after_sum_ && !post_;
  Tensor y = backend_.allocate(h.desc());
  if (gate_) {
    // y = g * h + (1 - g) * s (exclusive) or h + (1 - g) * s (shortcut only).
    Tensor g = as_desc(gate_->forward(a), h.desc());
    Tensor gs = backend_.allocate(h.desc());
    backend_.mul(s, g, gs, -1.f, 1.f);
    if (exclusive_gate_) {
      Tensor gh = backend_.allocate(h.desc());
      backend_.mul(h, g, gh);
      backend_.add(gh, gs, y, relu);
    } else {
      backend_.add(h, gs, y, relu);
    }
    if (training_) saved_h_ = h, saved_s_ = s, saved_g_ = g;
  } else {
    backend_.add(h, s, y, relu);
  }
  if (post_) return post_->forward(y);
  if (training_ && relu) {
    saved_y_ = y;
    tap_relu(y);
  }
  return y;
}

// The forward above, op by op; the names follow collect() (the pre-activation's BN is "bn1").
GraphValue ResidualUnit::describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) {
  const GraphValue a = preact_ ? preact_->describe(b, join(prefix, "bn1"), x) : x;
  const GraphValue h = branch_.describe(b, prefix, a);
  if (!shortcut_) return h;
  GraphValue s = shortcut_->describe(b, join(prefix, "downsample"), shortcut_from_preact_ ? a : x);
  if (shortcut_tail_) s = shortcut_tail_->describe(b, join(prefix, "shortcut"), s);
  GraphValue y;
  if (gate_) {
    const GraphValue g = gate_->describe(b, join(prefix, "gate"), a);
    const GraphValue gs =
        b.mul(join(prefix, "gate.carry"), s, b.one_minus(join(prefix, "gate.one_minus"), g));
    const GraphValue gh = exclusive_gate_ ? b.mul(join(prefix, "gate.transform"), h, g) : h;
    y = b.add(join(prefix, "add"), gh, gs);
  } else {
    y = b.add(join(prefix, "add"), h, s);
  }
  if (post_) return post_->describe(b, join(prefix, post_name_), y);
  return relu_after_sum_ ? b.relu(join(prefix, "relu"), y) : y;
}

GradSum ResidualUnit::backward_sum_impl(const GradSum& dy) {
  Tensor g;
  if (shortcut_ && relu_after_sum_ && !post_) {
    const TensorDesc& d = saved_y_.desc();
    g = backend_.allocate(d);
    if (dy.b.defined())
      backend_.relu_backward_add(saved_y_, as_desc(dy.a, d), as_desc(dy.b, d), g);
    else
      backend_.relu_backward(saved_y_, as_desc(dy.a, d), g);
    saved_y_ = Tensor();
  } else if (post_) {
    g = post_->backward(materialize(dy));
  } else {
    g = materialize(dy);
  }
  Tensor dh = g, ds = g, dgate;
  if (gate_) {
    RN_CHECK(saved_g_.defined(), "[residual] backward without a training forward");
    const TensorDesc& d = saved_h_.desc();
    g = as_desc(g, d);
    dh = g;
    ds = backend_.allocate(d);
    backend_.mul(g, saved_g_, ds, -1.f, 1.f);  // d/ds = 1 - g
    dgate = backend_.allocate(d);
    if (exclusive_gate_) {
      dh = backend_.allocate(d);
      backend_.mul(g, saved_g_, dh);  // d/dh = g
      Tensor diff = backend_.allocate(d);
      backend_.copy(saved_h_, diff);
      backend_.axpby(diff, -1.f, saved_s_, 1.f);
      backend_.mul(g, diff, dgate);  // d/dg = h - s
    } else {
      backend_.mul(g, saved_s_, dgate, -1.f, 0.f);  // d/dg = -s
    }
    saved_h_ = saved_s_ = saved_g_ = Tensor();
  }
  Tensor da = branch_.backward(dh);
  if (gate_) da = materialize({da, gate_->backward(dgate)});
  if (!shortcut_) return {preact_ ? preact_->backward(da) : da, {}};
  if (shortcut_tail_) ds = shortcut_tail_->backward(ds);
  ds = shortcut_->backward(ds);
  if (preact_ && !shortcut_from_preact_) return {preact_->backward(da), ds};
  if (preact_) return {preact_->backward(materialize({da, ds})), {}};
  return {da, ds};
}

namespace {
ConvParams conv3x3(int out, int stride, int groups = 1) {
  return ConvParams{.out_channels = out, .kernel = 3, .stride = stride, .pad = 1, .groups = groups};
}
ConvParams conv1x1(int out, int stride = 1) {
  return ConvParams{.out_channels = out, .kernel = 1, .stride = stride, .pad = 0};
}
}  // namespace

// The branch's activations for the four placements other than full pre-activation.
void ResidualUnit::place_activations(const UnitOptions& o, int out_channels, bool plain,
                                     const std::string& last_bn) {
  using A = UnitActivation;
  const A a = plain ? A::original : o.activation;
  RN_CHECK(a != A::full_preact, "[residual] full pre-activation has its own units");
  if (a == A::bn_after_add) {
    post_ = std::make_unique<BatchNorm2d>(backend_, out_channels, true);
    post_name_ = last_bn;
  } else {
    branch_.emplace<BatchNorm2d>(last_bn, out_channels, plain || a == A::relu_before_add,
                                 o.zero_init_last_bn && !plain);
  }
  if (a == A::relu_preact) preact_ = std::make_unique<ReLU>(backend_);
  relu_after_sum_ = a == A::original;
}

BasicUnit::BasicUnit(Backend& be, const UnitOptions& o, InitRng& rng, bool plain)
    : ResidualUnit(be) {
  branch_.emplace<Conv2d>("conv1", o.in_channels, conv3x3(o.planes, o.stride), rng);
  branch_.emplace<BatchNorm2d>("bn1", o.planes, true);
  branch_.emplace<Conv2d>("conv2", o.planes, conv3x3(o.planes, 1), rng);
  place_activations(o, o.planes, plain, "bn2");
  // After-sum BN normalises the projection too: a BN of its own would be redundant.
  if (!plain) make_shortcut(o, o.planes, o.activation != UnitActivation::bn_after_add, rng);
}

BottleneckUnit::BottleneckUnit(Backend& be, const UnitOptions& o, InitRng& rng, bool plain)
    : ResidualUnit(be) {
  const int width = static_cast<int>(o.planes * (o.width_per_group / 64.0)) * o.groups;
  const int out = o.planes * kExpansion;
  const int s1 = o.stride_on_3x3 ? 1 : o.stride, s3 = o.stride_on_3x3 ? o.stride : 1;
  branch_.emplace<Conv2d>("conv1", o.in_channels, conv1x1(width, s1), rng);
  branch_.emplace<BatchNorm2d>("bn1", width, true);
  branch_.emplace<Conv2d>("conv2", width, conv3x3(width, s3, o.groups), rng);
  branch_.emplace<BatchNorm2d>("bn2", width, true);
  branch_.emplace<Conv2d>("conv3", width, conv1x1(out), rng);
  place_activations(o, out, plain, "bn3");
  if (!plain) make_shortcut(o, out, o.activation != UnitActivation::bn_after_add, rng);
}

PreActBasicUnit::PreActBasicUnit(Backend& be, const UnitOptions& o, InitRng& rng)
    : ResidualUnit(be) {
  relu_after_sum_ = false;
  preact_ = std::make_unique<BatchNorm2d>(be, o.in_channels, true);
  branch_.emplace<Conv2d>("conv1", o.in_channels, conv3x3(o.planes, o.stride), rng);
  branch_.emplace<BatchNorm2d>("bn2", o.planes, true);
  branch_.emplace<Conv2d>("conv2", o.planes, conv3x3(o.planes, 1), rng);
  make_shortcut(o, o.planes, false, rng);
}

PreActBottleneckUnit::PreActBottleneckUnit(Backend& be, const UnitOptions& o, InitRng& rng)
    : ResidualUnit(be) {
  relu_after_sum_ = false;
  const int width = static_cast<int>(o.planes * (o.width_per_group / 64.0)) * o.groups;
  const int out = o.planes * kExpansion;
  preact_ = std::make_unique<BatchNorm2d>(be, o.in_channels, true);
  branch_.emplace<Conv2d>("conv1", o.in_channels, conv1x1(width), rng);
  branch_.emplace<BatchNorm2d>("bn2", width, true);
  branch_.emplace<Conv2d>("conv2", width, conv3x3(width, o.stride, o.groups), rng);
  branch_.emplace<BatchNorm2d>("bn3", width, true);
  branch_.emplace<Conv2d>("conv3", width, conv1x1(out), rng);
  make_shortcut(o, out, false, rng);
}

}  // namespace rn::nn

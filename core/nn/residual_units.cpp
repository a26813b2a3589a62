// Residual units: the sum with the shortcut, and the four unit shapes built from layers.
#include "core/nn/residual_units.h"

#include "core/check.h"

namespace rn::nn {

void ResidualUnit::set_training(bool on) {
  Module::set_training(on);
  branch_.set_training(on);
  if (shortcut_) shortcut_->set_training(on);
  if (preact_) preact_->set_training(on);
}

void ResidualUnit::collect(const std::string& prefix, std::vector<NamedParameter>& params,
                           std::vector<NamedBuffer>& buffers) {
  if (preact_) preact_->collect(join(prefix, "bn1"), params, buffers);
  branch_.collect(prefix, params, buffers);
  if (shortcut_) shortcut_->collect(join(prefix, "downsample"), params, buffers);
}

int64_t ResidualUnit::macs(const Shape& in) const {
  return branch_.macs(in) + (shortcut_ ? shortcut_->macs(in) : 0);
}

int ResidualUnit::weighted_layers() const {
  return branch_.weighted_layers() + (shortcut_ ? shortcut_->weighted_layers() : 0);
}

void ResidualUnit::make_shortcut(const UnitOptions& o, int out_channels, bool with_bn,
                                 InitRng& rng) {
  const bool reshapes = o.stride != 1 || o.in_channels != out_channels;
  projection_ = o.shortcut == ShortcutKind::C || (o.shortcut == ShortcutKind::B && reshapes);
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
}

Tensor ResidualUnit::forward_impl(const Tensor& x) {
  const Tensor a = preact_ ? preact_->forward(x) : x;
  Tensor h = branch_.forward(a);
  if (!shortcut_) return h;  // plain unit: its last BN already applied the ReLU
  Tensor s = as_desc(shortcut_->forward(shortcut_from_preact_ ? a : x), h.desc());
  Tensor y = backend_.allocate(h.desc());
  backend_.add(h, s, y, relu_after_sum_);
  if (training_ && relu_after_sum_) {
    saved_y_ = y;
    tap_relu(y);
  }
  return y;
}

GradSum ResidualUnit::backward_sum_impl(const GradSum& dy) {
  Tensor g;
  if (shortcut_ && relu_after_sum_) {
    const TensorDesc& d = saved_y_.desc();
    g = backend_.allocate(d);
    if (dy.b.defined())
      backend_.relu_backward_add(saved_y_, as_desc(dy.a, d), as_desc(dy.b, d), g);
    else
      backend_.relu_backward(saved_y_, as_desc(dy.a, d), g);
    saved_y_ = Tensor();
  } else {
    g = materialize(dy);
  }
  Tensor da = branch_.backward(g);
  if (!shortcut_) return {preact_ ? preact_->backward(da) : da, {}};
  Tensor ds = shortcut_->backward(g);
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

BasicUnit::BasicUnit(Backend& be, const UnitOptions& o, InitRng& rng, bool plain)
    : ResidualUnit(be) {
  branch_.emplace<Conv2d>("conv1", o.in_channels, conv3x3(o.planes, o.stride), rng);
  branch_.emplace<BatchNorm2d>("bn1", o.planes, true);
  branch_.emplace<Conv2d>("conv2", o.planes, conv3x3(o.planes, 1), rng);
  branch_.emplace<BatchNorm2d>("bn2", o.planes, plain, o.zero_init_last_bn && !plain);
  if (!plain) make_shortcut(o, o.planes, true, rng);
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
  branch_.emplace<BatchNorm2d>("bn3", out, plain, o.zero_init_last_bn && !plain);
  if (!plain) make_shortcut(o, out, true, rng);
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

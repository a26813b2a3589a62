// The residual units of the three papers: basic and bottleneck (He et al. 2015, with groups and
// width per group for ResNeXt, Xie et al. 2017), their full pre-activation forms (He et al. 2016),
// and the plain unit without a shortcut. Child names follow torchvision (conv1, bn1, downsample).
#pragma once

#include "core/nn/layers.h"

namespace rn::nn {

// A: zero-padded identity; B: projection where the shape changes; C: projection everywhere.
enum class ShortcutKind { A, B, C };

struct UnitOptions {
  int in_channels = 64;
  int planes = 64;  // bottleneck: output is planes * 4
  int stride = 1;
  int groups = 1;
  int width_per_group = 64;
  bool stride_on_3x3 = true;  // false: the stride sits on the first 1x1 (the original paper)
  ShortcutKind shortcut = ShortcutKind::B;
  bool zero_init_last_bn = false;  // the last BN's gamma starts at 0 (Goyal et al.)
};

// The residual sum: y = branch(x) + shortcut(x), then ReLU for the original units (not for the
// pre-activation ones). Subclasses build the branch and the shortcut.
class ResidualUnit : public Module {
 public:
  using Module::Module;
  void set_training(bool on) override;
  void collect(const std::string& prefix, std::vector<NamedParameter>& params,
               std::vector<NamedBuffer>& buffers) override;
  void for_each_child(const std::function<void(Module&)>& f) override {
    if (preact_) f(*preact_);
    f(branch_);
    if (shortcut_) f(*shortcut_);
  }
  Shape output_shape(const Shape& in) const override { return branch_.output_shape(in); }
  int64_t macs(const Shape& in) const override;
  int weighted_layers() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override {
    return materialize(backward_sum_impl({dy, {}}));
  }
  // The unit's input gradient is branch + shortcut: returned as a sum, so that the unit below
  // folds the addition into its ReLU backward.
  GradSum backward_sum_impl(const GradSum& dy) override;
  // Adds the shortcut: projection options make a 1x1 conv (+ BN for the original units).
  void make_shortcut(const UnitOptions& o, int out_channels, bool with_bn, InitRng& rng);

  Sequential branch_{backend_};
  std::unique_ptr<Module> shortcut_;   // null for plain units
  std::unique_ptr<Module> preact_;     // pre-activation units: BN + ReLU applied to x first
  bool shortcut_from_preact_ = false;  // a projection sees the pre-activated input
  bool relu_after_sum_ = true;
  bool projection_ = false;

 private:
  Tensor saved_y_;
};

class BasicUnit final : public ResidualUnit {
 public:
  BasicUnit(Backend& be, const UnitOptions& o, InitRng& rng, bool plain = false);
};

class BottleneckUnit final : public ResidualUnit {
 public:
  static constexpr int kExpansion = 4;
  BottleneckUnit(Backend& be, const UnitOptions& o, InitRng& rng, bool plain = false);
};

class PreActBasicUnit final : public ResidualUnit {
 public:
  PreActBasicUnit(Backend& be, const UnitOptions& o, InitRng& rng);
};

class PreActBottleneckUnit final : public ResidualUnit {
 public:
  static constexpr int kExpansion = 4;
  PreActBottleneckUnit(Backend& be, const UnitOptions& o, InitRng& rng);
};

}  // namespace rn::nn

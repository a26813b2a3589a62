// The residual units of the three papers: basic and bottleneck (He et al. 2015, with groups and
// width per group for ResNeXt, Xie et al. 2017), their full pre-activation forms (He et al. 2016),
// and the plain unit without a shortcut. Child names follow torchvision (conv1, bn1, downsample).
#pragma once

#include "core/nn/layers.h"

namespace rn::nn {

// A: zero-padded identity; B: projection where the shape changes; C: projection everywhere.
enum class ShortcutKind { A, B, C };

// How the shortcut joins the branch F (He et al. 2016, "Identity Mappings", Fig. 2 / Table 1):
// identity x + F; scale_shortcut 0.5x + F; scale_both 0.5x + 0.5F; exclusive_gate
// (1 - g)x + gF and shortcut_gate (1 - g)x + F with g = sigmoid(1x1 conv of the unit's input);
// conv1x1 a 1x1 convolution on every shortcut; dropout on the shortcut.
enum class ShortcutVariant {
  identity,
  scale_shortcut,
  scale_both,
  exclusive_gate,
  shortcut_gate,
  conv1x1,
  dropout
};

// Where BN and ReLU sit around the addition (the same paper, Fig. 4 / Table 2): original
// (ReLU after the sum), bn_after_add (the branch's last BN moves after the sum), relu_before_add
// (the branch ends with BN + ReLU, nothing after the sum), relu_preact (ReLU first, nothing after
// the sum) and full_preact (BN + ReLU first).
enum class UnitActivation { original, bn_after_add, relu_before_add, relu_preact, full_preact };

struct UnitOptions {
  int in_channels = 64;
  int planes = 64;  // bottleneck: output is planes * 4
  int stride = 1;
  int groups = 1;
  int width_per_group = 64;
  bool stride_on_3x3 = true;  // false: the stride sits on the first 1x1 (the original paper)
  ShortcutKind shortcut = ShortcutKind::B;
  bool zero_init_last_bn = false;  // the last BN's gamma starts at 0 (Goyal et al.)
  ShortcutVariant variant = ShortcutVariant::identity;
  float shortcut_scale = 0.5f;    // scale_shortcut, scale_both
  float gate_bias = 0.f;          // the gates' 1x1 convolution bias starts here (b_g)
  float shortcut_dropout = 0.5f;  // dropout: the probability of dropping
  UnitActivation activation = UnitActivation::original;  // basic and bottleneck units
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
    if (shortcut_tail_) f(*shortcut_tail_);
    if (gate_) f(*gate_);
    if (post_) f(*post_);
  }
  Shape output_shape(const Shape& in) const override { return branch_.output_shape(in); }
  GraphValue describe(GraphBuilder& b, const std::string& prefix, const GraphValue& x) override;
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
  // Adds the shortcut: projection options make a 1x1 conv (+ BN for the original units); then
  // the variant's scaling, dropout or gate.
  void make_shortcut(const UnitOptions& o, int out_channels, bool with_bn, InitRng& rng);
  // Basic and bottleneck units: the branch's last BN (`last_bn`) and the ReLUs around the sum,
  // as o.activation places them.
  void place_activations(const UnitOptions& o, int out_channels, bool plain,
                         const std::string& last_bn);

  Sequential branch_{backend_};
  std::unique_ptr<Module> shortcut_;   // null for plain units
  std::unique_ptr<Module> preact_;     // pre-activation units: BN + ReLU applied to x first
  bool shortcut_from_preact_ = false;  // a projection sees the pre-activated input
  bool relu_after_sum_ = true;
  bool projection_ = false;
  std::unique_ptr<Module> shortcut_tail_;  // scaling or dropout after the shortcut
  std::unique_ptr<Module> gate_;           // 1x1 conv + sigmoid on the branch's input
  bool exclusive_gate_ = false;            // the gate also scales the branch by g
  std::unique_ptr<Module> post_;           // BN + ReLU after the sum (bn_after_add)
  std::string post_name_;

 private:
  Tensor saved_y_, saved_h_, saved_s_, saved_g_;
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

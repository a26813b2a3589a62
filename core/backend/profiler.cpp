// The profiling backend: every call forwarded to the inner backend inside a Profiler::Scope;
// the op objects it plans wrap the inner backend's, one set of entries per layer. Then the
// report: entries summed by kind and by layer.
#include "core/backend/profiler.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>

#include "core/check.h"

namespace rn {

int Profiler::entry(const std::string& kind, const std::string& what, int layer, int pass,
                    double flop) {
  for (size_t i = 0; i < entries_.size(); ++i) {
    const ProfileEntry& e = entries_[i];
    if (e.kind == kind && e.what == what && e.layer == layer && e.pass == pass)
      return static_cast<int>(i);
  }
  ProfileEntry e;
  e.kind = kind, e.what = what, e.layer = layer, e.pass = pass, e.flop = flop;
  entries_.push_back(e);
  return static_cast<int>(entries_.size()) - 1;
}

void Profiler::reset() {
  for (ProfileEntry& e : entries_) e.seconds = 0, e.calls = 0;
}

namespace {

// On CUDA each timed call waits for the device before and after it.
class Timed {
 public:
  Timed(Profiler& p, int e, Backend& inner, bool sync) : sync_(sync && p.enabled()), inner_(inner) {
    if (sync_) inner_.synchronize();
    scope_.emplace(p, e);
  }
  ~Timed() {
    if (sync_) inner_.synchronize();
  }

 private:
  bool sync_;
  Backend& inner_;
  std::optional<Profiler::Scope> scope_;
};

std::string hw(const Shape& x) {
  return str_cat(x[2], "x", x[3]);
}

class ProfiledConv : public ConvOp {
 public:
  ProfiledConv(std::unique_ptr<ConvOp> op, const ConvParams& p, const Shape& x, Profiler& prof,
               Backend& inner, bool sync)
      : ConvOp(p, x), op_(std::move(op)), prof_(prof), inner_(inner), sync_(sync) {
    const Shape& y = op_->output_desc().shape;
    const double flop =
        2.0 * static_cast<double>(y.numel()) * (x[1] / p.groups) * p.kernel * p.kernel;
    const int layer = prof.next_layer();
    const std::string what =
        str_cat("conv ", p.kernel, "x", p.kernel, "/", p.stride, " ", x[1], "->", p.out_channels,
                p.groups > 1 ? str_cat(" g", p.groups) : std::string(), " at ", hw(x));
    const char* kinds[3] = {"conv forward", "conv backward-data", "conv backward-weights"};
    for (int i = 0; i < 3; ++i) e_[i] = prof.entry(kinds[i], what, layer, i, flop);
  }
  const TensorDesc& output_desc() const override { return op_->output_desc(); }
  const TensorDesc& weight_desc() const override { return op_->weight_desc(); }
  bool weight_grad_f32() const override { return op_->weight_grad_f32(); }
  const char* algorithm(ConvPass pass) const override { return op_->algorithm(pass); }

 private:
  void note(ConvPass pass) {
    ProfileEntry& e = prof_.at(e_[static_cast<int>(pass)]);
    if (e.algorithm.empty()) e.algorithm = op_->algorithm(pass);
  }
  void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    {
      Timed t(prof_, e_[0], inner_, sync_);
      op_->forward(x, w, bias, y);
    }
    note(ConvPass::forward);
  }
  void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) override {
    {
      Timed t(prof_, e_[1], inner_, sync_);
      op_->backward_data(dy, w, dx);
    }
    note(ConvPass::backward_data);
  }
  void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                             Tensor* dbias) override {
    {
      Timed t(prof_, e_[2], inner_, sync_);
      op_->backward_weights(x, dy, dw, dbias);
    }
    note(ConvPass::backward_weights);
  }
  std::unique_ptr<ConvOp> op_;
  Profiler& prof_;
  Backend& inner_;
  bool sync_;
  int e_[3];
};

class ProfiledBatchNorm : public BatchNormOp {
 public:
  ProfiledBatchNorm(std::unique_ptr<BatchNormOp> op, const BatchNormParams& p, const Shape& x,
                    Profiler& prof, Backend& inner, bool sync)
      : BatchNormOp(x), op_(std::move(op)), prof_(prof), inner_(inner), sync_(sync) {
    const int layer = prof.next_layer();
    const std::string what =
        str_cat("batch norm ", x[1], " at ", hw(x), p.fuse_relu ? " +relu" : "");
    for (int i = 0; i < 2; ++i) e_[i] = prof.entry("batch norm", what, layer, i);
  }
  const TensorDesc& output_desc() const override { return op_->output_desc(); }
  const TensorDesc& workspace_desc() const override { return op_->workspace_desc(); }

 private:
  void forward_training_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                             Tensor& mean, Tensor& var, Tensor* workspace) override {
    Timed t(prof_, e_[0], inner_, sync_);
    op_->forward_training(x, gamma, beta, y, mean, var, workspace);
  }
  void forward_inference_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& mean, const Tensor& var, Tensor& y) override {
    Timed t(prof_, e_[0], inner_, sync_);
    op_->forward_inference(x, gamma, beta, mean, var, y);
  }
  void backward_impl(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
                     const Tensor& var, const Tensor* workspace, Tensor& dx, Tensor& dgamma,
                     Tensor& dbeta) override {
    Timed t(prof_, e_[1], inner_, sync_);
    op_->backward(x, dy, gamma, mean, var, workspace, dx, dgamma, dbeta);
  }
  std::unique_ptr<BatchNormOp> op_;
  Profiler& prof_;
  Backend& inner_;
  bool sync_;
  int e_[2];
};

class ProfiledPool : public PoolOp {
 public:
  ProfiledPool(std::unique_ptr<PoolOp> op, const PoolParams& p, const Shape& x, Profiler& prof,
               Backend& inner, bool sync)
      : PoolOp(x), op_(std::move(op)), prof_(prof), inner_(inner), sync_(sync) {
    const int layer = prof.next_layer();
    const std::string what =
        p.global
            ? str_cat("global ", p.kind == PoolKind::max ? "max" : "average", " pool at ", hw(x))
            : str_cat(p.kind == PoolKind::max ? "max" : "average", " pool ", p.kernel, "/",
                      p.stride, " at ", hw(x));
    for (int i = 0; i < 2; ++i) e_[i] = prof.entry("pooling", what, layer, i);
  }
  const TensorDesc& output_desc() const override { return op_->output_desc(); }
  const TensorDesc& workspace_desc() const override { return op_->workspace_desc(); }

 private:
  void forward_impl(const Tensor& x, Tensor& y, Tensor* workspace) override {
    Timed t(prof_, e_[0], inner_, sync_);
    op_->forward(x, y, workspace);
  }
  void backward_impl(const Tensor& dy, const Tensor* workspace, Tensor& dx) override {
    Timed t(prof_, e_[1], inner_, sync_);
    op_->backward(dy, workspace, dx);
  }
  std::unique_ptr<PoolOp> op_;
  Profiler& prof_;
  Backend& inner_;
  bool sync_;
  int e_[2];
};

class ProfiledLinear : public LinearOp {
 public:
  ProfiledLinear(std::unique_ptr<LinearOp> op, const LinearParams& p, const Shape& x,
                 Profiler& prof, Backend& inner, bool sync)
      : LinearOp(p, x), op_(std::move(op)), prof_(prof), inner_(inner), sync_(sync) {
    const int layer = prof.next_layer();
    const double flop = 2.0 * static_cast<double>(x.numel()) * p.out_features;
    const std::string what = str_cat("linear ", x.numel() / x[0], "->", p.out_features);
    for (int i = 0; i < 3; ++i) e_[i] = prof.entry("linear", what, layer, i, flop);
  }
  const TensorDesc& output_desc() const override { return op_->output_desc(); }

 private:
  void forward_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    Timed t(prof_, e_[0], inner_, sync_);
    op_->forward(x, w, bias, y);
  }
  void backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx) override {
    Timed t(prof_, e_[1], inner_, sync_);
    op_->backward_data(dy, w, dx);
  }
  void backward_weights_impl(const Tensor& x, const Tensor& dy, Tensor& dw,
                             Tensor* dbias) override {
    Timed t(prof_, e_[2], inner_, sync_);
    op_->backward_weights(x, dy, dw, dbias);
  }
  std::unique_ptr<LinearOp> op_;
  Profiler& prof_;
  Backend& inner_;
  bool sync_;
  int e_[3];
};

// The backend's own calls, one entry each.
enum Call {
  kAllocate,
  kPlan,
  kCopy,
  kCast,
  kRelu,
  kReluBackward,
  kReluBackwardAdd,
  kAdd,
  kAddInplace,
  kAxpby,
  kSigmoid,
  kSigmoidBackward,
  kMul,
  kScaleTo,
  kDropout,
  kDropoutBackward,
  kPadShortcut,
  kPadShortcutBackward,
  kChannelAffineAdd,
  kFill,
  kScale,
  kLoss,
  kOptimizer,
  kAllFinite,
  kCalls
};

class ProfilingBackend : public Backend {
  template <typename F>
  decltype(auto) timed(Call c, F f) {
    Timed t(prof_, e_[c], in_, sync_);
    return f();
  }

 public:
  ProfilingBackend(Backend& inner, Profiler& prof)
      : in_(inner), prof_(prof), sync_(inner.device().kind == DeviceKind::cuda) {
    const std::pair<const char*, const char*> names[kCalls] = {
        {"allocation", "pool allocations"},
        {"planning", "op plans"},
        {"copies and reorders", "copies, reorders, uploads and downloads"},
        {"casts", "precision casts"},
        {"element-wise", "relu"},
        {"element-wise", "relu backward"},
        {"element-wise", "relu backward of a sum"},
        {"element-wise", "add"},
        {"element-wise", "add in place"},
        {"element-wise", "axpby"},
        {"element-wise", "sigmoid"},
        {"element-wise", "sigmoid backward"},
        {"element-wise", "multiply"},
        {"element-wise", "scale"},
        {"element-wise", "dropout"},
        {"element-wise", "dropout backward"},
        {"element-wise", "shortcut A (pad)"},
        {"element-wise", "shortcut A backward"},
        {"element-wise", "channel affine add"},
        {"element-wise", "fill"},
        {"element-wise", "scale in place"},
        {"loss", "softmax cross-entropy"},
        {"optimizer", "parameter updates"},
        {"loss scaling", "overflow check"}};
    for (int i = 0; i < kCalls; ++i) e_[i] = prof.entry(names[i].first, names[i].second);
  }

  Device device() const override { return in_.device(); }
  std::string name() const override { return in_.name(); }
  Tensor allocate(const TensorDesc& d) override {
    return timed(kAllocate, [&] { return in_.allocate(d); });
  }
  Tensor allocate_persistent(const TensorDesc& d) override { return in_.allocate_persistent(d); }
  LayoutPtr layout_like(const TensorDesc& like, const Shape& s) override {
    return in_.layout_like(like, s);
  }
  Tensor upload(const Tensor& h) override {
    return timed(kCopy, [&] { return in_.upload(h); });
  }
  Tensor upload_persistent(const Tensor& h) override { return in_.upload_persistent(h); }
  Tensor download(const Tensor& t) override {
    return timed(kCopy, [&] { return in_.download(t); });
  }
  Tensor allocate_pinned(const TensorDesc& d) override { return in_.allocate_pinned(d); }
  void upload_ahead(const Tensor& h, Tensor& dst) override {
    timed(kCopy, [&] { in_.upload_ahead(h, dst); });
  }
  void set_conv_algorithm(ConvAlgorithm a) override { in_.set_conv_algorithm(a); }
  std::string conv_algorithm_summary() const override { return in_.conv_algorithm_summary(); }

  std::unique_ptr<ConvOp> make_conv(const ConvParams& p, const TensorDesc& x,
                                    bool training) override {
    auto op = timed(kPlan, [&] { return in_.make_conv(p, x, training); });
    return std::make_unique<ProfiledConv>(std::move(op), p, x.shape, prof_, in_, sync_);
  }
  std::unique_ptr<BatchNormOp> make_batch_norm(const BatchNormParams& p, const TensorDesc& x,
                                               bool training) override {
    auto op = timed(kPlan, [&] { return in_.make_batch_norm(p, x, training); });
    return std::make_unique<ProfiledBatchNorm>(std::move(op), p, x.shape, prof_, in_, sync_);
  }
  std::unique_ptr<PoolOp> make_pool(const PoolParams& p, const TensorDesc& x,
                                    bool training) override {
    auto op = timed(kPlan, [&] { return in_.make_pool(p, x, training); });
    return std::make_unique<ProfiledPool>(std::move(op), p, x.shape, prof_, in_, sync_);
  }
  std::unique_ptr<LinearOp> make_linear(const LinearParams& p, const TensorDesc& x) override {
    auto op = timed(kPlan, [&] { return in_.make_linear(p, x); });
    return std::make_unique<ProfiledLinear>(std::move(op), p, x.shape, prof_, in_, sync_);
  }

  void relu_forward(const Tensor& x, Tensor& y) override {
    timed(kRelu, [&] { in_.relu_forward(x, y); });
  }
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override {
    timed(kReluBackward, [&] { in_.relu_backward(y, dy, dx); });
  }
  void relu_backward_add(const Tensor& y, const Tensor& a, const Tensor& b, Tensor& dx) override {
    timed(kReluBackwardAdd, [&] { in_.relu_backward_add(y, a, b, dx); });
  }
  void add(const Tensor& a, const Tensor& b, Tensor& y, bool relu) override {
    timed(kAdd, [&] { in_.add(a, b, y, relu); });
  }
  void add_inplace(Tensor& y, const Tensor& x) override {
    timed(kAddInplace, [&] { in_.add_inplace(y, x); });
  }
  void axpby(Tensor& y, float a, const Tensor& x, float b) override {
    timed(kAxpby, [&] { in_.axpby(y, a, x, b); });
  }
  void sigmoid_forward(const Tensor& x, Tensor& y) override {
    timed(kSigmoid, [&] { in_.sigmoid_forward(x, y); });
  }
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override {
    timed(kSigmoidBackward, [&] { in_.sigmoid_backward(y, dy, dx); });
  }
  void mul(const Tensor& a, const Tensor& b, Tensor& y, float alpha, float beta) override {
    timed(kMul, [&] { in_.mul(a, b, y, alpha, beta); });
  }
  void scale_to(const Tensor& x, float factor, Tensor& y) override {
    timed(kScaleTo, [&] { in_.scale_to(x, factor, y); });
  }
  void dropout_forward(const Tensor& x, float p, uint64_t key, Tensor& y) override {
    timed(kDropout, [&] { in_.dropout_forward(x, p, key, y); });
  }
  void dropout_backward(const Tensor& dy, float p, uint64_t key, Tensor& dx) override {
    timed(kDropoutBackward, [&] { in_.dropout_backward(dy, p, key, dx); });
  }
  void pad_shortcut_forward(const Tensor& x, int stride, Tensor& y) override {
    timed(kPadShortcut, [&] { in_.pad_shortcut_forward(x, stride, y); });
  }
  void pad_shortcut_backward(const Tensor& dy, int stride, Tensor& dx) override {
    timed(kPadShortcutBackward, [&] { in_.pad_shortcut_backward(dy, stride, dx); });
  }
  void channel_affine_add(Tensor& y, const Tensor& x, const Tensor& scale,
                          const Tensor& shift) override {
    timed(kChannelAffineAdd, [&] { in_.channel_affine_add(y, x, scale, shift); });
  }

  LossStats softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                  const CrossEntropyParams& p, Tensor* dlogits) override {
    return timed(kLoss, [&] { return in_.softmax_cross_entropy(logits, labels, p, dlogits); });
  }
  void queue_softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                   const CrossEntropyParams& p, Tensor* dlogits) override {
    timed(kLoss, [&] { in_.queue_softmax_cross_entropy(logits, labels, p, dlogits); });
  }
  LossStats queued_loss_stats() override { return in_.queued_loss_stats(); }

  void sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) override {
    timed(kOptimizer, [&] { in_.sgd_update(p, w, g, m); });
  }
  void sgd_update_many(const SgdParams& p, const std::vector<UpdateTensors>& list) override {
    timed(kOptimizer, [&] { in_.sgd_update_many(p, list); });
  }
  void lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) override {
    timed(kOptimizer, [&] { in_.lars_update(p, w, g, m); });
  }

  void fill(Tensor& t, float value) override {
    timed(kFill, [&] { in_.fill(t, value); });
  }
  void scale(Tensor& t, float factor) override {
    timed(kScale, [&] { in_.scale(t, factor); });
  }
  void copy(const Tensor& src, Tensor& dst) override {
    timed(kCopy, [&] { in_.copy(src, dst); });
  }
  void reorder(const Tensor& src, Tensor& dst) override {
    timed(kCopy, [&] { in_.reorder(src, dst); });
  }
  void cast(const Tensor& src, Tensor& dst) override {
    timed(kCast, [&] { in_.cast(src, dst); });
  }
  void cast_many(const std::vector<CastPair>& list) override {
    timed(kCast, [&] { in_.cast_many(list); });
  }
  bool all_finite(const Tensor& t) override {
    return timed(kAllFinite, [&] { return in_.all_finite(t); });
  }
  void copy_bytes(const Tensor& src, size_t src_offset, Tensor& dst, size_t dst_offset,
                  size_t bytes) override {
    timed(kCopy, [&] { in_.copy_bytes(src, src_offset, dst, dst_offset, bytes); });
  }
  void synchronize() override { in_.synchronize(); }

 private:
  Backend& in_;
  Profiler& prof_;
  bool sync_;
  int e_[kCalls];
};

// The kinds in the order a step meets them; others follow in the order their entries were made.
const char* const kKindOrder[] = {"conv forward",
                                  "conv backward-data",
                                  "conv backward-weights",
                                  "batch norm",
                                  "element-wise",
                                  "pooling",
                                  "linear",
                                  "loss",
                                  "optimizer",
                                  "casts",
                                  "loss scaling",
                                  "copies and reorders",
                                  "allocation",
                                  "planning"};

}  // namespace

std::unique_ptr<Backend> make_profiling_backend(Backend& inner, Profiler& profiler) {
  return std::make_unique<ProfilingBackend>(inner, profiler);
}

double profile_peak_gflops(Device device, DType compute, int threads) {
  return device.kind == DeviceKind::cpu && compute == DType::f32 ? cpu_fp32_peak_gflops(threads)
                                                                 : 0;
}

ProfileReport make_profile_report(const Profiler& profiler, int steps, double step_s,
                                  double peak_gflops) {
  ProfileReport r;
  r.steps = std::max(steps, 1), r.step_s = step_s, r.peak_gflops = peak_gflops;
  const double per_step = 1e3 / r.steps;
  const auto share = [&](double ms) { return step_s > 0 ? ms / (1e3 * step_s) : 0.0; };
  const auto rate = [&](double flop, double s, double& gflops, double& of_peak) {
    if (flop <= 0 || s <= 0) return;
    gflops = flop / s / 1e9;
    of_peak = peak_gflops > 0 ? gflops / peak_gflops : 0;
  };
  std::vector<std::string> order(std::begin(kKindOrder), std::end(kKindOrder));
  for (const ProfileEntry& e : profiler.entries())
    if (std::find(order.begin(), order.end(), e.kind) == order.end()) order.push_back(e.kind);
  double covered = 0;
  for (const std::string& kind : order) {
    double s = 0, flop = 0;
    int64_t calls = 0;
    for (const ProfileEntry& e : profiler.entries())
      if (e.kind == kind) s += e.seconds, flop += e.flop * e.calls, calls += e.calls;
    if (calls == 0) continue;
    ProfileKind k;
    k.kind = kind, k.ms_per_step = s * per_step, k.share = share(k.ms_per_step);
    rate(flop, s, k.gflops, k.of_peak);
    r.kinds.push_back(k);
    covered += k.ms_per_step;
  }
  if (step_s > 0) {
    ProfileKind other;
    other.kind = "other (host between calls)";
    other.ms_per_step = std::max(0.0, 1e3 * step_s - covered);
    other.share = share(other.ms_per_step);
    r.kinds.push_back(other);
  }
  std::map<int, ProfileLayer> layers;
  std::map<int, double> layer_flop, layer_s;
  for (const ProfileEntry& e : profiler.entries()) {
    if (e.layer < 0 || e.calls == 0) continue;
    ProfileLayer& l = layers[e.layer];
    l.layer = e.layer, l.what = e.what;
    const double ms = e.seconds * per_step;
    l.ms_per_step += ms;
    if (e.pass >= 0 && e.pass < 3) l.pass_ms[e.pass] += ms, l.algorithm[e.pass] = e.algorithm;
    layer_flop[e.layer] += e.flop * e.calls, layer_s[e.layer] += e.seconds;
  }
  for (auto& [i, l] : layers) {
    l.share = share(l.ms_per_step);
    rate(layer_flop[i], layer_s[i], l.gflops, l.of_peak);
    r.layers.push_back(l);
  }
  for (const ProfileEntry& e : profiler.entries()) {
    if (e.layer >= 0 || e.calls == 0) continue;
    ProfileFunction f;
    f.kind = e.kind, f.what = e.what, f.ms_per_step = e.seconds * per_step;
    f.share = share(f.ms_per_step), f.calls_per_step = static_cast<double>(e.calls) / r.steps;
    r.functions.push_back(f);
  }
  const auto slowest_first = [](const auto& a, const auto& b) {
    return a.ms_per_step > b.ms_per_step;
  };
  std::stable_sort(r.layers.begin(), r.layers.end(), slowest_first);
  std::stable_sort(r.functions.begin(), r.functions.end(), slowest_first);
  return r;
}

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

std::string profile_text(const ProfileReport& r, size_t top_layers) {
  std::string s = str_cat("  ", r.steps, " steps of ", fmt("%.4f", r.step_s), " s; ");
  s += r.peak_gflops > 0 ? str_cat("peak ", fmt("%.1f", r.peak_gflops), " GFLOP/s (fp32 FMA)\n")
                         : std::string("peak not measured here\n");
  char line[256];
  std::snprintf(line, sizeof line, "  %-28s %9s %7s %9s %8s\n", "kind", "ms/step", "share",
                "GFLOP/s", "of peak");
  s += line;
  for (const ProfileKind& k : r.kinds) {
    const std::string g = k.gflops > 0 ? fmt("%.1f", k.gflops) : "";
    const std::string p = k.of_peak > 0 ? fmt("%.1f%%", 100 * k.of_peak) : "";
    std::snprintf(line, sizeof line, "  %-28s %9.2f %6.1f%% %9s %8s\n", k.kind.c_str(),
                  k.ms_per_step, 100 * k.share, g.c_str(), p.c_str());
    s += line;
  }
  const size_t shown = std::min(top_layers, r.layers.size());
  s += str_cat("  the ", shown, " slowest of ", r.layers.size(),
               " layers (convolutions in training: forward / backward-data / backward-weights "
               "ms, w = Winograd):\n");
  double rest = 0;
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const ProfileLayer& l = r.layers[i];
    if (i >= shown) {
      rest += l.ms_per_step;
      continue;
    }
    std::string passes;
    const bool training = l.pass_ms[1] > 0 || l.pass_ms[2] > 0;
    if (l.gflops > 0) {
      for (int p = 0; p < (training ? 3 : 1); ++p)
        passes += str_cat(p ? " / " : "", fmt("%.2f", l.pass_ms[p]),
                          l.algorithm[p] == "winograd" ? "w" : "");
      passes += str_cat("  ", fmt("%.1f", l.gflops), " GFLOP/s");
      if (l.of_peak > 0) passes += str_cat(" (", fmt("%.0f%%", 100 * l.of_peak), ")");
    }
    std::snprintf(line, sizeof line, "  %3d %-34s %8.2f ms %5.1f%%  %s\n", l.layer, l.what.c_str(),
                  l.ms_per_step, 100 * l.share, passes.c_str());
    s += line;
  }
  if (shown < r.layers.size())
    s += str_cat("      the other ", r.layers.size() - shown, " layers: ", fmt("%.2f", rest),
                 " ms\n");
  std::string calls;
  for (const ProfileFunction& f : r.functions) {
    if (f.share < 0.001) continue;
    const std::string name = f.kind + ": " + f.what;
    std::snprintf(line, sizeof line, "    %-40s %8.2f ms %5.1f%%  %6.1f calls\n", name.c_str(),
                  f.ms_per_step, 100 * f.share, f.calls_per_step);
    calls += line;
  }
  if (!calls.empty()) s += "  the calls outside the layers (per step):\n" + calls;
  return s;
}

std::string profile_json(const ProfileReport& r) {
  std::string s = str_cat("{\"steps\": ", r.steps, ", \"step_s\": ", fmt("%.6f", r.step_s),
                          ", \"peak_gflops\": ", fmt("%.2f", r.peak_gflops), ", \"kinds\": [");
  for (size_t i = 0; i < r.kinds.size(); ++i) {
    const ProfileKind& k = r.kinds[i];
    s += str_cat(i ? ", " : "", "{\"kind\": \"", k.kind,
                 "\", \"ms_per_step\": ", fmt("%.4f", k.ms_per_step),
                 ", \"share\": ", fmt("%.4f", k.share), ", \"gflops\": ", fmt("%.2f", k.gflops),
                 ", \"of_peak\": ", fmt("%.4f", k.of_peak), "}");
  }
  s += "], \"layers\": [";
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const ProfileLayer& l = r.layers[i];
    s += str_cat(
        i ? ", " : "", "{\"layer\": ", l.layer, ", \"what\": \"", l.what,
        "\", \"ms_per_step\": ", fmt("%.4f", l.ms_per_step), ", \"share\": ", fmt("%.4f", l.share),
        ", \"pass_ms\": [", fmt("%.4f", l.pass_ms[0]), ", ", fmt("%.4f", l.pass_ms[1]), ", ",
        fmt("%.4f", l.pass_ms[2]), "], \"algorithm\": [\"", l.algorithm[0], "\", \"",
        l.algorithm[1], "\", \"", l.algorithm[2], "\"], \"gflops\": ", fmt("%.2f", l.gflops),
        ", \"of_peak\": ", fmt("%.4f", l.of_peak), "}");
  }
  s += "], \"functions\": [";
  for (size_t i = 0; i < r.functions.size(); ++i) {
    const ProfileFunction& f = r.functions[i];
    s += str_cat(i ? ", " : "", "{\"kind\": \"", f.kind, "\", \"what\": \"", f.what,
                 "\", \"ms_per_step\": ", fmt("%.4f", f.ms_per_step),
                 ", \"share\": ", fmt("%.4f", f.share),
                 ", \"calls_per_step\": ", fmt("%.1f", f.calls_per_step), "}");
  }
  return s + "]}";
}

}  // namespace rn

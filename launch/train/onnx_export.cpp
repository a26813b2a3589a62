// The ONNX exporter: a GraphBuilder that records the network's ops as ONNX nodes and its tensors
// as float initializers (host copies in canonical layout), optionally folds batch norms into the
// convolutions before them, then assembles, checks and writes the ModelProto.
#include "launch/train/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_map>

#include "core/check.h"

namespace rn::launch {
namespace {

using nn::GraphTensor;
using nn::GraphValue;

// A float tensor, or an int64 one (Slice's and Pad's index inputs).
struct Initializer {
  std::vector<int64_t> dims;
  std::vector<float> data;
  std::vector<int64_t> ints;
};

class OnnxBuilder final : public nn::GraphBuilder {
 public:
  explicit OnnxBuilder(Backend& backend) : backend_(backend) {}

  GraphValue input(const Shape& shape) {
    used_.insert("input");
    return value("input", shape);
  }

  GraphValue conv(const std::string& name, const GraphValue& x, const ConvParams& p,
                  const GraphTensor& weight, const GraphTensor* bias) override {
    std::vector<std::string> in{this->name(x), tensor(weight)};
    if (bias) in.push_back(tensor(*bias));
    onnx::NodeProto& n = node("Conv", name, in);
    ints(n, "kernel_shape", {p.kernel, p.kernel});
    ints(n, "strides", {p.stride, p.stride});
    ints(n, "pads", {p.pad, p.pad, p.pad, p.pad});
    ints(n, "dilations", {p.dilation, p.dilation});
    integer(n, "group", p.groups);
    return output(n, conv_output_shape(p, x.shape));
  }

  GraphValue batch_norm(const std::string& name, const GraphValue& x, const GraphTensor& gamma,
                        const GraphTensor& beta, const GraphTensor& mean, const GraphTensor& var,
                        double eps) override {
    onnx::NodeProto& n =
        node("BatchNormalization", name,
             {this->name(x), tensor(gamma), tensor(beta), tensor(mean), tensor(var)});
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name("epsilon");
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(eps));
    return output(n, x.shape);
  }

  GraphValue relu(const std::string& name, const GraphValue& x) override {
    return output(node("Relu", name, {this->name(x)}), x.shape);
  }
  GraphValue sigmoid(const std::string& name, const GraphValue& x) override {
    return output(node("Sigmoid", name, {this->name(x)}), x.shape);
  }
  GraphValue scale(const std::string& name, const GraphValue& x, float factor) override {
    const std::string f = constant(name + ".factor", factor);
    return output(node("Mul", name, {this->name(x), f}), x.shape);
  }
  GraphValue add(const std::string& name, const GraphValue& a, const GraphValue& b) override {
    return output(node("Add", name, {this->name(a), this->name(b)}), a.shape);
  }
  GraphValue mul(const std::string& name, const GraphValue& a, const GraphValue& b) override {
    return output(node("Mul", name, {this->name(a), this->name(b)}), a.shape);
  }
  GraphValue one_minus(const std::string& name, const GraphValue& x) override {
    if (one_.empty()) one_ = constant("one", 1.f);
    return output(node("Sub", name, {one_, this->name(x)}), x.shape);
  }

  GraphValue pool(const std::string& name, const GraphValue& x, const PoolParams& p) override {
    const Shape& s = x.shape;
    if (p.global) {
      RN_CHECK(p.kind == PoolKind::avg, "[export] global max pooling is not exported");
      return output(node("GlobalAveragePool", name, {this->name(x)}), Shape{s[0], s[1], 1, 1});
    }
    onnx::NodeProto& n =
        node(p.kind == PoolKind::max ? "MaxPool" : "AveragePool", name, {this->name(x)});
    ints(n, "kernel_shape", {p.kernel, p.kernel});
    ints(n, "strides", {p.stride, p.stride});
    ints(n, "pads", {p.pad, p.pad, p.pad, p.pad});
    if (p.kind == PoolKind::avg) integer(n, "count_include_pad", 1);  // as the backends average
    return output(n, Shape{s[0], s[1], (s[2] + 2 * p.pad - p.kernel) / p.stride + 1,
                           (s[3] + 2 * p.pad - p.kernel) / p.stride + 1});
  }

  GraphValue linear(const std::string& name, const GraphValue& x, const GraphTensor& weight,
                    const GraphTensor* bias) override {
    GraphValue flat = x;
    if (x.shape.rank() != 2) {
      int64_t features = 1;
      for (size_t i = 1; i < x.shape.rank(); ++i) features *= x.shape[i];
      onnx::NodeProto& f = node("Flatten", name + ".flatten", {this->name(x)});
      integer(f, "axis", 1);
      flat = output(f, Shape{x.shape[0], features});
    }
    std::vector<std::string> in{this->name(flat), tensor(weight)};
    if (bias) in.push_back(tensor(*bias));
    onnx::NodeProto& n = node("Gemm", name, in);
    integer(n, "transB", 1);
    return output(n, Shape{x.shape[0], inits_.at(in[1]).dims[0]});
  }

  GraphValue pad_shortcut(const std::string& name, const GraphValue& x, int out_channels,
                          int stride) override {
    const Shape& s = x.shape;
    GraphValue y = x;
    if (stride != 1) {
      const std::string starts = constant(name + ".starts", {0, 0});
      const std::string ends = constant(name + ".ends", {s[2], s[3]});
      const std::string axes = constant(name + ".axes", {2, 3});
      const std::string steps = constant(name + ".steps", {stride, stride});
      y = output(node("Slice", name + ".subsample", {this->name(x), starts, ends, axes, steps}),
                 Shape{s[0], s[1], (s[2] + stride - 1) / stride, (s[3] + stride - 1) / stride});
    }
    if (out_channels == s[1]) return y;
    RN_CHECK(out_channels > s[1],
             "[export] option A cannot reduce channels " << s[1] << " -> " << out_channels);
    const int64_t before = (out_channels - s[1]) / 2, after = out_channels - s[1] - before;
    const std::string pads = constant(name + ".pads", {0, before, 0, 0, 0, after, 0, 0});
    return output(node("Pad", name, {this->name(y), pads}),
                  Shape{s[0], out_channels, y.shape[2], y.shape[3]});
  }

  // Folds each BatchNormalization whose input is a Conv's output used by nothing else into the
  // Conv: w' = w s, b' = (b - mean) s + beta with s = gamma / sqrt(var + eps), in double.
  int fold_batch_norms() {
    std::unordered_map<std::string, size_t> producer;
    std::unordered_map<std::string, int> uses;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      producer[nodes_[i].output(0)] = i;
      for (const std::string& in : nodes_[i].input()) ++uses[in];
    }
    std::vector<bool> removed(nodes_.size(), false);
    int folded = 0;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const onnx::NodeProto& bn = nodes_[i];
      if (bn.op_type() != "BatchNormalization") continue;
      const auto p = producer.find(bn.input(0));
      if (p == producer.end() || nodes_[p->second].op_type() != "Conv" || uses[bn.input(0)] != 1)
        continue;
      onnx::NodeProto& conv = nodes_[p->second];
      Initializer& w = inits_.at(conv.input(1));
      const std::vector<float>& gamma = inits_.at(bn.input(1)).data;
      const std::vector<float>& beta = inits_.at(bn.input(2)).data;
      const std::vector<float>& mean = inits_.at(bn.input(3)).data;
      const std::vector<float>& var = inits_.at(bn.input(4)).data;
      const double eps = bn.attribute(0).f();
      const size_t channels = static_cast<size_t>(w.dims[0]), per = w.data.size() / channels;
      if (conv.input_size() < 3) {
        const std::string b = unique(conv.name() + ".bias");
        inits_[b] = Initializer{{w.dims[0]}, std::vector<float>(channels, 0.f), {}};
        order_.push_back(b);
        conv.add_input(b);
      }
      std::vector<float>& bias = inits_.at(conv.input(2)).data;
      for (size_t c = 0; c < channels; ++c) {
        const double s = gamma[c] / std::sqrt(static_cast<double>(var[c]) + eps);
        for (size_t k = 0; k < per; ++k)
          w.data[c * per + k] = static_cast<float>(w.data[c * per + k] * s);
        bias[c] = static_cast<float>((bias[c] - static_cast<double>(mean[c])) * s + beta[c]);
      }
      conv.set_output(0, bn.output(0));
      removed[i] = true;
      ++folded;
    }
    std::vector<onnx::NodeProto> kept;
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (!removed[i]) kept.push_back(std::move(nodes_[i]));
    nodes_ = std::move(kept);
    return folded;
  }

  // The model: `out` renamed "logits", initializers that no node reads left out.
  onnx::ModelProto model(const GraphValue& out, const OnnxExportOptions& o, const ModelUse& use,
                         const std::string& model_name) {
    const std::string out_name = name(out);
    std::set<std::string> read;
    for (onnx::NodeProto& n : nodes_) {
      for (int i = 0; i < n.output_size(); ++i)
        if (n.output(i) == out_name) n.set_output(i, "logits");
      for (const std::string& in : n.input()) read.insert(in);
    }
    onnx::ModelProto m;
    m.set_ir_version(o.opset <= 11 ? 6 : o.opset <= 14 ? 7 : 8);
    m.set_producer_name("resnet");
    m.set_producer_version(RESNET_VERSION);
    m.set_doc_string("Eval-mode " + model_name +
                     ": input N x C x H x W float32 (an image through the metadata's "
                     "'transform'), output the logits of the metadata's 'class_names'.");
    onnx::OperatorSetIdProto* opset = m.add_opset_import();
    opset->set_domain("");
    opset->set_version(o.opset);
    auto meta = [&](const std::string& k, const std::string& v) {
      onnx::StringStringEntryProto* e = m.add_metadata_props();
      e->set_key(k);
      e->set_value(v);
    };
    meta("model", model_name);
    if (!use.class_names.empty()) {
      std::string names;
      for (const std::string& c : use.class_names) names += c + "\n";
      meta("class_names", names);
    }
    if (use.has_transform) meta("transform", transform_json(use.transform));

    onnx::GraphProto* g = m.mutable_graph();
    g->set_name(model_name);
    value_info(g->add_input(), "input", values_.front().second, o.batch);
    value_info(g->add_output(), "logits", out.shape, o.batch);
    for (const std::string& k : order_) {
      if (!read.count(k)) continue;
      const Initializer& init = inits_.at(k);
      onnx::TensorProto* t = g->add_initializer();
      t->set_name(k);
      for (int64_t d : init.dims) t->add_dims(d);
      if (init.ints.empty()) {
        t->set_data_type(onnx::TensorProto::FLOAT);
        t->set_raw_data(std::string(reinterpret_cast<const char*>(init.data.data()),
                                    init.data.size() * sizeof(float)));
      } else {
        t->set_data_type(onnx::TensorProto::INT64);
        for (int64_t v : init.ints) t->add_int64_data(v);
      }
    }
    for (onnx::NodeProto& n : nodes_) *g->add_node() = std::move(n);
    nodes_.clear();
    return m;
  }

 private:
  static void value_info(onnx::ValueInfoProto* v, const std::string& name, const Shape& s,
                         int64_t batch) {
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    onnx::TensorShapeProto* shape = t->mutable_shape();
    for (size_t i = 0; i < s.rank(); ++i) {
      onnx::TensorShapeProto_Dimension* d = shape->add_dim();
      if (i == 0 && batch == 0)
        d->set_dim_param("N");
      else
        d->set_dim_value(s[i]);
    }
  }

  // `base` if no node, value or initializer has that name yet, else base_2, base_3...
  std::string unique(const std::string& base) {
    std::string n = base;
    for (int i = 2; used_.count(n); ++i) n = base + "_" + std::to_string(i);
    used_.insert(n);
    return n;
  }
  GraphValue value(const std::string& name, const Shape& shape) {
    values_.emplace_back(name, shape);
    return GraphValue{static_cast<int>(values_.size()) - 1, shape};
  }
  const std::string& name(const GraphValue& v) const { return values_.at(v.id).first; }
  onnx::NodeProto& node(const std::string& op, const std::string& name,
                        const std::vector<std::string>& inputs) {
    onnx::NodeProto& n = nodes_.emplace_back();
    n.set_op_type(op);
    n.set_name(unique(name.empty() ? op : name));
    for (const std::string& in : inputs) n.add_input(in);
    n.add_output(n.name());
    return n;
  }
  GraphValue output(const onnx::NodeProto& n, const Shape& shape) {
    return value(n.output(0), shape);
  }
  static void ints(onnx::NodeProto& n, const std::string& name, std::vector<int64_t> v) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void integer(onnx::NodeProto& n, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  // The module tensor's host copy, once per name.
  std::string tensor(const GraphTensor& t) {
    if (inits_.count(t.name)) return t.name;
    const Tensor host = backend_.download(*t.tensor);
    RN_CHECK(host.dtype() == DType::f32, "[export] " << t.name << " is not float32");
    const float* p = host.data_as<float>();
    inits_[t.name] =
        Initializer{host.shape().dims(), std::vector<float>(p, p + host.shape().numel()), {}};
    used_.insert(t.name);
    order_.push_back(t.name);
    return t.name;
  }
  std::string constant(const std::string& name, float v) {
    const std::string n = unique(name);
    inits_[n] = Initializer{{}, {v}, {}};
    order_.push_back(n);
    return n;
  }
  std::string constant(const std::string& name, std::vector<int64_t> v) {
    const std::string n = unique(name);
    inits_[n] = Initializer{{static_cast<int64_t>(v.size())}, {}, std::move(v)};
    order_.push_back(n);
    return n;
  }

 private:
  Backend& backend_;
  std::vector<std::pair<std::string, Shape>> values_;  // GraphValue::id -> name, shape
  std::vector<onnx::NodeProto> nodes_;
  std::map<std::string, Initializer> inits_;
  std::vector<std::string> order_;  // the initializers in the order they were first used
  std::set<std::string> used_;
  std::string one_;
};

}  // namespace

void check_onnx_options(const OnnxExportOptions& o) {
  RN_CHECK(o.opset >= kMinOnnxOpset && o.opset <= kMaxOnnxOpset,
           "--opset " << o.opset << " is not supported: the exporter writes opsets "
                      << kMinOnnxOpset << " to " << kMaxOnnxOpset);
  RN_CHECK(o.batch >= 0, "--batch must be a positive integer or 'dynamic', got " << o.batch);
}

OnnxExportSummary export_onnx(models::Network& net, Backend& backend, const Shape& input,
                              const ModelUse& use, const std::string& model_name,
                              const OnnxExportOptions& o, const std::string& path) {
  check_onnx_options(o);
  RN_CHECK(input.rank() == 3, "[export] the input is C x H x W, got " << input.str());
  const bool was_training = net.training();
  net.set_training(false);
  OnnxBuilder b(backend);
  const nn::GraphValue x = b.input(Shape{o.batch == 0 ? 1 : o.batch, input[0], input[1], input[2]});
  const nn::GraphValue y = net.describe(b, "", x);
  net.set_training(was_training);
  OnnxExportSummary summary;
  if (o.fold_bn) summary.folded_batch_norms = b.fold_batch_norms();
  onnx::ModelProto m = b.model(y, o, use, model_name);
  try {
    onnx::checker::check_model(m);
    onnx::shape_inference::InferShapes(m);
  } catch (const std::exception& e) {
    RN_FAIL("[export] the graph of " << model_name << " fails ONNX's checker: " << e.what());
  }
  for (const onnx::NodeProto& n : m.graph().node()) ++summary.ops[n.op_type()];
  summary.nodes = m.graph().node_size();
  summary.initializers = m.graph().initializer_size();
  for (const onnx::TensorProto& t : m.graph().initializer())
    if (t.data_type() == onnx::TensorProto::FLOAT) summary.floats += t.raw_data().size() / 4;

  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    RN_CHECK(f, "--to '" << path << "': cannot write '" << tmp << "'");
    const bool ok = m.SerializeToOstream(&f);
    f.close();
    if (!ok || !f) {
      std::remove(tmp.c_str());
      RN_FAIL("--to '" << path << "': writing failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    RN_FAIL("--to '" << path << "': cannot rename the written file into place: " << ec.message());
  }
  summary.bytes = static_cast<int64_t>(std::filesystem::file_size(path));
  return summary;
}

}  // namespace rn::launch

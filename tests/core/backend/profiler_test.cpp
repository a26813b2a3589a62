// The profiling backend: a network stepped through it computes exactly what it computes on the
// backend underneath, every layer's passes are counted once a step while the profiler is on and
// never while it is off, and the report's kinds add up to the step.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/backend/profiler.h"
#include "core/models/model_spec.h"
#include "core/nn/init.h"

namespace rn {
namespace {

// One training forward and backward of `net` on a fixed batch: the logits and every parameter
// gradient, as host tensors.
std::vector<Tensor> step(Backend& be, models::Network& net) {
  nn::InitRng rng(7);
  const Shape in{4, 1, 12, 12};
  Tensor x = be.upload(Tensor::from_vector(in, rng.normal_vector(in.numel(), 1.0)));
  Tensor labels = Tensor::zeros(Shape{4}, DType::i32);
  for (int i = 0; i < 4; ++i) labels.data_as<int32_t>()[i] = i;
  net.set_training(true);
  Tensor logits = net.forward(x);
  Tensor dlogits = be.allocate(logits.desc());
  be.softmax_cross_entropy(logits, be.upload(labels), CrossEntropyParams{}, &dlogits);
  net.backward(dlogits);
  std::vector<Tensor> out{be.download(logits)};
  for (auto& p : net.parameters()) out.push_back(be.download(p.param->grad));
  return out;
}

int64_t calls_of(const Profiler& prof, const std::string& kind, int* entries = nullptr) {
  int64_t calls = 0;
  int n = 0;
  for (const ProfileEntry& e : prof.entries())
    if (e.kind == kind) calls += e.calls, ++n;
  if (entries) *entries = n;
  return calls;
}

TEST(ProfilerTest, SameResultsAndEveryPassCountedOnce) {
  const models::ModelSpec spec = models::model_spec("resnet20", 1, 10);
  auto plain_backend = make_cpu_backend(1);
  auto plain = models::build_model(*plain_backend, spec, 3);
  auto device = make_cpu_backend(1);
  Profiler prof;
  auto profiling = make_profiling_backend(*device, prof);
  auto net = models::build_model(*profiling, spec, 3);

  const std::vector<Tensor> want = step(*plain_backend, *plain);
  step(*profiling, *net);  // plans every layer, the profiler off
  for (const ProfileEntry& e : prof.entries()) EXPECT_EQ(e.calls, 0) << e.kind << " " << e.what;
  prof.set_enabled(true);
  const std::vector<Tensor> got = step(*profiling, *net);
  prof.set_enabled(false);

  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].bytes(), want[i].bytes());
    EXPECT_EQ(std::memcmp(got[i].data(), want[i].data(), got[i].bytes()), 0) << "tensor " << i;
  }
  // ResNet-20: 19 convolutions (option A shortcuts have none) and 19 batch norms, each run
  // forward and backward once; every convolution computes its weight gradient.
  int convs = 0, bns = 0;
  EXPECT_EQ(calls_of(prof, "conv forward", &convs), 19);
  EXPECT_EQ(convs, 19);
  EXPECT_EQ(calls_of(prof, "conv backward-weights"), 19);
  EXPECT_EQ(calls_of(prof, "batch norm", &bns), 2 * 19);
  EXPECT_EQ(bns, 2 * 19);
  EXPECT_EQ(calls_of(prof, "linear"), 3);
  EXPECT_EQ(calls_of(prof, "loss"), 1);
  EXPECT_GT(calls_of(prof, "element-wise"), 0);

  double timed = 0;
  for (const ProfileEntry& e : prof.entries()) timed += e.seconds;
  ASSERT_GT(timed, 0);
  // A step twice the calls' time: "other" is the other half, the shares add up to one.
  const ProfileReport r = make_profile_report(prof, 1, 2 * timed, 100.0);
  double ms = 0, share = 0;
  for (const ProfileKind& k : r.kinds) ms += k.ms_per_step, share += k.share;
  EXPECT_NEAR(ms, 2e3 * timed, 1e-6);
  EXPECT_NEAR(share, 1.0, 1e-9);
  ASSERT_FALSE(r.kinds.empty());
  EXPECT_EQ(r.kinds.back().kind, "other (host between calls)");
  EXPECT_NEAR(r.kinds.back().ms_per_step, 1e3 * timed, 1e-6);
  EXPECT_EQ(r.kinds.front().kind, "conv forward");
  EXPECT_GT(r.kinds.front().gflops, 0);
  EXPECT_NEAR(r.kinds.front().of_peak, r.kinds.front().gflops / 100.0, 1e-12);
  // Every layer once, slowest first: 19 convolutions, 19 batch norms, the pooling, the linear.
  ASSERT_EQ(r.layers.size(), 40u);
  for (size_t i = 1; i < r.layers.size(); ++i)
    EXPECT_GE(r.layers[i - 1].ms_per_step, r.layers[i].ms_per_step);
  const std::string text = profile_text(r, 5);
  EXPECT_NE(text.find("the 5 slowest of 40 layers"), std::string::npos) << text;
  EXPECT_NE(text.find("the other 35 layers"), std::string::npos) << text;
  const std::string json = profile_json(r);
  EXPECT_NE(json.find("\"kind\": \"conv backward-data\""), std::string::npos) << json;
  // The calls outside the layers, slowest first: the adds of ResNet-20's nine residual units and
  // one more, backward, where the first unit's two input gradients meet before the stem's fused
  // batch norm and relu; the units' relu backward of their gradients' sum. The layers' and these
  // calls' time together is every call's.
  ASSERT_FALSE(r.functions.empty());
  double layers_ms = 0, functions_ms = 0;
  for (const ProfileLayer& l : r.layers) layers_ms += l.ms_per_step;
  for (size_t i = 0; i < r.functions.size(); ++i) {
    functions_ms += r.functions[i].ms_per_step;
    if (i > 0) EXPECT_GE(r.functions[i - 1].ms_per_step, r.functions[i].ms_per_step);
  }
  EXPECT_NEAR(layers_ms + functions_ms, 1e3 * timed, 1e-6);
  const auto function = [&](const std::string& what) {
    for (const ProfileFunction& f : r.functions)
      if (f.what == what) return f;
    ADD_FAILURE() << "no call " << what << " in the report";
    return ProfileFunction{};
  };
  EXPECT_EQ(function("add").calls_per_step, 10);
  EXPECT_EQ(function("add").kind, "element-wise");
  EXPECT_GT(function("relu backward of a sum").calls_per_step, 0);
  EXPECT_NE(json.find("\"what\": \"relu backward of a sum\""), std::string::npos) << json;

  prof.reset();
  step(*profiling, *net);  // off again: nothing counted
  for (const ProfileEntry& e : prof.entries()) EXPECT_EQ(e.calls, 0) << e.kind << " " << e.what;
}

}  // namespace
}  // namespace rn

// Module's shared plumbing: checks around forward/backward, parameters and their layouts.
#include "core/nn/module.h"

#include "core/check.h"

namespace rn::nn {

size_t cast_pending_grads(Backend& backend, const std::vector<Parameter*>& params) {
  std::vector<Backend::CastPair> casts;
  for (Parameter* p : params) {
    if (!p->low_grad.defined()) continue;
    RN_CHECK(p->grad.defined() && p->grad.shape() == p->low_grad.shape(),
             "[module] a pending " << dtype_name(p->low_grad.dtype())
                                   << " gradient without its f32 buffer");
    casts.push_back({&p->low_grad, &p->grad});
  }
  if (!casts.empty()) backend.cast_many(casts);
  for (Parameter* p : params) p->low_grad = Tensor();
  return casts.size();
}

void Module::set_relu_tap(const ReluTap& tap) {
  relu_tap_ = tap;
  for_each_child([&](Module& child) { child.set_relu_tap(tap); });
}

Tensor Module::forward(const Tensor& x) {
  RN_CHECK(x.defined(), "[module] forward of an undefined tensor");
  RN_CHECK(x.device() == backend_.device(), "[module] input on " << device_name(x.device())
                                                                 << ", model on "
                                                                 << device_name(backend_.device()));
  return forward_impl(x);
}

Tensor Module::backward(const Tensor& dy) {
  RN_CHECK(training_, "[module] backward in inference mode");
  RN_CHECK(dy.defined(), "[module] backward of an undefined gradient");
  return materialize(backward_sum_impl(GradSum{dy, {}}));
}

GradSum Module::backward_sum(const GradSum& dy) {
  RN_CHECK(training_, "[module] backward in inference mode");
  RN_CHECK(dy.a.defined(), "[module] backward of an undefined gradient");
  return backward_sum_impl(dy);
}

Tensor Module::materialize(const GradSum& g) {
  if (!g.b.defined() || !g.a.defined()) return g.a;
  Tensor out = backend_.allocate(g.a.desc());
  backend_.add(g.a, as_desc(g.b, g.a.desc()), out, false);
  return out;
}

Tensor Module::as_desc(const Tensor& t, const TensorDesc& want) {
  if (t.desc().same_layout(want)) return t;
  Tensor out = backend_.allocate(want);
  backend_.reorder(t, out);
  return out;
}

Parameter Module::make_parameter(const Shape& shape, const std::vector<float>& values,
                                 bool no_decay) {
  Parameter p;
  p.shape = shape;
  p.value = backend_.upload_persistent(Tensor::from_vector(shape, values));
  p.no_decay = no_decay;
  relayout(p, p.value.desc());
  return p;
}

void Module::relayout(Parameter& p, const TensorDesc& want) {
  auto move = [&](Tensor& t) {
    if (t.defined() && t.desc().same_layout(want)) return;
    Tensor moved = backend_.allocate_persistent(want);
    if (t.defined())
      backend_.reorder(t, moved);
    else
      backend_.fill(moved, 0.f);
    t = moved;
  };
  move(p.value);
  move(p.momentum);
  // A gradient in the old layout no longer matches; grad_buffer takes a new one at backward.
  if (p.grad.defined() && !p.grad.desc().same_layout(want)) p.grad = Tensor();
}

Tensor& Module::grad_buffer(Parameter& p) {
  const auto fits = [&] { return p.grad.defined() && p.grad.desc().same_layout(p.value.desc()); };
  if (!fits() && p.grad_source) p.grad = p.grad_source(p.value.desc());
  if (!fits()) p.grad = backend_.allocate(p.value.desc());
  return p.grad;
}

}  // namespace rn::nn

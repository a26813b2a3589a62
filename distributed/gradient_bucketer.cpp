// GradientBucketer: bucket assignment, packing, the asynchronous all-reduce and the averaging.
#include "distributed/gradient_bucketer.h"

#include <cstring>

#include "core/check.h"

namespace rn::distributed {

GradientBucketer::GradientBucketer(Backend& backend, Communicator& comm,
                                   std::vector<nn::NamedParameter> params, size_t bucket_bytes,
                                   size_t first_bucket_bytes)
    : backend_(backend), comm_(comm), params_(std::move(params)) {
  // Sizes come from the canonical shapes, which every rank shares, so the grouping is the same
  // everywhere whatever layout a backend later picks.
  size_t cap = first_bucket_bytes, filled = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    nn::Parameter* p = params_[k].param;
    RN_CHECK(p != nullptr, "[bucketer] parameter " << params_[k].name << " is null");
    RN_CHECK(!slots_.count(p), "[bucketer] parameter " << params_[k].name << " listed twice");
    size_t bytes = static_cast<size_t>(p->shape.numel()) * sizeof(float);
    if (buckets_.empty() || (filled > 0 && filled + bytes > cap)) {
      if (!buckets_.empty()) cap = bucket_bytes;
      buckets_.emplace_back();
      filled = 0;
    }
    Bucket& b = buckets_.back();
    slots_[p] = Slot{buckets_.size() - 1, b.members.size()};
    b.members.push_back(k);
    filled += bytes;
  }
  for (auto& b : buckets_) b.ready.assign(b.members.size(), false);
  for (auto& np : params_) np.param->on_grad_ready = [this](nn::Parameter& p) { on_ready(p); };
}

GradientBucketer::~GradientBucketer() {
  for (auto& np : params_) np.param->on_grad_ready = nullptr;
  // Requests still in flight wait in their destructors, before the buffers go.
  for (auto& b : buckets_) b.request.reset();
}

std::vector<std::string> GradientBucketer::bucket_names(size_t i) const {
  std::vector<std::string> names;
  for (size_t k : buckets_.at(i).members) names.push_back(params_[k].name);
  return names;
}

void GradientBucketer::on_ready(nn::Parameter& p) {
  auto it = slots_.find(&p);
  RN_CHECK(it != slots_.end(), "[bucketer] hook called for an unknown parameter");
  Bucket& b = buckets_[it->second.bucket];
  size_t i = it->second.index;
  RN_CHECK(!b.ready[i], "[bucketer] gradient of " << params_[b.members[i]].name
                                                  << " marked ready twice in one step");
  RN_CHECK(p.grad.defined(),
           "[bucketer] " << params_[b.members[i]].name << " marked ready without a gradient");
  b.ready[i] = true;
  ++b.num_ready;
  while (next_launch_ < buckets_.size() &&
         buckets_[next_launch_].num_ready == buckets_[next_launch_].members.size())
    launch(buckets_[next_launch_++]);
  progress();
}

void GradientBucketer::pack(Bucket& b) {
  // Gradients are copied as raw bytes: a blocked layout is the same on every rank and its padding
  // is zero, so summing the bytes of the layout sums the gradients.
  size_t total = 0;
  b.offsets.clear();
  for (size_t k : b.members) {
    const Tensor& g = params_[k].param->grad;
    RN_CHECK(g.dtype() == DType::f32, "[bucketer] gradient of " << params_[k].name << " is "
                                                                << dtype_name(g.dtype())
                                                                << ", not f32");
    b.offsets.push_back(total);
    total += g.bytes() / sizeof(float);
  }
  if (backend_.device().kind != DeviceKind::cpu) {
    // On a GPU the bucket stays on the device and the communicator (NCCL) sums it in place.
    if (!b.device_flat.defined() || b.device_flat.numel() != static_cast<int64_t>(total))
      b.device_flat = backend_.allocate_persistent(
          TensorDesc{Shape{static_cast<int64_t>(total)}, DType::f32, nullptr});
    for (size_t j = 0; j < b.members.size(); ++j) {
      const Tensor& g = params_[b.members[j]].param->grad;
      backend_.copy_bytes(g, 0, b.device_flat, b.offsets[j] * sizeof(float), g.bytes());
    }
    return;
  }
  b.flat.resize(total);
  for (size_t j = 0; j < b.members.size(); ++j) {
    const Tensor& g = params_[b.members[j]].param->grad;
    if (g.device().kind == DeviceKind::cpu) {
      std::memcpy(b.flat.data() + b.offsets[j], g.data(), g.bytes());
    } else {
      Tensor host = backend_.download(g);
      std::memcpy(b.flat.data() + b.offsets[j], host.data(), host.bytes());
    }
  }
}

void GradientBucketer::unpack(Bucket& b) {
  const float inv = 1.0f / static_cast<float>(comm_.size());
  if (b.device_flat.defined() && backend_.device().kind != DeviceKind::cpu) {
    backend_.scale(b.device_flat, inv);
    for (size_t j = 0; j < b.members.size(); ++j) {
      nn::Parameter& p = *params_[b.members[j]].param;
      backend_.copy_bytes(b.device_flat, b.offsets[j] * sizeof(float), p.grad, 0, p.grad.bytes());
    }
    return;
  }
  for (float& v : b.flat) v *= inv;
  for (size_t j = 0; j < b.members.size(); ++j) {
    nn::Parameter& p = *params_[b.members[j]].param;
    if (p.grad.device().kind == DeviceKind::cpu) {
      std::memcpy(p.grad.data(), b.flat.data() + b.offsets[j], p.grad.bytes());
    } else {
      // Device gradients travelled as plain host copies: back through upload and reorder.
      size_t n = static_cast<size_t>(p.grad.numel());
      std::vector<float> values(b.flat.begin() + b.offsets[j], b.flat.begin() + b.offsets[j] + n);
      backend_.reorder(backend_.upload(Tensor::from_vector(p.grad.shape(), values)), p.grad);
    }
  }
}

void GradientBucketer::launch(Bucket& b) {
  pack(b);
  if (backend_.device().kind != DeviceKind::cpu)
    b.request = comm_.all_reduce_sum_async(b.device_flat.data_as<float>(),
                                           static_cast<size_t>(b.device_flat.numel()));
  else
    b.request = comm_.all_reduce_sum_async(b.flat.data(), b.flat.size());
}

void GradientBucketer::progress() {
  // Open MPI moves non-blocking collectives along only inside MPI calls; testing the requests in
  // flight each time a gradient arrives keeps them going while backward computes.
  for (size_t i = 0; i < next_launch_; ++i)
    if (buckets_[i].request) buckets_[i].request->test();
}

void GradientBucketer::reset() {
  for (auto& b : buckets_) {
    b.ready.assign(b.members.size(), false);
    b.num_ready = 0;
    b.request.reset();
  }
  next_launch_ = 0;
}

void GradientBucketer::finish() {
  std::string missing;
  size_t num_missing = 0;
  for (auto& b : buckets_)
    for (size_t j = 0; j < b.members.size(); ++j)
      if (!b.ready[j]) {
        if (num_missing++ < 8)
          missing += (missing.empty() ? "" : ", ") + params_[b.members[j]].name;
      }
  if (num_missing > 0) {
    // Buckets already started were started on every rank alike; let them complete first.
    for (size_t i = 0; i < next_launch_; ++i) buckets_[i].request.reset();
    reset();
    RN_FAIL("[bucketer] " << num_missing
                          << " parameter gradient(s) never became ready in "
                             "backward: "
                          << missing << (num_missing > 8 ? ", ..." : "")
                          << " (a parameter unused by forward cannot be bucketed)");
  }
  for (auto& b : buckets_) {
    b.request->wait();
    unpack(b);
  }
  reset();
}

}  // namespace rn::distributed

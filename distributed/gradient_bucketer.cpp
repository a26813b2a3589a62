// GradientBucketer: bucket assignment, packing, the asynchronous all-reduce and the averaging.
#include "distributed/gradient_bucketer.h"

#include <cmath>
#include <cstring>

#include "core/check.h"

namespace rn::distributed {

BucketSlices bucket_slices(const std::vector<size_t>& bytes) {
  constexpr size_t kAlign = GradientBucketer::kSliceAlignBytes / sizeof(float);
  BucketSlices s;
  for (size_t b : bytes) {
    RN_CHECK(b % sizeof(float) == 0, "[bucketer] a gradient of " << b << " bytes is not f32");
    s.total = (s.total + kAlign - 1) / kAlign * kAlign;
    s.offsets.push_back(s.total);
    s.total += b / sizeof(float);
  }
  return s;
}

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
  unconfirmed_.clear();  // each request's destructor orders the device after it
  // Requests still in flight wait in their destructors, before the buffers go.
  for (auto& b : buckets_) {
    b.request.reset();
    unlend(b);
  }
}

namespace {

// A fixed slice of a bucket's buffer, handed out as a tensor's storage.
class SliceAllocator final : public Allocator {
 public:
  explicit SliceAllocator(void* slice) : slice_(slice) {}
  void* allocate(size_t) override { return slice_; }
  void release(void*, size_t) noexcept override {}

 private:
  void* slice_;
};

}  // namespace

bool GradientBucketer::is_view(const Bucket& b, size_t j) const {
  return j < b.views.size() && params_[b.members[j]].param->grad.data() == b.views[j].data();
}

bool GradientBucketer::on_device() const {
  return backend_.device().kind != DeviceKind::cpu;
}

void GradientBucketer::lend(Bucket& b) {
  const Device device = backend_.device();
  for (size_t k : b.members)
    if (params_[k].param->grad.device() != device) return;  // gradients elsewhere: copies
  float* buffer = on_device() ? b.device_flat.data_as<float>() : b.flat.data_as<float>();
  for (size_t j = 0; j < b.members.size(); ++j) {
    nn::Parameter& p = *params_[b.members[j]].param;
    const TensorDesc desc = p.grad.desc();
    b.slices.push_back(std::make_unique<SliceAllocator>(buffer + b.offsets[j]));
    b.views.emplace_back(desc, std::make_shared<Storage>(*b.slices.back(), desc.bytes(), device));
    // The slice holds this step's mean already (unpack wrote it from there); from the next step
    // on backward writes there directly.
    p.grad = b.views.back();
    p.grad_source = [view = b.views.back()](const TensorDesc& d) {
      return d.same_layout(view.desc()) ? view : Tensor();
    };
  }
}

void GradientBucketer::unlend(Bucket& b) {
  // Gradients still held as slices get buffers of their own before the slices go.
  for (size_t j = 0; j < b.views.size(); ++j) {
    nn::Parameter& p = *params_[b.members[j]].param;
    p.grad_source = nullptr;
    if (!is_view(b, j)) continue;
    if (on_device()) {
      Tensor own = backend_.allocate_persistent(p.grad.desc());
      backend_.copy_bytes(p.grad, 0, own, 0, p.grad.bytes());
      p.grad = own;
    } else {
      Tensor own(p.grad.desc(),
                 std::make_shared<Storage>(host_allocator(), p.grad.bytes(), p.grad.device()));
      std::memcpy(own.data(), p.grad.data(), p.grad.bytes());
      p.grad = own;
    }
  }
  b.views.clear();
  b.slices.clear();
}

std::vector<std::string> GradientBucketer::bucket_names(size_t i) const {
  std::vector<std::string> names;
  for (size_t k : buckets_.at(i).members) names.push_back(params_[k].name);
  return names;
}

std::vector<size_t> GradientBucketer::slice_offsets_bytes(size_t i) const {
  std::vector<size_t> bytes;
  for (size_t o : buckets_.at(i).offsets) bytes.push_back(o * sizeof(float));
  return bytes;
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
  std::vector<size_t> bytes;
  bool same = !b.views.empty();
  for (size_t j = 0; j < b.members.size(); ++j) {
    const Tensor& g = params_[b.members[j]].param->grad;
    RN_CHECK(g.dtype() == DType::f32, "[bucketer] gradient of " << params_[b.members[j]].name
                                                                << " is " << dtype_name(g.dtype())
                                                                << ", not f32");
    same = same && g.bytes() == b.views[j].bytes();
    bytes.push_back(g.bytes());
  }
  // A layout of another size no longer fits the lent slices (the buffer must not move under them).
  if (!b.views.empty() && !same) unlend(b);
  if (b.views.empty()) {
    BucketSlices slices = bucket_slices(bytes);
    b.offsets = std::move(slices.offsets);
    const TensorDesc flat{Shape{static_cast<int64_t>(slices.total)}, DType::f32, nullptr};
    // Zeros in the padding between slices, so that the sum there stays zero.
    if (!on_device()) {
      if (b.flat.numel() != flat.shape.numel()) b.flat = Tensor::zeros(flat.shape);
      std::memset(b.flat.data(), 0, b.flat.bytes());
    } else {
      if (!b.device_flat.defined() || b.device_flat.numel() != flat.shape.numel())
        b.device_flat = backend_.allocate_persistent(flat);
      backend_.fill(b.device_flat, 0.f);
    }
  }
  for (size_t j = 0; j < b.members.size(); ++j) {
    if (is_view(b, j)) continue;  // backward wrote it in place
    const Tensor& g = params_[b.members[j]].param->grad;
    float* dst = b.flat.defined() ? b.flat.data_as<float>() + b.offsets[j] : nullptr;
    if (on_device()) {
      // On a GPU the bucket stays on the device and the communicator (NCCL) sums it in place.
      backend_.copy_bytes(g, 0, b.device_flat, b.offsets[j] * sizeof(float), g.bytes());
    } else if (g.device().kind == DeviceKind::cpu) {
      std::memcpy(dst, g.data(), g.bytes());
    } else {
      Tensor host = backend_.download(g);
      std::memcpy(dst, host.data(), host.bytes());
    }
  }
}

void GradientBucketer::unpack(Bucket& b) {
  // The sum becomes the mean in place, in one pass; only gradients outside the buffer are
  // copied back.
  const float inv = 1.0f / static_cast<float>(comm_.size());
  if (on_device()) {
    backend_.scale(b.device_flat, inv);
    for (size_t j = 0; j < b.members.size(); ++j) {
      if (is_view(b, j)) continue;
      nn::Parameter& p = *params_[b.members[j]].param;
      backend_.copy_bytes(b.device_flat, b.offsets[j] * sizeof(float), p.grad, 0, p.grad.bytes());
    }
    return;
  }
  float* flat = b.flat.data_as<float>();
  for (int64_t i = 0; i < b.flat.numel(); ++i) flat[i] *= inv;
  for (size_t j = 0; j < b.members.size(); ++j) {
    if (is_view(b, j)) continue;
    nn::Parameter& p = *params_[b.members[j]].param;
    const float* src = flat + b.offsets[j];
    if (p.grad.device().kind == DeviceKind::cpu) {
      std::memcpy(p.grad.data(), src, p.grad.bytes());
    } else {
      // Device gradients travelled as plain host copies: back through upload and reorder.
      const size_t n = static_cast<size_t>(p.grad.numel());
      backend_.reorder(
          backend_.upload(Tensor::from_vector(p.grad.shape(), std::vector<float>(src, src + n))),
          p.grad);
    }
  }
}

void GradientBucketer::launch(Bucket& b) {
  // Gradients backward left in the compute type go to f32 together, the whole bucket's at once.
  std::vector<nn::Parameter*> members;
  for (size_t k : b.members) members.push_back(params_[k].param);
  nn::cast_pending_grads(backend_, members);
  pack(b);
  if (backend_.device().kind != DeviceKind::cpu)
    b.request = comm_.all_reduce_sum_async(b.device_flat.data_as<float>(),
                                           static_cast<size_t>(b.device_flat.numel()));
  else
    b.request =
        comm_.all_reduce_sum_async(b.flat.data_as<float>(), static_cast<size_t>(b.flat.numel()));
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
  confirm();
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
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    if (b.request->device_ordered()) {
      b.request->order();
      unconfirmed_.emplace_back(i, std::move(b.request));
    } else if (!b.request->wait_for(comm_.timeout_s())) {
      timed_out(i);
    }
    unpack(b);
    if (b.views.empty()) lend(b);
  }
  reset();
}

void GradientBucketer::confirm() {
  for (size_t k = 0; k < unconfirmed_.size(); ++k) {
    if (unconfirmed_[k].second->wait_for(comm_.timeout_s())) continue;
    // Back into their buckets, so that abandon() treats them as every request in flight.
    const size_t bucket = unconfirmed_[k].first;
    for (auto& [j, r] : unconfirmed_) buckets_[j].request = std::move(r);
    unconfirmed_.clear();
    timed_out(bucket);
  }
  unconfirmed_.clear();
}

void GradientBucketer::timed_out(size_t i) {
  const Bucket& b = buckets_[i];
  const size_t floats =
      static_cast<size_t>(b.device_flat.defined() ? b.device_flat.numel() : b.flat.numel());
  const double mib = std::round(floats * sizeof(float) * 100.0 / (1 << 20)) / 100;
  const std::string what =
      str_cat("gradient bucket ", i + 1, "/", buckets_.size(), " (", b.members.size(),
              " tensor(s) from ", params_[b.members.front()].name, ", ", mib, " MiB)");
  abandon();
  throw_timeout(comm_, what);
}

void GradientBucketer::abandon() {
  // The job is ending with collectives in flight that can never complete: MPI may still write
  // into their buffers, so those outlive this object (keep_until_exit).
  for (auto& b : buckets_) {
    if (!b.request) continue;
    b.request->abandon();
    b.request.reset();
    keep_until_exit(std::make_shared<Tensor>(std::move(b.flat)));
  }
}

}  // namespace rn::distributed

// Saving and restoring a training run: tensors in canonical form (plain fp32, torchvision names
// and shapes) whatever layout the backend keeps them in, and the trainer state under /trainer.
#include "launch/train/checkpointing.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>
#include <sstream>

#include "core/check.h"

namespace rn::launch {
namespace {

using io::CheckpointEntry;
using io::EntryType;

// Lends memory the caller owns to a Tensor (a Storage without an allocation of its own).
class BorrowedMemory final : public Allocator {
 public:
  explicit BorrowedMemory(void* data) : data_(data) {}
  void* allocate(size_t) override { return data_; }
  void release(void*, size_t) noexcept override {}

 private:
  void* data_;
};

// The tensor's values, plain fp32, into `dst`. On the CPU the backend reorders straight into
// `dst`: a download would allocate and zero a fresh buffer for every tensor, which costs more
// than writing the file.
void download_into(Backend& be, const Tensor& t, void* dst) {
  const size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
  if (be.device().kind != DeviceKind::cpu) {
    std::memcpy(dst, be.download(t).data(), bytes);
    return;
  }
  BorrowedMemory mem(dst);
  Tensor view(TensorDesc{t.shape(), DType::f32, nullptr},
              std::make_shared<Storage>(mem, bytes, Device{}));
  be.reorder(t, view);
}

// Plain fp32 values at `src` into `t`, in whatever layout `t` has.
void upload_into(Backend& be, const void* src, Tensor& t) {
  const size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
  BorrowedMemory mem(const_cast<void*>(src));  // only read: it is the reorder's source
  const Tensor view(TensorDesc{t.shape(), DType::f32, nullptr},
                    std::make_shared<Storage>(mem, bytes, Device{}));
  be.reorder(be.device().kind == DeviceKind::cpu ? view : be.upload(view), t);
}

CheckpointEntry tensor_entry(const std::string& path, const Shape& shape, Backend& be,
                             const Tensor* t) {
  return CheckpointEntry{
      path, shape.dims(), EntryType::f32, [&be, t](void* scratch) -> const void* {
        // A plain host tensor is written from its own memory.
        if (be.device().kind == DeviceKind::cpu && t->is_plain() && t->dtype() == DType::f32)
          return t->data();
        download_into(be, *t, scratch);
        return scratch;
      }};
}

template <typename T>
CheckpointEntry scalar_entry(const std::string& path, T value) {
  constexpr EntryType type = std::is_same_v<T, double> ? EntryType::f64 : EntryType::i64;
  return CheckpointEntry{path, {}, type, [value](void* dst) {
                           std::memcpy(dst, &value, 8);
                           return dst;
                         }};
}

template <typename T>
CheckpointEntry vector_entry(const std::string& path, std::vector<T> values,
                             std::vector<int64_t> shape) {
  constexpr EntryType type = std::is_same_v<T, double> ? EntryType::f64 : EntryType::i64;
  return CheckpointEntry{path, std::move(shape), type, [v = std::move(values)](void* dst) {
                           std::memcpy(dst, v.data(), v.size() * sizeof(T));
                           return dst;
                         }};
}

// torchvision's BatchNorm2d buffer that this code does not keep: every BN of the network runs
// once per training step, so it equals the step count.
std::string tracked_name(const std::string& running_mean) {
  const std::string suffix = "running_mean";
  if (running_mean.size() < suffix.size() ||
      running_mean.compare(running_mean.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  return running_mean.substr(0, running_mean.size() - suffix.size()) + "num_batches_tracked";
}

const io::Bytes& find(const CheckpointData& data, const std::string& key, const std::string& path) {
  auto it = data.tensors.find(key);
  if (it == data.tensors.end()) RN_FAIL("checkpoint '" << path << "': no dataset '/" << key << "'");
  return it->second;
}

template <typename T>
T scalar(const CheckpointData& data, const std::string& key, const std::string& path) {
  const auto& b = find(data, key, path);
  if (b.size() != sizeof(T))
    RN_FAIL("checkpoint '" << path << "': dataset '/" << key << "' is not a scalar");
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

template <typename T>
std::vector<T> vec(const CheckpointData& data, const std::string& key, const std::string& path,
                   size_t count) {
  const auto& b = find(data, key, path);
  if (b.size() != count * sizeof(T))
    RN_FAIL("checkpoint '" << path << "': dataset '/" << key << "' should hold " << count
                           << " values");
  std::vector<T> v(count);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

std::string listing(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size() && i < 6; ++i) os << (i ? ", " : "") << names[i];
  if (names.size() > 6) os << ", and " << names.size() - 6 << " more";
  return os.str();
}

}  // namespace

std::vector<std::vector<float>> gather_buffers(models::Network& net, Backend& be,
                                               distributed::Communicator& comm) {
  std::vector<float> mine;
  for (const auto& b : net.buffers()) {
    const Tensor h = be.download(*b.tensor);
    mine.insert(mine.end(), h.data_as<float>(), h.data_as<float>() + h.numel());
  }
  std::vector<std::vector<float>> all(comm.size());
  for (int r = 0; r < comm.size(); ++r) {
    all[r] = r == comm.rank() ? mine : std::vector<float>(mine.size());
    comm.broadcast(all[r].data(), all[r].size() * sizeof(float), r);
  }
  return all;
}

std::vector<CheckpointEntry> checkpoint_entries(models::Network& net, Backend& be,
                                                const TrainerState& st,
                                                const std::string& config_yaml, bool with_momentum,
                                                const std::vector<std::vector<float>>& rank_buffers,
                                                const ModelUse& use) {
  std::vector<CheckpointEntry> e;
  for (const auto& p : net.parameters())
    e.push_back(tensor_entry("model/" + p.name, p.param->shape, be, &p.param->value));
  // Buffers: rank 0's under /model (as PyTorch's DDP saves), every rank's under /trainer.
  const int64_t w = static_cast<int64_t>(rank_buffers.size());
  size_t offset = 0;
  for (const auto& b : net.buffers()) {
    const int64_t n = b.tensor->numel();
    const float* rank0 = rank_buffers[0].data() + offset;
    e.push_back(CheckpointEntry{"model/" + b.name, b.tensor->shape().dims(), EntryType::f32,
                                [rank0](void*) -> const void* { return rank0; }});
    if (const auto tracked = tracked_name(b.name); !tracked.empty())
      e.push_back(scalar_entry<int64_t>("model/" + tracked, st.step));
    e.push_back(CheckpointEntry{"trainer/rank_buffers/" + b.name,
                                {w, n},
                                EntryType::f32,
                                [&rank_buffers, offset, n](void* dst) {
                                  auto* out = static_cast<float*>(dst);
                                  for (const auto& row : rank_buffers)
                                    out = std::copy_n(row.data() + offset, n, out);
                                  return dst;
                                }});
    offset += static_cast<size_t>(n);
  }
  if (with_momentum)
    for (const auto& p : net.parameters())
      e.push_back(tensor_entry("optimizer/" + p.name, p.param->shape, be, &p.param->momentum));
  e.push_back(scalar_entry<int64_t>("trainer/epoch", st.epoch));
  e.push_back(scalar_entry<int64_t>("trainer/batch_in_epoch", st.batch_in_epoch));
  e.push_back(scalar_entry<int64_t>("trainer/step", st.step));
  e.push_back(scalar_entry<int64_t>("trainer/steps_per_epoch", st.steps_per_epoch));
  e.push_back(scalar_entry<int64_t>("trainer/world_size", w));
  e.push_back(scalar_entry<double>("trainer/lr", st.lr));
  e.push_back(scalar_entry<double>("trainer/loss_scale", st.loss_scale));
  e.push_back(scalar_entry<double>("trainer/train_time_s", st.train_time_s));
  e.push_back(scalar_entry<int64_t>("trainer/train_images", st.train_images));
  // One row per rank: (seed, epoch, next batch) of the counter-based data and augment RNGs.
  std::vector<int64_t> rng;
  for (int64_t r = 0; r < w; ++r)
    rng.insert(rng.end(), {static_cast<int64_t>(st.seed), st.epoch, st.batch_in_epoch});
  e.push_back(vector_entry("trainer/rng_state", rng, {w, 3}));
  e.push_back(vector_entry("trainer/metrics/loss_sum", st.loss_sum, {w}));
  e.push_back(vector_entry("trainer/metrics/correct", st.correct, {w}));
  e.push_back(vector_entry("trainer/metrics/seen", st.seen, {w}));
  e.push_back(CheckpointEntry{"config",
                              {static_cast<int64_t>(config_yaml.size())},
                              EntryType::text,
                              [&config_yaml](void*) -> const void* { return config_yaml.data(); }});
  for (auto& m : model_use_entries(use)) e.push_back(std::move(m));
  return e;
}

CheckpointSharing checkpoint_sharing(const distributed::RankEnvironment& env,
                                     const distributed::Communicator& comm,
                                     const TestHooks& hooks) {
  return CheckpointSharing{
      .one_node = env.layout_of(comm.world_ranks()).nodes == 1 && !hooks.checkpoint_broadcast,
      .write_pause_ms = hooks.checkpoint_pause_ms};
}

void save_checkpoint(const std::string& path, models::Network& net, Backend& be,
                     const TrainerState& state, const std::string& config_yaml,
                     distributed::Communicator& comm, const CheckpointSharing& sharing,
                     const ModelUse& use) {
  io::CheckpointHeader h;
  h.model = net.spec().name;
  h.world_size = comm.size();
  h.epoch = state.epoch;
  h.step = state.step;
  h.project_version = RESNET_VERSION;
  const auto rank_buffers = gather_buffers(net, be, comm);
  // HDF5's MPI-IO collectives cannot time their own waits: the whole write has the deadline.
  const distributed::SectionWatchdog watchdog(comm, "checkpoint write of '" + path + "'");
  io::write_checkpoint(
      path, h, checkpoint_entries(net, be, state, config_yaml, true, rank_buffers, use), comm,
      io::CheckpointWriteOptions{.pause_after_data_ms = sharing.write_pause_ms});
}

CheckpointData load_checkpoint(const std::string& path, distributed::Communicator& comm,
                               const CheckpointSharing& sharing) {
  CheckpointData d;
  const distributed::SectionWatchdog watchdog(comm, "checkpoint read of '" + path + "'");
  d.tensors = io::read_checkpoint(
      path, comm, io::CheckpointReadOptions{.one_node = sharing.one_node, .summary = &d.summary});
  d.use = read_model_use(d.tensors, path);
  return d;
}

namespace {

// A tensor of the network and its dataset in a checkpoint.
struct ModelTarget {
  std::string key;
  Shape shape;
  Tensor* tensor;
};

// /model (weights and BN buffers) and, `with_momentum`, /optimizer.
std::vector<ModelTarget> model_targets(models::Network& net, bool with_momentum) {
  std::vector<ModelTarget> targets;
  for (const auto& p : net.parameters()) {
    targets.push_back({"model/" + p.name, p.param->shape, &p.param->value});
    if (with_momentum)
      targets.push_back({"optimizer/" + p.name, p.param->shape, &p.param->momentum});
  }
  for (const auto& b : net.buffers())
    targets.push_back({"model/" + b.name, b.tensor->shape(), b.tensor});
  return targets;
}

}  // namespace

CheckpointData load_into_model(const std::string& path, models::Network& net, Backend& be,
                               bool with_momentum, distributed::Communicator& comm,
                               const CheckpointSharing& sharing) {
  std::map<std::string, Tensor*> homes;
  if (be.device().kind == DeviceKind::cpu)
    for (const auto& t : model_targets(net, with_momentum))
      if (t.tensor->defined() && t.tensor->is_plain() && t.tensor->dtype() == DType::f32)
        homes[t.key] = t.tensor;
  CheckpointData d;
  // Only a dataset of exactly the tensor's type and shape goes into it; any other stays apart
  // for restore_model to report.
  auto place = [&](const io::DatasetInfo& info) -> char* {
    const auto it = homes.find(info.path);
    if (it == homes.end() || info.type != io::EntryType::f32 ||
        Shape(info.shape) != it->second->shape())
      return nullptr;
    d.placed.insert(info.path);
    return static_cast<char*>(it->second->data());
  };
  {
    const distributed::SectionWatchdog watchdog(comm, "checkpoint read of '" + path + "'");
    d.tensors = io::read_checkpoint(
        path, comm,
        io::CheckpointReadOptions{
            .one_node = sharing.one_node, .summary = &d.summary, .place = place});
  }
  d.use = read_model_use(d.tensors, path);
  restore_model(d, path, net, be, with_momentum);
  return d;
}

void restore_model(const CheckpointData& data, const std::string& path, models::Network& net,
                   Backend& be, bool with_momentum) {
  const std::vector<ModelTarget> targets = model_targets(net, with_momentum);
  std::set<std::string> optional;
  for (const auto& b : net.buffers())
    if (const auto n = tracked_name(b.name); !n.empty()) optional.insert("model/" + n);
  std::set<std::string> expected;
  for (const auto& t : targets) expected.insert(t.key);
  std::map<std::string, const io::DatasetInfo*> info;
  for (const auto& d : data.summary.datasets) info[d.path] = &d;
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& t : targets) {
    auto it = info.find(t.key);
    if (it == info.end()) {
      missing.push_back(t.key);
    } else if (it->second->type != io::EntryType::f32 || Shape(it->second->shape) != t.shape) {
      std::string file_shape = Shape(it->second->shape).str();
      if (it->second->type != io::EntryType::f32)
        file_shape += std::string(" ") + io::entry_type_name(it->second->type);
      misshaped.push_back(t.key + " (model " + t.shape.str() + ", file " + file_shape + ")");
    }
  }
  for (const auto& dataset : data.summary.datasets) {
    const std::string& key = dataset.path;
    const bool tensor =
        key.rfind("model/", 0) == 0 || (with_momentum && key.rfind("optimizer/", 0) == 0);
    if (tensor && !expected.count(key) && !optional.count(key)) unexpected.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    std::ostringstream os;
    os << "checkpoint '" << path << "' (model " << data.summary.header.model
       << ") does not fit model " << net.spec().name << ":";
    if (!missing.empty()) os << " " << missing.size() << " missing (" << listing(missing) << ");";
    if (!unexpected.empty())
      os << " " << unexpected.size() << " unexpected (" << listing(unexpected) << ");";
    if (!misshaped.empty())
      os << " " << misshaped.size() << " wrongly shaped (" << listing(misshaped) << ");";
    std::string msg = os.str();
    msg.pop_back();
    throw Error(msg);
  }
  for (const auto& t : targets) {
    if (data.placed.count(t.key)) continue;  // read into place already
    // Into the tensor's own layout (oneDNN's blocked formats): a reorder, exact for fp32.
    upload_into(be, data.tensors.at(t.key).data(), *t.tensor);
  }
}

void restore_rank_buffers(const CheckpointData& data, const std::string& path, models::Network& net,
                          Backend& be, int rank, int world_size) {
  for (const auto& b : net.buffers()) {
    const int64_t n = b.tensor->numel();
    const auto& all = find(data, "trainer/rank_buffers/" + b.name, path);
    if (all.size() != static_cast<size_t>(n * world_size) * sizeof(float))
      RN_FAIL("checkpoint '" << path << "': '/trainer/rank_buffers/" << b.name << "' should hold "
                             << world_size << " x " << n << " values");
    upload_into(be, all.data() + static_cast<size_t>(rank * n) * sizeof(float), *b.tensor);
  }
}

TrainerState restore_trainer_state(const CheckpointData& data, const std::string& path, int rank,
                                   int world_size, int64_t batch_size, int64_t steps_per_epoch) {
  TrainerState s;
  s.epoch = scalar<int64_t>(data, "trainer/epoch", path);
  const int64_t batch = scalar<int64_t>(data, "trainer/batch_in_epoch", path);
  const int64_t step = scalar<int64_t>(data, "trainer/step", path);
  const int64_t old_world = scalar<int64_t>(data, "trainer/world_size", path);
  s.loss_scale = scalar<double>(data, "trainer/loss_scale", path);
  s.train_time_s = scalar<double>(data, "trainer/train_time_s", path);
  s.train_images = scalar<int64_t>(data, "trainer/train_images", path);
  if (old_world < 1) RN_FAIL("checkpoint '" << path << "': trainer/world_size " << old_world);
  const auto loss = vec<double>(data, "trainer/metrics/loss_sum", path, old_world);
  const auto correct = vec<int64_t>(data, "trainer/metrics/correct", path, old_world);
  const auto seen = vec<int64_t>(data, "trainer/metrics/seen", path, old_world);
  s.seed = static_cast<uint64_t>(vec<int64_t>(data, "trainer/rng_state", path, old_world * 3)[0]);
  s.world_size = world_size;
  s.steps_per_epoch = steps_per_epoch;
  s.loss_sum.assign(world_size, 0.0);
  s.correct.assign(world_size, 0);
  s.seen.assign(world_size, 0);
  if (old_world == world_size) {
    s.batch_in_epoch = batch;
    s.step = step;
    s.loss_sum = loss, s.correct = correct, s.seen = seen;
  } else {
    // The epoch's sample order is the same for any rank count; continue at the nearest global
    // batch boundary at or before the samples already taken.
    const int64_t taken = batch * old_world * batch_size;
    s.batch_in_epoch = std::min(taken / (world_size * batch_size), steps_per_epoch);
    s.step = s.epoch * steps_per_epoch + s.batch_in_epoch;
    for (int64_t r = 0; r < old_world; ++r)
      s.loss_sum[0] += loss[r], s.correct[0] += correct[r], s.seen[0] += seen[r];
  }
  (void)rank;
  return s;
}

}  // namespace rn::launch

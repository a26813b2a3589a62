// Loader: the prefetch ring, its worker threads, and the hand-over of batches in order.
#include "io/loader.h"

#include <algorithm>
#include <utility>

#include "core/check.h"
#include "io/counter_rng.h"

namespace rn::io {
namespace {

void size_batch(HostBatch& b, int n, const SampleShape& shape) {
  b.n = n;
  b.c = shape.channels;
  b.h = shape.height;
  b.w = shape.width;
  b.views = shape.views;
  b.bad = 0;
  // resize() keeps the capacity, so a buffer that once held a full batch never reallocates.
  b.images.resize(static_cast<size_t>(n) * shape.floats());
  b.labels.resize(static_cast<size_t>(n));
  b.indices.resize(static_cast<size_t>(n));
}

}  // namespace

Loader::Loader(const SampleSet& data, const DistributedSampler& sampler, LoaderOptions opts)
    : data_(data), sampler_(sampler), opts_(std::move(opts)), shape_(data.shape()) {
  RN_CHECK(opts_.batch_size > 0, "[loader] batch size " << opts_.batch_size);
  RN_CHECK(opts_.workers >= 0, "[loader] workers " << opts_.workers);
  RN_CHECK(opts_.prefetch >= 0, "[loader] prefetch " << opts_.prefetch);
  RN_CHECK(sampler.dataset_size() == data.size(), "[loader] sampler over "
                                                      << sampler.dataset_size()
                                                      << " samples, data set has " << data.size());

  const int64_t n = sampler_.per_rank_size();
  batches_per_epoch_ =
      opts_.drop_last ? n / opts_.batch_size : (n + opts_.batch_size - 1) / opts_.batch_size;
  if (opts_.workers == 0) return;

  // Every worker needs a slot to fill; more slots than workers lets them run ahead.
  slots_.resize(static_cast<size_t>(std::max({opts_.prefetch, opts_.workers, 1})));
  for (Slot& s : slots_) size_batch(s.batch, opts_.batch_size, shape_);
  threads_.reserve(static_cast<size_t>(opts_.workers));
  for (int i = 0; i < opts_.workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

int64_t Loader::batches_per_epoch() const {
  return batches_per_epoch_;
}

void Loader::start_epoch(int64_t epoch) {
  restart(epoch, 0);
}

void Loader::skip(int64_t batches) {
  RN_CHECK(batches >= 0, "[loader] skip " << batches);
  int64_t epoch = 0;
  {
    std::lock_guard lock(mu_);
    RN_CHECK(started_, "[loader] skip() before start_epoch()");
    epoch = epoch_;
  }
  // Restarting at the target batch discards at most `prefetch` batches already made, and
  // keeps the rule that indices_ change only while no slot is being filled.
  restart(epoch, std::min(batches, batches_per_epoch_));
}

void Loader::restart(int64_t epoch, int64_t first_batch) {
  // The permutation is computed before taking the lock, so workers keep going meanwhile.
  std::vector<int64_t> indices = sampler_.epoch_indices(epoch);
  std::unique_lock lock(mu_);
  ++generation_;
  // No new work is handed out once next_to_make_ reaches next_out_ + slots; wait for the
  // batches in flight, which finish as stale and free their slots.
  next_to_make_ = batches_per_epoch_;
  done_cv_.wait(lock, [this] { return filling_ == 0; });
  for (Slot& s : slots_) {
    s.state = SlotState::free;
    s.error = nullptr;
  }
  indices_ = std::move(indices);
  epoch_ = epoch;
  next_to_make_ = first_batch;
  next_out_ = first_batch;
  started_ = true;
  lock.unlock();
  work_cv_.notify_all();
}

int64_t Loader::make_sample(int64_t index, float* out, SampleScratch& scratch, int& bad) {
  // Enough tries that a set with a few bad files never runs out, few enough that a set of
  // nothing but bad files stops at once.
  constexpr int kTries = 16;
  int64_t use = index;
  for (int attempt = 1;; ++attempt) {
    try {
      data_.make(epoch_, use, out, scratch);
      return use;
    } catch (const BadSample& e) {
      const std::string what = data_.describe(use) + ": " + e.what();
      if (opts_.on_bad == BadSamplePolicy::error)
        RN_FAIL("bad sample " << what << " (data.on_bad_sample: error)");
      ++bad;
      {
        std::lock_guard lock(warn_mu_);
        if (warned_.insert(use).second && opts_.warn)
          opts_.warn("bad sample " + what + "; a substitute is used");
      }
      if (attempt == kTries)
        RN_FAIL("bad sample " << what << ", and so were the " << kTries - 1
                              << " substitutes drawn before it: is the data set readable?");
      // The substitute depends on (seed, epoch, index, attempt) only.
      const uint64_t h =
          counter_hash(opts_.seed, RngStream::substitute, static_cast<uint64_t>(epoch_),
                       static_cast<uint64_t>(index) * 64 + attempt);
      use = static_cast<int64_t>(h % static_cast<uint64_t>(data_.size()));
    }
  }
}

void Loader::make_batch(int64_t batch, HostBatch& out, SampleScratch& scratch) {
  const int64_t first = batch * opts_.batch_size;
  const int64_t n =
      std::min<int64_t>(opts_.batch_size, static_cast<int64_t>(indices_.size()) - first);
  size_batch(out, static_cast<int>(n), shape_);
  const size_t stride = shape_.floats();
  int bad = 0;
  data_.prepare(indices_.data() + first, static_cast<size_t>(n), scratch);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t index = indices_[static_cast<size_t>(first + i)];
    const int64_t used =
        make_sample(index, out.images.data() + static_cast<size_t>(i) * stride, scratch, bad);
    out.labels[static_cast<size_t>(i)] = data_.label(used);
    out.indices[static_cast<size_t>(i)] = used;
  }
  out.bad = bad;
  if (opts_.on_batch) opts_.on_batch(out, batch);
}

bool Loader::worker_has_work() const {
  return started_ && next_to_make_ < batches_per_epoch_ &&
         next_to_make_ < next_out_ + static_cast<int64_t>(slots_.size());
}

void Loader::worker_loop() {
  SampleScratch scratch;
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || worker_has_work(); });
    if (stop_) return;
    const int64_t batch = next_to_make_++;
    Slot& slot = slots_[static_cast<size_t>(batch % static_cast<int64_t>(slots_.size()))];
    slot.state = SlotState::filling;
    ++filling_;
    const uint64_t generation = generation_;
    lock.unlock();

    std::exception_ptr error;
    try {
      make_batch(batch, slot.batch, scratch);
    } catch (...) {
      error = std::current_exception();
    }

    lock.lock();
    --filling_;
    if (generation == generation_) {
      slot.state = SlotState::ready;
      slot.error = error;
    } else {
      slot.state = SlotState::free;  // made for an abandoned epoch
    }
    // One condition variable serves both next() and restart(); they are the same thread.
    done_cv_.notify_all();
  }
}

void Loader::copy_batch(const HostBatch& from, HostBatch& to) {
  to.n = from.n;
  to.c = from.c;
  to.h = from.h;
  to.w = from.w;
  to.views = from.views;
  to.bad = from.bad;
  // assign() reuses `to`'s capacity; the copy is ~0.4 MB per 128 Fashion-MNIST images, far
  // cheaper than making the batch, and it keeps `out`'s buffers (and any pinning) stable.
  to.images.assign(from.images.begin(), from.images.end());
  to.labels.assign(from.labels.begin(), from.labels.end());
  to.indices.assign(from.indices.begin(), from.indices.end());
}

bool Loader::next(HostBatch& out) {
  std::unique_lock lock(mu_);
  RN_CHECK(started_, "[loader] next() before start_epoch()");
  if (next_out_ >= batches_per_epoch_) return false;
  const int64_t batch = next_out_;

  if (threads_.empty()) {
    // workers = 0: make the batch here. The lock only guards the counters.
    ++next_out_;
    lock.unlock();
    make_batch(batch, out, caller_scratch_);
    return true;
  }

  Slot& slot = slots_[static_cast<size_t>(batch % static_cast<int64_t>(slots_.size()))];
  done_cv_.wait(lock, [&] { return slot.state == SlotState::ready; });
  // While this slot is `ready` and next_out_ still names it, no worker can take it, so it
  // is read without the lock.
  std::exception_ptr error = std::exchange(slot.error, nullptr);
  lock.unlock();
  if (!error) copy_batch(slot.batch, out);

  lock.lock();
  slot.state = SlotState::free;
  ++next_out_;
  lock.unlock();
  // One slot freed is one batch of new work: a single worker suffices.
  work_cv_.notify_one();
  if (error) std::rethrow_exception(error);
  return true;
}

}  // namespace rn::io

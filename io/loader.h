// Loader: worker threads turn the sampler's indices into augmented, normalised host batches.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <set>
#include <string>

#include "io/sample_set.h"
#include "io/sampler.h"

namespace rn::io {

// One batch on the host, NCHW float images ready to copy to a device.
struct HostBatch {
  int n = 0, c = 0, h = 0, w = 0;
  int views = 1;                 // evaluation with 10 crops: each sample's views in a row
  std::vector<float> images;     // n * views * c * h * w
  std::vector<int32_t> labels;   // n
  std::vector<int64_t> indices;  // n, the samples' positions in the data set (substitutes' own)
  int bad = 0;                   // samples of this batch replaced by a substitute
};

// What a sample whose file cannot be used does: replaced by another sample, drawn from
// (seed, epoch, index), so that the batch keeps its size and the run its determinism, with a
// warning naming the file; or an error that ends the job.
enum class BadSamplePolicy { substitute, error };

struct LoaderOptions {
  int batch_size = 128;
  int workers = 2;   // 0: each batch is made on the thread that calls next()
  int prefetch = 4;  // batches made ahead of the consumer (at least `workers` are kept)
  bool drop_last = true;
  BadSamplePolicy on_bad = BadSamplePolicy::substitute;
  uint64_t seed = 0;  // for substitutes; the order comes from the sampler's own seed
  // Called (from a loading thread, one call at a time) the first time a sample proves bad.
  std::function<void(const std::string&)> warn;
  // Runs on the loading thread after a batch is assembled, with the batch's number in the
  // epoch (extra preprocessing, checks); what it throws comes out of next().
  std::function<void(HostBatch&, int64_t)> on_batch;
};

// Batches come out in order, and their contents depend only on (seeds, epoch, sample index),
// never on the number of workers or on thread timing. A ring of prefetch slots, each filled
// whole by one worker, bounds memory; threads sleep on condition variables when idle.
class Loader {
 public:
  // `data` must outlive the loader.
  Loader(const SampleSet& data, const DistributedSampler& sampler, LoaderOptions opts);
  ~Loader();

  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Begins `epoch` at its first batch; an unfinished epoch is abandoned (batches being made
  // are finished and discarded).
  void start_epoch(int64_t epoch);

  // The next batch into `out`, whose buffers are reused: once they have held a full batch,
  // no call allocates. False at the end of the epoch. Rethrows what making the batch threw.
  bool next(HostBatch& out);

  int64_t batches_per_epoch() const;

  // Resumes the current epoch at batch `batches` (call right after start_epoch): what
  // follows is exactly what would have followed the first `batches` batches.
  void skip(int64_t batches);

 private:
  enum class SlotState { free, filling, ready };
  struct Slot {
    SlotState state = SlotState::free;
    HostBatch batch;
    std::exception_ptr error;
  };

  void restart(int64_t epoch, int64_t first_batch);
  void make_batch(int64_t batch, HostBatch& out, SampleScratch& scratch);
  // Makes one sample, or its substitute under BadSamplePolicy::substitute; returns the index
  // of the sample made.
  int64_t make_sample(int64_t index, float* out, SampleScratch& scratch, int& bad);
  void worker_loop();
  bool worker_has_work() const;
  static void copy_batch(const HostBatch& from, HostBatch& to);

  const SampleSet& data_;
  DistributedSampler sampler_;
  LoaderOptions opts_;
  SampleShape shape_;
  int64_t batches_per_epoch_ = 0;
  SampleScratch caller_scratch_;  // workers = 0

  std::mutex warn_mu_;
  std::set<int64_t> warned_;  // samples already reported

  // Guarded by mu_. indices_ and epoch_ change only while no slot is being filled, so
  // workers read them without the lock.
  std::mutex mu_;
  std::condition_variable work_cv_;  // workers wait for a batch to make
  std::condition_variable done_cv_;  // next() and restart() wait for workers
  bool started_ = false;
  bool stop_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> indices_;
  int64_t next_to_make_ = 0;  // the next batch a worker takes
  int64_t next_out_ = 0;      // the next batch next() returns
  int filling_ = 0;           // slots being filled right now
  uint64_t generation_ = 0;   // bumped by restart(); stale batches are discarded
  std::vector<Slot> slots_;   // batch b lives in slots_[b % slots_.size()]
  std::vector<std::thread> threads_;
};

}  // namespace rn::io

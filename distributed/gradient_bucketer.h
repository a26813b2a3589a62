// GradientBucketer: sums parameter gradients across ranks in buckets while backward is still
// running, so that communication overlaps the remaining backward computation (as PyTorch DDP).
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "core/nn/module.h"
#include "distributed/communicator.h"

namespace rn::distributed {

// Where gradients of `bytes` each start in one bucket, in floats, packed in order with every
// start rounded up to GradientBucketer::kSliceAlignBytes; `total` is the buffer's size in floats
// (the padding between slices is summed as zeros).
struct BucketSlices {
  std::vector<size_t> offsets;
  size_t total = 0;
};
BucketSlices bucket_slices(const std::vector<size_t>& bytes);

class GradientBucketer {
 public:
  static constexpr size_t kDefaultBucketBytes = size_t{25} << 20;
  static constexpr size_t kDefaultFirstBucketBytes = size_t{1} << 20;
  // Every gradient's slice starts this many bytes into its bucket (at least): the CUDA kernels
  // that update or cast many tensors read 16-byte vectors, and NCCL and cuBLAS are fastest on
  // 256-byte boundaries. Bucket buffers themselves are 256-byte (device) or 64-byte (host) aligned.
  static constexpr size_t kSliceAlignBytes = 256;

  // Buckets take the parameters in reverse order (backward produces the last layers' gradients
  // first); the first bucket is small so that communication starts early. Installs an
  // `on_grad_ready` hook on every parameter, removed again by the destructor. Gradients left
  // in the compute type (Parameter::low_grad) are cast into f32 a bucket at a time, before it is
  // summed.
  GradientBucketer(Backend& backend, Communicator& comm, std::vector<nn::NamedParameter> params,
                   size_t bucket_bytes = kDefaultBucketBytes,
                   size_t first_bucket_bytes = kDefaultFirstBucketBytes);
  ~GradientBucketer();
  GradientBucketer(const GradientBucketer&) = delete;
  GradientBucketer& operator=(const GradientBucketer&) = delete;

  // Waits for every bucket, averages (divides by the number of ranks) and writes the result back
  // into each parameter's `grad`. Throws, naming them, when some gradients never became ready,
  // and CollectiveTimeout, naming the bucket, when one waits longer than the communicator's
  // timeout. Where the device orders work after a collective (NCCL), finish() only queues the
  // waits and the mean on the GPU stream, so the optimizer's update can be queued at once, and
  // the host's timed wait (the stall watchdog) happens in confirm().
  void finish();
  // Waits, with the timeout, for the collectives finish() left to the device; nothing to do
  // otherwise. finish() confirms a previous step's first.
  void confirm();

  size_t num_buckets() const { return buckets_.size(); }
  // The parameter names of bucket `i`, in the order they are packed.
  std::vector<std::string> bucket_names(size_t i) const;
  // Where each member of bucket `i` starts, in bytes from the start of its buffer (known once a
  // step has packed it; empty before).
  std::vector<size_t> slice_offsets_bytes(size_t i) const;

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    std::vector<bool> ready;
    size_t num_ready = 0;
    Tensor flat;                  // host buffer the all-reduce works on (plain f32)
    Tensor device_flat;           // on a GPU backend, the device buffer NCCL sums instead
    std::vector<size_t> offsets;  // floats, one per member, where its gradient starts
    std::unique_ptr<Request> request;
    // Once the layouts are known (after the first step), the gradients live in the buffer
    // itself (`flat`, or `device_flat` on a GPU): each member's `grad_source` lends its slice,
    // so no copy goes in or out.
    std::vector<std::unique_ptr<Allocator>> slices;
    std::vector<Tensor> views;
  };
  struct Slot {
    size_t bucket, index;
  };

  void on_ready(nn::Parameter& p);
  void launch(Bucket& b);
  void pack(Bucket& b);
  void unpack(Bucket& b);
  void progress();
  void reset();
  void abandon();
  [[noreturn]] void timed_out(size_t bucket);
  void lend(Bucket& b);
  void unlend(Bucket& b);
  bool is_view(const Bucket& b, size_t j) const;
  bool on_device() const;  // buckets in device memory (a GPU backend)

  Backend& backend_;
  Communicator& comm_;
  std::vector<nn::NamedParameter> params_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const nn::Parameter*, Slot> slots_;
  // Buckets start in index order on every rank (collectives must be issued in one order).
  size_t next_launch_ = 0;
  // Collectives the device waits for but the host has not yet seen complete, by bucket index.
  std::vector<std::pair<size_t, std::unique_ptr<Request>>> unconfirmed_;
};

}  // namespace rn::distributed

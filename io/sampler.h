// DistributedSampler: which samples each rank visits in an epoch, and in what order.
#pragma once

#include <cstdint>
#include <vector>

namespace rn::io {

// The epoch's order is a function of (seed, epoch) only, the same on every rank and for any
// world size; rank r then takes positions r, r + W, r + 2W, ... of it. Strided rather than
// contiguous slices so that truncating to the first k batches keeps the ranks' shares even.
class DistributedSampler {
 public:
  // wrap = true (training): the order is extended by wrapping around to ceil(size / W) * W
  //   positions, so every rank gets the same number of samples and takes the same number of
  //   steps; a few samples are visited twice per epoch.
  // wrap = false (evaluation): every sample exactly once across ranks; rank sizes may differ
  //   by one.
  DistributedSampler(int64_t dataset_size, uint64_t seed, bool shuffle, int rank = 0,
                     int world_size = 1, bool wrap = true);

  // The sample indices this rank visits in `epoch`, in order.
  std::vector<int64_t> epoch_indices(int64_t epoch) const;

  // The permutation of [0, dataset_size) that all ranks slice (identity without shuffle).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // How many indices this rank gets per epoch.
  int64_t per_rank_size() const;

  int64_t dataset_size() const { return size_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  int64_t size_;
  uint64_t seed_;
  bool shuffle_;
  int rank_, world_size_;
  bool wrap_;
};

}  // namespace rn::io

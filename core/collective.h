// The collectives that code outside distributed/ may need from the job, without knowing what
// runs them (MPI across ranks, nothing for a single process): what io's checkpoints and data
// sets use. distributed::Communicator implements it; nothing here includes MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rn {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // `bytes` of `data` from rank `root` to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's `value`, in rank order.
  virtual std::vector<uint64_t> all_gather(uint64_t value) = 0;
  // Sums `data` in place across ranks.
  virtual void all_reduce_sum(double* data, size_t count) = 0;
  // For a library that runs collectives of its own on the same ranks (parallel HDF5's MPI-IO):
  // the address of the MPI_Comm under these collectives, or null where no MPI runs them. Typed
  // `const void*` so that only the library's adapter includes MPI.
  virtual const void* mpi_handle() const { return nullptr; }
};

// One process without other ranks: every collective is the identity (tools that read or write a
// checkpoint alone, tests).
class OneProcess final : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  void all_reduce_sum(double*, size_t) override {}
};

}  // namespace rn

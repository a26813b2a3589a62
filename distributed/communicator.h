// Communicator: the collectives data-parallel training needs (sum all-reduce, broadcast,
// all-gather, barrier), over MPI or within a single process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace rn::distributed {

// An operation in flight. Destroying it waits for it, so a buffer is never freed under MPI.
class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
  // Whether it is complete; also lets the library move it along (Open MPI progresses
  // non-blocking collectives only inside MPI calls).
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums `data` in place across ranks; `data` must stay alive until the request completes.
  virtual std::unique_ptr<Request> all_reduce_sum_async(float* data, size_t count) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's `value`, in rank order.
  virtual std::vector<uint64_t> all_gather(uint64_t value) = 0;
  virtual double all_reduce_sum(double v) = 0;
};

// One process: every collective is the identity.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::unique_ptr<Request> all_reduce_sum_async(float* data, size_t count) override;
  void broadcast(void* data, size_t bytes, int root) override {}
  void barrier() override {}
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  double all_reduce_sum(double v) override { return v; }
};

// MPI on a duplicate of MPI_COMM_WORLD (errors returned, not fatal, so they become rn::Error).
// Initialises MPI if nobody has, and then finalises it when destroyed. All calls must come from
// the thread that created it: Open MPI is used at its default thread level.
std::unique_ptr<Communicator> make_mpi_communicator();

// MPI when launched by mpirun (OMPI_COMM_WORLD_SIZE / PMI_SIZE set) or when MPI is already
// initialised; otherwise a single-process communicator.
std::unique_ptr<Communicator> make_communicator();

// Ends every rank of the job (MPI_Abort) when MPI is running with more than one rank, so that
// an error on one rank leaves none waiting in a collective; a no-op otherwise.
void abort_job(int code);
// This process's rank in the job: MPI's when MPI is running, else 0.
int job_rank();

}  // namespace rn::distributed

// Communicator: the collectives data-parallel training needs (sum all-reduce, broadcast,
// all-gather, barrier), over MPI or within a single process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/collective.h"

namespace rn::distributed {

// A collective that did not complete within the communicator's timeout: some rank has stalled or
// died. The job cannot continue (a collective cannot be cancelled); `main` aborts it.
class CollectiveTimeout : public Error {
 public:
  using Error::Error;
};

// An operation in flight. Destroying it waits for it, so a buffer is never freed under MPI.
class Request {
 public:
  virtual ~Request() = default;
  void wait() { wait_for(0); }
  // Waits until complete, or until `timeout_s` seconds have passed (0: no limit); returns whether
  // it completed. An operation not complete stays pending.
  virtual bool wait_for(double timeout_s) = 0;
  // Whether it is complete; also lets the library move it along (Open MPI progresses
  // non-blocking collectives only inside MPI calls).
  virtual bool test() = 0;
  // Forgets an operation that will never complete, without waiting (the job is being aborted):
  // destruction no longer blocks. Its buffer must then outlive the process.
  virtual void abandon() = 0;
  // Whether the device orders work after it (a GPU stream waits for the collective): then
  // order() is enough before the result is used there, and the host may wait for it later.
  virtual bool device_ordered() const { return false; }
  virtual void order() {}
};

// The collectives of data-parallel training: rn::Collective's (rank, size, broadcast, barrier,
// all-gather, sum), which the rest of the project sees, and the ones only training needs.
class Communicator : public Collective {
 public:
  // The job rank (MPI_COMM_WORLD's) of each of its ranks, in its rank order: a rank group's
  // place in the job, from which its node layout follows (RankEnvironment::layout_of).
  virtual std::vector<int> world_ranks() const = 0;
  // Sums `data` in place across ranks; `data` must stay alive until the request completes.
  virtual std::unique_ptr<Request> all_reduce_sum_async(float* data, size_t count) = 0;
  // The blocking collectives (broadcast, barrier, all_gather, all_reduce_sum) throw
  // CollectiveTimeout, naming what waited, when they wait longer than timeout_s() (the stall
  // watchdog).
  using Collective::all_reduce_sum;
  double all_reduce_sum(double v) {
    all_reduce_sum(&v, 1);
    return v;
  }

  // The ranks of this communicator that pass the same `color`, as a communicator of their own,
  // ranked by (`key`, rank here): an ensemble's rank groups (MPI_Comm_split). Collective.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Small messages beside the collectives (an ensemble's progress reports to rank 0). `post`
  // returns at once and the message travels in the background; `poll` returns a message that
  // has arrived from any rank (in order per sender), or nothing. Neither waits for other ranks.
  virtual void post(int dest, const std::string& message) = 0;
  virtual std::optional<std::string> poll() = 0;

  // How long any collective may wait for the other ranks; 0 waits forever.
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout_s() const { return timeout_s_; }

 private:
  double timeout_s_ = 300;
};

// Keeps `buffer` alive until the process ends, in a list that is never freed: the buffer of a
// collective abandoned on a timeout, which MPI may still write into while the job ends.
void keep_until_exit(std::shared_ptr<void> buffer);

// The watchdog's error: `what` (the collective) did not complete within comm's timeout.
std::string timeout_message(const Communicator& comm, const std::string& what);
[[noreturn]] void throw_timeout(const Communicator& comm, const std::string& what);

// The stall watchdog of a blocking section whose waits cannot be timed from inside (a
// checkpoint's HDF5 MPI-IO collectives): while the guard lives, a monitor thread waits up to
// comm.timeout_s(); a section still running then is reported as the job's error line
// (report_error, with timeout_message(comm, what)) and the job ends. A process that was itself
// stopped during the section (its monitor wakes a second late) is the one the others wait for:
// its deadline starts again instead. No monitor for a single process, nor with a timeout of 0.
class SectionWatchdog {
 public:
  // `on_timeout` (tests) replaces the report and the end of the job; it gets the message.
  using OnTimeout = std::function<void(const std::string& message)>;
  SectionWatchdog(const Communicator& comm, std::string what, OnTimeout on_timeout = nullptr);
  ~SectionWatchdog();
  SectionWatchdog(const SectionWatchdog&) = delete;
  SectionWatchdog& operator=(const SectionWatchdog&) = delete;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// One process: every collective is the identity.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<int> world_ranks() const override { return {0}; }
  std::unique_ptr<Request> all_reduce_sum_async(float* data, size_t count) override;
  void broadcast(void* data, size_t bytes, int root) override {}
  void barrier() override {}
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  void all_reduce_sum(double* data, size_t count) override {}
  using Communicator::all_reduce_sum;
  std::unique_ptr<Communicator> split(int, int) override;
  void post(int dest, const std::string& message) override;
  std::optional<std::string> poll() override;

 private:
  std::vector<std::string> inbox_;  // messages posted to this process, oldest first
};

// MPI on a duplicate of MPI_COMM_WORLD (errors returned, not fatal, so they become rn::Error).
// Initialises MPI if nobody has, and then finalises it when destroyed. All calls must come from
// the thread that created it: Open MPI is used at its default thread level.
std::unique_ptr<Communicator> make_mpi_communicator();

// MPI when a launcher started this process (mpirun, srun: their variables say so) or when MPI is
// already initialised; otherwise a single-process communicator.
std::unique_ptr<Communicator> make_communicator();

// Ends every rank of the job (MPI_Abort) when MPI is running with more than one rank, so that
// an error on one rank leaves none waiting in a collective; a no-op otherwise. The calling
// process exits with `code` after kAbortGraceS seconds even where MPI_Abort cannot reach the
// launcher (a node cut off from the job).
inline constexpr int kAbortGraceS = 10;
void abort_job(int code);
// This process's rank in the job: MPI's when MPI is running, else 0.
int job_rank();

// The job's one error line: "<prefix>[rank R] what" (no tag on rank 0) in one write(2), where
// other ranks first wait kOtherRankErrorDelayMs so that an error every rank meets is printed
// once, by rank 0; then abort_job(1). The prefix ("resnet train: error: ") is set once by main.
inline constexpr int kOtherRankErrorDelayMs = 2000;
void set_error_prefix(std::string prefix);
void report_error(const std::string& what);

}  // namespace rn::distributed

// The MPI and single-process communicators.
#include "distributed/communicator.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <list>
#include <mutex>
#include <thread>

#include "core/check.h"
#include "distributed/mpi_comm.h"

namespace rn::distributed {

namespace {

class DoneRequest final : public Request {
 public:
  bool wait_for(double) override { return true; }
  bool test() override { return true; }
  void abandon() override {}
};

// Owns an MPI_Request; a destructor that finds it still pending waits for it.
class MpiRequest final : public Request {
 public:
  MpiRequest() = default;
  MpiRequest(const MpiRequest&) = delete;
  MpiRequest& operator=(const MpiRequest&) = delete;
  ~MpiRequest() override {
    if (request_ == MPI_REQUEST_NULL) return;
    try {
      wait();
    } catch (const std::exception& e) {
      std::cerr << "[mpi] request wait in destructor failed: " << e.what() << "\n";
    }
  }
  MPI_Request* handle() { return &request_; }
  bool wait_for(double timeout_s) override {
    if (request_ == MPI_REQUEST_NULL) return true;
    if (timeout_s <= 0) {
      RN_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
      return true;
    }
    // MPI_Wait has no deadline: poll. Spin first (a step's collectives finish within
    // microseconds to milliseconds), then back off so a long wait leaves the core to others.
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(timeout_s);
    for (;;) {
      if (test()) return true;
      const auto now = Clock::now();
      if (now >= deadline) return false;
      if (now - start > std::chrono::milliseconds(10))
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      else if (now - start > std::chrono::microseconds(200))
        std::this_thread::yield();
    }
  }
  bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    RN_MPI_CHECK(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }
  void abandon() override { request_ = MPI_REQUEST_NULL; }

 private:
  MPI_Request request_ = MPI_REQUEST_NULL;
};

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// What a launcher says before MPI can: whether one started this process as a rank of a job (a
// plain run must not start MPI: a singleton MPI_Init is slow, and fails where no network is
// configured), and how many ranks Open MPI's job has (an MCA parameter read at MPI_Init depends
// on it). The one place that reads launchers' variables (Open MPI's mpirun, and PMI / PMIx for
// Slurm's srun and others); after MPI_Init everything asks MPI, or the rank environment.
struct LaunchHints {
  bool launched = false;
  int open_mpi_ranks = 0;  // 0: not Open MPI's mpirun
};
LaunchHints launch_hints() {
  LaunchHints h;
  const char* ompi = std::getenv("OMPI_COMM_WORLD_SIZE");
  h.open_mpi_ranks = ompi ? std::atoi(ompi) : 0;
  h.launched = ompi || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
  return h;
}

// Open MPI's non-blocking all-reduce (coll/libnbc) runs every message on fewer than 4 ranks as a
// binomial reduce + broadcast, which moves the whole gradient bucket through one rank: at 2
// ranks a 97.5 MiB all-reduce took 113 ms against 47 ms for MPI_Allreduce. The ring algorithm
// matches MPI_Allreduce there (libnbc picks it itself for large messages from 4 ranks on). The
// choice is an MCA parameter read at MPI_Init; a user's own setting is kept.
void prefer_ring_all_reduce() {
  const int ranks = launch_hints().open_mpi_ranks;
  if (ranks > 0 && ranks < 4)
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
}

// MPI_Init / MPI_Finalize when this process had not initialised MPI itself.
class MpiSession {
 public:
  MpiSession() {
    int initialized = 0;
    RN_MPI_CHECK(MPI_Initialized(&initialized));
    if (!initialized) {
      prefer_ring_all_reduce();
      RN_MPI_CHECK(MPI_Init(nullptr, nullptr));
      owned_ = true;
    }
  }
  ~MpiSession() {
    if (owned_ && !mpi_finalized()) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owned_ = false;
};

// A communicator of our own, so that the project's collectives never match a library's.
class MpiComm {
 public:
  explicit MpiComm(MPI_Comm parent) {
    RN_MPI_CHECK(MPI_Comm_dup(parent, &comm_));
    RN_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  }
  // The ranks of `parent` with the same color (MPI_Comm_split): a new communicator already.
  MpiComm(MPI_Comm parent, int color, int key) {
    RN_MPI_CHECK(MPI_Comm_split(parent, color, key, &comm_));
    RN_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  }
  ~MpiComm() {
    if (comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  MPI_Comm get() const { return comm_; }
  const MPI_Comm* address() const { return &comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// The tag of post/poll messages; collectives never match point-to-point messages.
constexpr int kMessageTag = 7301;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() : comm_(MPI_COMM_WORLD) { init(); }
  MpiCommunicator(MPI_Comm parent, int color, int key) : comm_(parent, color, key) { init(); }
  ~MpiCommunicator() override {
    // Small messages leave eagerly; a send still pending here is one nobody will receive.
    for (auto& s : sends_) s.request.abandon();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<int> world_ranks() const override { return world_ranks_; }

  std::unique_ptr<Request> all_reduce_sum_async(float* data, size_t count) override {
    RN_CHECK(count <= static_cast<size_t>(INT32_MAX),
             "[mpi] all-reduce of " << count << " floats exceeds MPI's int count");
    auto r = std::make_unique<MpiRequest>();
    RN_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                comm_.get(), r->handle()));
    return r;
  }
  void broadcast(void* data, size_t bytes, int root) override {
    RN_CHECK(bytes <= static_cast<size_t>(INT32_MAX),
             "[mpi] broadcast of " << bytes << " bytes exceeds MPI's int count");
    char* buf = scratch(data, bytes);
    MpiRequest r;
    RN_MPI_CHECK(MPI_Ibcast(buf, static_cast<int>(bytes), MPI_BYTE, root, comm_.get(), r.handle()));
    finish(r, [&] { return str_cat("broadcast of ", bytes, " bytes from rank ", root); });
    std::memcpy(data, buf, bytes);
  }
  void barrier() override {
    MpiRequest r;
    RN_MPI_CHECK(MPI_Ibarrier(comm_.get(), r.handle()));
    finish(r, [] { return std::string("barrier"); });
  }
  std::vector<uint64_t> all_gather(uint64_t value) override {
    char* buf = scratch(nullptr, sizeof(uint64_t) * (size_ + 1));
    std::memcpy(buf, &value, sizeof(uint64_t));
    MpiRequest r;
    RN_MPI_CHECK(MPI_Iallgather(buf, 1, MPI_UINT64_T, buf + sizeof(uint64_t), 1, MPI_UINT64_T,
                                comm_.get(), r.handle()));
    finish(r, [] { return std::string("all-gather"); });
    std::vector<uint64_t> all(size_);
    std::memcpy(all.data(), buf + sizeof(uint64_t), sizeof(uint64_t) * size_);
    return all;
  }
  void all_reduce_sum(double* data, size_t count) override {
    RN_CHECK(count <= static_cast<size_t>(INT32_MAX),
             "[mpi] all-reduce of " << count << " doubles exceeds MPI's int count");
    char* buf = scratch(data, count * sizeof(double));
    MpiRequest r;
    RN_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, static_cast<int>(count), MPI_DOUBLE, MPI_SUM,
                                comm_.get(), r.handle()));
    finish(r, [&] { return str_cat("all-reduce of ", count, " values"); });
    std::memcpy(data, buf, count * sizeof(double));
  }
  using Communicator::all_reduce_sum;
  const void* mpi_handle() const override { return comm_.address(); }

  std::unique_ptr<Communicator> split(int color, int key) override {
    auto child = std::make_unique<MpiCommunicator>(comm_.get(), color, key);
    child->set_timeout(timeout_s());
    return child;
  }

  void post(int dest, const std::string& message) override {
    RN_CHECK(dest >= 0 && dest < size_, "[mpi] post to rank " << dest << " of " << size_);
    RN_CHECK(message.size() <= static_cast<size_t>(INT32_MAX), "[mpi] message too long");
    sends_.remove_if([](PendingSend& s) { return s.request.test(); });
    auto& s = sends_.emplace_back();
    s.text = message;
    RN_MPI_CHECK(MPI_Isend(s.text.data(), static_cast<int>(s.text.size()), MPI_CHAR, dest,
                           kMessageTag, comm_.get(), s.request.handle()));
  }

  std::optional<std::string> poll() override {
    sends_.remove_if([](PendingSend& s) { return s.request.test(); });
    int arrived = 0;
    MPI_Status status;
    RN_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kMessageTag, comm_.get(), &arrived, &status));
    if (!arrived) return std::nullopt;
    int bytes = 0;
    RN_MPI_CHECK(MPI_Get_count(&status, MPI_CHAR, &bytes));
    std::string text(static_cast<size_t>(bytes), '\0');
    RN_MPI_CHECK(MPI_Recv(text.data(), bytes, MPI_CHAR, status.MPI_SOURCE, kMessageTag, comm_.get(),
                          MPI_STATUS_IGNORE));
    return text;
  }

 private:
  void init() {
    RN_MPI_CHECK(MPI_Comm_rank(comm_.get(), &rank_));
    RN_MPI_CHECK(MPI_Comm_size(comm_.get(), &size_));
    // Local: translating ranks between groups needs no other rank.
    MPI_Group mine, world;
    RN_MPI_CHECK(MPI_Comm_group(comm_.get(), &mine));
    RN_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world));
    std::vector<int> ranks(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) ranks[r] = r;
    world_ranks_.resize(ranks.size());
    RN_MPI_CHECK(MPI_Group_translate_ranks(mine, size_, ranks.data(), world, world_ranks_.data()));
    MPI_Group_free(&mine);
    MPI_Group_free(&world);
  }
  struct PendingSend {
    MpiRequest request;
    std::string text;
  };

  // The blocking collectives run as non-blocking ones so that a wait can time out, on a scratch
  // buffer of their own (reused: cross-replica batch norm calls them twice per layer and step).
  // `data` (when given) is copied into the first `bytes`.
  char* scratch(const void* data, size_t bytes) {
    if (!scratch_) scratch_ = std::make_unique<std::vector<char>>();
    if (scratch_->size() < bytes) scratch_->resize(bytes);
    if (data && bytes > 0) std::memcpy(scratch_->data(), data, bytes);
    return scratch_->data();
  }
  // On a timeout the scratch buffer outlives the request (keep_until_exit), since MPI may still
  // write into it; the message is built only then.
  template <typename Describe>
  void finish(MpiRequest& r, Describe describe) {
    if (r.wait_for(timeout_s())) return;
    r.abandon();
    keep_until_exit(std::shared_ptr<void>(std::move(scratch_)));
    throw_timeout(*this, describe());
  }

  // Declared first: the communicator is freed before MPI is finalised.
  MpiSession session_;
  MpiComm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;  // the job rank of each of its ranks
  std::unique_ptr<std::vector<char>> scratch_;
  std::list<PendingSend> sends_;  // a list: an MPI request's buffer must not move
};

}  // namespace

void keep_until_exit(std::shared_ptr<void> buffer) {
  static std::mutex mutex;
  static auto* kept = new std::vector<std::shared_ptr<void>>;  // never freed
  std::lock_guard<std::mutex> lock(mutex);
  kept->push_back(std::move(buffer));
}

std::string timeout_message(const Communicator& comm, const std::string& what) {
  return str_cat("[watchdog] rank ", comm.rank(), ": ", what, " not complete after ",
                 comm.timeout_s(),
                 " s (distributed.timeout_s): another rank has stalled or died; ending the job");
}

void throw_timeout(const Communicator& comm, const std::string& what) {
  throw CollectiveTimeout(timeout_message(comm, what));
}

struct SectionWatchdog::State {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
};

SectionWatchdog::SectionWatchdog(const Communicator& comm, std::string what, OnTimeout on_timeout) {
  if (comm.size() <= 1 || comm.timeout_s() <= 0) return;
  state_ = std::make_shared<State>();
  using Clock = std::chrono::steady_clock;
  const auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(comm.timeout_s()));
  // Detached, sharing the state: the guard's end never waits for the monitor to wake.
  std::thread([state = state_, timeout, message = timeout_message(comm, what),
               on_timeout = std::move(on_timeout)] {
    using namespace std::chrono_literals;
    {
      std::unique_lock<std::mutex> lock(state->mutex);
      Clock::time_point last = Clock::now(), deadline = last + timeout;
      for (;;) {
        const Clock::time_point wake = std::min(deadline, Clock::now() + 100ms);
        if (state->cv.wait_until(lock, wake, [&] { return state->done; })) return;
        const Clock::time_point now = Clock::now();
        // A wake-up a second late: this process itself was stopped (SIGSTOP, a frozen node)
        // and is the rank the others wait for. Their watchdogs speak; this one starts again,
        // so that the SIGCONT a launcher sends before ending the job prints nothing here.
        if (now - last > 1s) deadline = now + timeout;
        last = now;
        if (now >= deadline) break;
      }
    }
    if (on_timeout) return on_timeout(message);
    report_error(message);
    std::_Exit(1);
  }).detach();
}

SectionWatchdog::~SectionWatchdog() {
  if (!state_) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->done = true;
  state_->cv.notify_all();
}

std::unique_ptr<Request> SingleProcessCommunicator::all_reduce_sum_async(float*, size_t) {
  return std::make_unique<DoneRequest>();
}

std::unique_ptr<Communicator> SingleProcessCommunicator::split(int, int) {
  auto child = std::make_unique<SingleProcessCommunicator>();
  child->set_timeout(timeout_s());
  return child;
}

void SingleProcessCommunicator::post(int dest, const std::string& message) {
  RN_CHECK(dest == 0, "post to rank " << dest << " of a single process");
  inbox_.push_back(message);
}

std::optional<std::string> SingleProcessCommunicator::poll() {
  if (inbox_.empty()) return std::nullopt;
  std::string m = std::move(inbox_.front());
  inbox_.erase(inbox_.begin());
  return m;
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

std::unique_ptr<Communicator> make_communicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized || launch_hints().launched) return make_mpi_communicator();
  return std::make_unique<SingleProcessCommunicator>();
}

void abort_job(int code) {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size <= 1) return;
  // MPI_Abort asks the launcher to end every rank; a launcher this rank cannot reach (its node's
  // link is down) never answers, and the rank would wait in MPI_Abort forever. A bounded wait:
  // the process ends itself after kAbortGraceS whatever MPI_Abort does.
  std::thread([code] {
    std::this_thread::sleep_for(std::chrono::seconds(kAbortGraceS));
    std::_Exit(code);
  }).detach();
  MPI_Abort(MPI_COMM_WORLD, code);
}

MPI_Comm mpi_comm(const Collective& comm) {
  const void* handle = comm.mpi_handle();
  return handle ? *static_cast<const MPI_Comm*>(handle) : MPI_COMM_NULL;
}

namespace {
std::string& error_prefix() {
  static auto* prefix = new std::string("error: ");  // never freed: a monitor may print late
  return *prefix;
}
}  // namespace

void set_error_prefix(std::string prefix) {
  error_prefix() = std::move(prefix);
}

void report_error(const std::string& what) {
  const int rank = job_rank();
  // Long enough for rank 0's MPI_Abort to reach this process on a loaded machine (500 ms was
  // not, with another test's ranks on the same two cores); a rank that fails alone is reported
  // this much later.
  if (rank > 0) std::this_thread::sleep_for(std::chrono::milliseconds(kOtherRankErrorDelayMs));
  // One write(2) of the whole line: mpirun's own messages share the stream, and a line written
  // in pieces can be split by them.
  const std::string line =
      error_prefix() + (rank > 0 ? str_cat("[rank ", rank, "] ") : "") + what + "\n";
  std::cerr.flush();
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  abort_job(1);
}

int job_rank() {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace rn::distributed

// The MPI and single-process communicators.
#include "distributed/communicator.h"

#include <mpi.h>

#include <cstdlib>
#include <iostream>

#include "core/check.h"
#include "distributed/mpi_comm.h"

namespace rn::distributed {

namespace {

class DoneRequest final : public Request {
 public:
  void wait() override {}
  bool test() override { return true; }
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
  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    RN_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
  }
  bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    RN_MPI_CHECK(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }

 private:
  MPI_Request request_ = MPI_REQUEST_NULL;
};

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// MPI_Init / MPI_Finalize when this process had not initialised MPI itself.
class MpiSession {
 public:
  MpiSession() {
    int initialized = 0;
    RN_MPI_CHECK(MPI_Initialized(&initialized));
    if (!initialized) {
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
  ~MpiComm() {
    if (comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() : comm_(MPI_COMM_WORLD) {
    RN_MPI_CHECK(MPI_Comm_rank(comm_.get(), &rank_));
    RN_MPI_CHECK(MPI_Comm_size(comm_.get(), &size_));
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

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
    RN_MPI_CHECK(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_.get()));
  }
  void barrier() override { RN_MPI_CHECK(MPI_Barrier(comm_.get())); }
  std::vector<uint64_t> all_gather(uint64_t value) override {
    std::vector<uint64_t> all(size_);
    RN_MPI_CHECK(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm_.get()));
    return all;
  }
  double all_reduce_sum(double v) override {
    double out = 0;
    RN_MPI_CHECK(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, comm_.get()));
    return out;
  }
  MPI_Comm handle() const { return comm_.get(); }

 private:
  // Declared first: the communicator is freed before MPI is finalised.
  MpiSession session_;
  MpiComm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Request> SingleProcessCommunicator::all_reduce_sum_async(float*, size_t) {
  return std::make_unique<DoneRequest>();
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

std::unique_ptr<Communicator> make_communicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr ||
                  std::getenv("PMI_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
  if (initialized || launched) return make_mpi_communicator();
  return std::make_unique<SingleProcessCommunicator>();
}

void abort_job(int code) {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

MPI_Comm mpi_comm(const Communicator& comm) {
  const auto* mpi = dynamic_cast<const MpiCommunicator*>(&comm);
  return mpi ? mpi->handle() : MPI_COMM_NULL;
}

int job_rank() {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace rn::distributed

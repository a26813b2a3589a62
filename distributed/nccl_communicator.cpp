// NcclCommunicator: rank 0 creates the NCCL id, MPI broadcasts it, every rank joins with
// ncclCommInitRank. Collectives run on the communicator's own stream, after an event recorded
// on the backend's stream (so they see finished gradients) and before the backend's stream
// continues past the request's wait (so nothing reads a buffer still being reduced).
#include "distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>

#include "core/backend/cuda/cuda_backend.h"
#include "core/check.h"

namespace rn::distributed {
namespace {

bool on_device(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// One event per collective; waiting queues the dependency on the compute stream instead of
// blocking the host, so backward keeps the GPU busy while buckets are summed.
class NcclRequest final : public Request {
 public:
  NcclRequest(cudaStream_t compute, cudaStream_t comm) : compute_(compute) {
    RN_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    RN_CUDA_CHECK(cudaEventRecord(done_, comm));
  }
  ~NcclRequest() override {
    if (!done_) return;  // abandoned
    if (!waited_) RN_CUDA_CHECK_PRINT(cudaStreamWaitEvent(compute_, done_, 0));
    RN_CUDA_CHECK_PRINT(cudaEventDestroy(done_));
  }
  // The compute stream waits for the sum without blocking the host. With a timeout (the stall
  // watchdog) the host also polls the event until it completes or the deadline passes: a peer
  // that never joins would otherwise hang the GPU silently.
  bool device_ordered() const override { return true; }
  void order() override {
    if (!waited_) RN_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
    waited_ = true;
  }
  bool wait_for(double timeout_s) override {
    order();
    if (timeout_s <= 0) return true;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (!test()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return true;
  }
  bool test() override {
    const cudaError_t rc = cudaEventQuery(done_);
    if (rc == cudaErrorNotReady) return false;
    RN_CUDA_CHECK(rc);
    return true;
  }
  // The job is ending with the collective still queued: the event is left to the process's end.
  void abandon() override { done_ = nullptr; }

 private:
  cudaStream_t compute_;
  cudaEvent_t done_ = nullptr;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& host, Backend& backend) : host_(host) {
    set_timeout(host.timeout_s());
    auto* cuda = dynamic_cast<cuda::CudaBackend*>(&backend);
    RN_CHECK(cuda != nullptr, "[nccl] needs the CUDA backend, got " << backend.name());
    compute_ = cuda->context().stream();
    RN_CUDA_CHECK(cudaSetDevice(cuda->context().device()));
    ncclUniqueId id{};
    if (host.rank() == 0) RN_NCCL_CHECK(ncclGetUniqueId(&id));
    host.broadcast(&id, sizeof(id), 0);
    RN_NCCL_CHECK(ncclCommInitRank(&comm_, host.size(), id, host.rank()));
    RN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    RN_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  }

  ~NcclCommunicator() override {
    // With a collective still queued (a peer stalled or died: the watchdog's error is unwinding
    // the job) a stream synchronize and ncclCommDestroy would wait for it forever; ncclCommAbort
    // ends the queued operations and frees the communicator. Otherwise the orderly path.
    const bool graceful = !timed_out_ && std::uncaught_exceptions() == 0 && stream_ &&
                          cudaStreamQuery(stream_) == cudaSuccess;
    if (comm_) {
      const ncclResult_t rc = graceful ? ncclCommDestroy(comm_) : ncclCommAbort(comm_);
      if (rc != ncclSuccess)
        std::fprintf(stderr, "[nccl] %s: %s\n", graceful ? "ncclCommDestroy" : "ncclCommAbort",
                     ncclGetErrorString(rc));
    }
    if (!graceful) cudaGetLastError();
    if (ready_) RN_CUDA_CHECK_PRINT(cudaEventDestroy(ready_));
    if (graceful && stream_) RN_CUDA_CHECK_PRINT(cudaStreamDestroy(stream_));
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::vector<int> world_ranks() const override { return host_.world_ranks(); }
  const void* mpi_handle() const override { return host_.mpi_handle(); }

  std::unique_ptr<Request> all_reduce_sum_async(float* data, size_t count) override {
    if (!on_device(data)) return host_.all_reduce_sum_async(data, count);
    after_compute();
    RN_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat, ncclSum, comm_, stream_));
    return std::make_unique<NcclRequest>(compute_, stream_);
  }

  void broadcast(void* data, size_t bytes, int root) override {
    if (!on_device(data)) return host_.broadcast(data, bytes, root);
    after_compute();
    RN_NCCL_CHECK(ncclBroadcast(data, data, bytes, ncclChar, root, comm_, stream_));
    NcclRequest done(compute_, stream_);
    if (!done.wait_for(timeout_s())) {
      done.abandon();
      timed_out_ = true;
      throw_timeout(*this, str_cat("broadcast of ", bytes, " bytes from rank ", root));
    }
  }

  void barrier() override { host_.barrier(); }
  std::vector<uint64_t> all_gather(uint64_t value) override { return host_.all_gather(value); }
  void all_reduce_sum(double* data, size_t count) override { host_.all_reduce_sum(data, count); }
  using Communicator::all_reduce_sum;
  // Rank groups are split from the host communicator; each group makes its own NCCL one.
  std::unique_ptr<Communicator> split(int color, int key) override {
    return host_.split(color, key);
  }
  void post(int dest, const std::string& message) override { host_.post(dest, message); }
  std::optional<std::string> poll() override { return host_.poll(); }

 private:
  // The collective may start only once the compute stream has produced its input.
  void after_compute() {
    RN_CUDA_CHECK(cudaEventRecord(ready_, compute_));
    RN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }

  Communicator& host_;
  bool timed_out_ = false;  // a collective of ours never completed: abort, never wait, at the end
  ncclComm_t comm_ = nullptr;
  cudaStream_t compute_ = nullptr, stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

}  // namespace

std::string nccl_runtime_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown (ncclGetVersion failed)";
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return str_cat(v / 10000, ".", (v % 10000) / 100, ".", v % 100, " (built with ", NCCL_MAJOR, ".",
                 NCCL_MINOR, ".", NCCL_PATCH, ")");
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, Backend& backend) {
  return std::make_unique<NcclCommunicator>(host, backend);
}

}  // namespace rn::distributed

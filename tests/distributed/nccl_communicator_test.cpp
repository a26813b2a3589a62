// NcclCommunicator: all-reduce and broadcast of GPU buffers, host buffers handed to MPI, and the
// local rank that picks each rank's GPU. NCCL needs one GPU per rank, so the NCCL cases run in
// the one-rank run (every rank skips alike in the others) and only where a GPU is usable.
#include "distributed/nccl_communicator.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"

namespace rn::distributed {
namespace {

TEST(LocalRank, IsARankOfThisNode) {
  auto comm = make_communicator();
  const int local = local_rank();
  EXPECT_GE(local, 0);
  EXPECT_LT(local, comm->size());
  // All ranks of these tests run on one machine: the node's ranks are the world's.
  if (comm->size() > 1) {
    EXPECT_EQ(local, comm->rank());
  }
}

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = make_communicator();
    if (comm_->size() > 1) GTEST_SKIP() << "NCCL needs a GPU per rank; covered by the 1-rank run";
    if (!cuda_available()) GTEST_SKIP() << "no usable CUDA GPU";
    backend_ = make_cuda_backend(local_rank());
    nccl_ = make_nccl_communicator(*comm_, *backend_);
  }

  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Communicator> nccl_;
};

TEST_F(NcclTest, AllReduceAndBroadcastOnDeviceBuffers) {
  ASSERT_EQ(nccl_->size(), comm_->size());
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 13);
  Tensor t = backend_->upload(Tensor::from_vector(Shape{1000}, v));
  {
    auto req = nccl_->all_reduce_sum_async(t.data_as<float>(), 1000);
    req->wait();
  }
  EXPECT_EQ(backend_->download(t).to_vector(), v);  // one rank: the sum is the value
  nccl_->broadcast(t.data(), t.bytes(), 0);
  EXPECT_EQ(backend_->download(t).to_vector(), v);
}

TEST_F(NcclTest, HostBuffersGoToTheHostCommunicator) {
  std::vector<float> h(10, 2.f);
  nccl_->all_reduce_sum_async(h.data(), h.size())->wait();
  EXPECT_EQ(h, std::vector<float>(10, 2.f));
  EXPECT_EQ(nccl_->all_reduce_sum(1.5), 1.5 * comm_->size());
  EXPECT_EQ(nccl_->all_gather(7).size(), static_cast<size_t>(comm_->size()));
}

TEST(NcclFactory, NeedsTheCudaBackend) {
  auto comm = make_communicator();
  auto cpu = make_cpu_backend(1);
  // Built without NCCL this is the stub's error; with it, the CPU backend is refused. Either way
  // an error, on every rank alike, before any collective.
  EXPECT_THROW(make_nccl_communicator(*comm, *cpu), Error);
}

}  // namespace
}  // namespace rn::distributed

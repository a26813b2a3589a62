// Communicator: collectives give the same values on 1, 2 and 4 ranks; the single-process one is
// the identity.
#include "distributed/communicator.h"

#include <gtest/gtest.h>

#include <numeric>

namespace rn::distributed {
namespace {

TEST(Communicator, FactoryPicksMpiWhenInitialised) {
  auto comm = make_communicator();
  EXPECT_GE(comm->size(), 1);
  EXPECT_GE(comm->rank(), 0);
  EXPECT_LT(comm->rank(), comm->size());
}

TEST(Communicator, AllReduceSumAsync) {
  auto comm = make_communicator();
  const int n = comm->size(), r = comm->rank();
  // Large enough that MPI splits it into segments.
  std::vector<float> data(300000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>((r + 1) * (i % 97));
  auto req = comm->all_reduce_sum_async(data.data(), data.size());
  while (!req->test()) {
  }
  req->wait();  // waiting again on a completed request is harmless
  const float ranks_sum = static_cast<float>(n * (n + 1) / 2);
  for (size_t i = 0; i < data.size(); ++i)
    ASSERT_EQ(data[i], ranks_sum * static_cast<float>(i % 97)) << "element " << i;
}

TEST(Communicator, RequestDestructorWaits) {
  auto comm = make_communicator();
  std::vector<float> data(1000, 1.0f);
  { auto req = comm->all_reduce_sum_async(data.data(), data.size()); }
  for (float v : data) ASSERT_EQ(v, static_cast<float>(comm->size()));
}

TEST(Communicator, Broadcast) {
  auto comm = make_communicator();
  const int root = comm->size() - 1;
  std::vector<uint8_t> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<uint8_t>(comm->rank() == root ? i * 7 : 0);
  comm->broadcast(bytes.data(), bytes.size(), root);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], static_cast<uint8_t>(i * 7));
}

TEST(Communicator, AllGather) {
  auto comm = make_communicator();
  auto all = comm->all_gather(uint64_t{1000} + static_cast<uint64_t>(comm->rank()) * 3);
  ASSERT_EQ(all.size(), static_cast<size_t>(comm->size()));
  for (int i = 0; i < comm->size(); ++i) EXPECT_EQ(all[i], uint64_t{1000} + uint64_t(i) * 3);
}

TEST(Communicator, AllReduceSumDoubleAndBarrier) {
  auto comm = make_communicator();
  double sum = comm->all_reduce_sum(0.5 + comm->rank());
  const int n = comm->size();
  EXPECT_DOUBLE_EQ(sum, 0.5 * n + n * (n - 1) / 2.0);
  comm->barrier();
}

TEST(SingleProcessCommunicator, IsTheIdentity) {
  SingleProcessCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  std::vector<float> data{1, 2, 3};
  comm.all_reduce_sum_async(data.data(), data.size())->wait();
  EXPECT_EQ(data, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(comm.all_gather(7), std::vector<uint64_t>{7});
  EXPECT_EQ(comm.all_reduce_sum(2.5), 2.5);
  comm.barrier();
}

}  // namespace
}  // namespace rn::distributed

// Communicator: collectives give the same values on 1, 2 and 4 ranks; the single-process one is
// the identity; the watchdog of a blocking section.
#include "distributed/communicator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

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

// The watchdog of a blocking section, with the report replaced by a recorder: once, naming the
// section, for a section that outlives the timeout; never for one that ends in time, for a
// single process, or with a timeout of 0.
struct Reports {
  std::mutex mutex;
  std::vector<std::string> messages;
  SectionWatchdog::OnTimeout recorder() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mutex);
      messages.push_back(m);
    };
  }
  std::vector<std::string> taken() {
    std::lock_guard<std::mutex> lock(mutex);
    return messages;
  }
};

TEST(SectionWatchdog, ReportsOnceASectionThatOutlivesTheTimeout) {
  auto comm = make_communicator();
  if (comm->size() == 1) GTEST_SKIP() << "a single process has no deadline";
  // Shared with the detached monitors, which may outlive the test body.
  static Reports reports;
  comm->set_timeout(0.3);
  { const SectionWatchdog quick(*comm, "quick section", reports.recorder()); }
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_TRUE(reports.taken().empty());
  {
    const SectionWatchdog slow(*comm, "slow section", reports.recorder());
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const auto got = reports.taken();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "[watchdog] rank " + std::to_string(comm->rank()) +
                        ": slow section not complete after 0.3 s (distributed.timeout_s): another "
                        "rank has stalled or died; ending the job");
  comm->set_timeout(0);
  {
    const SectionWatchdog unlimited(*comm, "unlimited section", reports.recorder());
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  EXPECT_EQ(reports.taken().size(), 1u);
  comm->set_timeout(300);
  comm->barrier();
}

TEST(SectionWatchdog, ASingleProcessHasNoDeadline) {
  static Reports reports;
  SingleProcessCommunicator comm;
  comm.set_timeout(0.1);
  {
    const SectionWatchdog section(comm, "section", reports.recorder());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(reports.taken().empty());
}

}  // namespace
}  // namespace rn::distributed

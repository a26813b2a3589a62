// Threads per rank when train.threads is 0: the CPUs of the rank's CPU set (taskset, mpirun's
// binding) shared among the ranks of its node whose sets overlap, whatever started the ranks.
#include <regex>

#include "checkpoint_fixture.h"

namespace rn::test {
namespace {

class ThreadsTest : public CheckpointTest {
 protected:
  // The thread count each rank's backend line gives, in rank order of appearance.
  static std::vector<int> threads_of(const CommandResult& r) {
    std::vector<int> out;
    const std::regex line(R"(backend cpu \(oneDNN [0-9.]+, (\d+) threads)");
    for (std::sregex_iterator it(r.err.begin(), r.err.end(), line), end; it != end; ++it)
      out.push_back(std::stoi((*it)[1]));
    return out;
  }
  CommandResult train(const std::string& prefix) {
    return run_resnet("train " + config() + " --set train.threads=0 --set train.epochs=1 --verbose",
                      prefix);
  }
  // CPUs in this process's own CPU set.
  static int cpus() {
    const std::string n = [] {
      FILE* p = ::popen("nproc", "r");
      char buf[32] = {0};
      if (p) (void)!std::fgets(buf, sizeof buf, p), ::pclose(p);
      return std::string(buf);
    }();
    return std::max(1, std::atoi(n.c_str()));
  }
};

TEST_F(ThreadsTest, OneProcessTakesItsCpuSet) {
  auto r = train("");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(threads_of(r), std::vector<int>{cpus()}) << r.err;
  if (cpus() < 2) GTEST_SKIP() << "one CPU: taskset cannot narrow the set";
  r = train("taskset -c 0 ");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(threads_of(r), std::vector<int>{1}) << r.err;
}

TEST_F(ThreadsTest, RanksShareTheirNodesCpus) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  if (cpus() < 2) GTEST_SKIP() << "one CPU";
  // mpirun binds a job of 1 or 2 ranks to a core each: one thread each.
  auto r = train(mpirun_prefix(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(threads_of(r), std::vector<int>{1}) << r.err;
  // Unbound ranks share the node's CPUs.
  r = train(std::regex_replace(mpirun_prefix(2), std::regex("mpirun "), "mpirun --bind-to none "));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(threads_of(r), (std::vector<int>{cpus() / 2, cpus() / 2})) << r.err;
}

TEST_F(ThreadsTest, TooFewSamplesForOneBatchIsNamed) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const auto r = run_resnet("train " + config() + " --set data.synthetic_size=64", ranks(3));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(error_line(r.err).find("'data.batch_size' is 32 per rank, but 3 rank(s) share 64 "
                                   "training samples: not one batch per epoch"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace rn::test

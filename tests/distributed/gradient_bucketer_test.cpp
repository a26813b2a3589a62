// GradientBucketer: every rank ends with the mean gradient, whatever the bucket sizes, for fake
// gradients and for a real network's backward (against the shards computed one after another).
#include "distributed/gradient_bucketer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <thread>

#include "core/check.h"
#include "core/models/model_spec.h"
#include "tests/distributed/shards.h"

namespace rn::distributed {
namespace {

// Parameters with canonical shapes of a small network; gradients are integers so that sums are
// exact and every bucketing must give bit-identical means.
struct FakeParameters {
  std::deque<nn::Parameter> storage;
  std::vector<nn::NamedParameter> named;
  explicit FakeParameters(int rank) {
    const std::vector<Shape> shapes{{16, 3, 3, 3}, {16},     {16}, {32, 16, 3, 3},
                                    {32},          {10, 32}, {10}};
    for (size_t k = 0; k < shapes.size(); ++k) {
      nn::Parameter& p = storage.emplace_back();
      p.shape = shapes[k];
      p.value = Tensor::zeros(shapes[k]);
      p.grad = Tensor::zeros(shapes[k]);
      float* g = p.grad.data_as<float>();
      for (int64_t i = 0; i < p.grad.numel(); ++i)
        g[i] = static_cast<float>((rank + 1) * int(k + 1) + int(i % 13));
      named.push_back({str_cat("p", k), &p});
    }
  }
  static float expected(int ranks, size_t k, int64_t i) {
    float sum = static_cast<float>(ranks * (ranks + 1) / 2 * int(k + 1) + ranks * int(i % 13));
    return sum * (1.0f / static_cast<float>(ranks));
  }
};

std::vector<std::vector<float>> run_fake(Communicator& comm, size_t bucket_bytes,
                                         size_t first_bucket_bytes, size_t* num_buckets) {
  auto backend = make_cpu_backend(1);
  FakeParameters fake(comm.rank());
  GradientBucketer bucketer(*backend, comm, fake.named, bucket_bytes, first_bucket_bytes);
  *num_buckets = bucketer.num_buckets();
  for (size_t k = fake.storage.size(); k-- > 0;) fake.storage[k].mark_ready();
  bucketer.finish();
  std::vector<std::vector<float>> out;
  for (auto& p : fake.storage) out.push_back(p.grad.to_vector());
  return out;
}

TEST(GradientBucketer, MeanOfFakeGradientsForAnyBucketSize) {
  auto comm = make_communicator();
  size_t one_each = 0, one_bucket = 0, defaults = 0;
  auto a = run_fake(*comm, 1, 1, &one_each);
  auto b = run_fake(*comm, size_t{1} << 40, size_t{1} << 40, &one_bucket);
  auto c = run_fake(*comm, GradientBucketer::kDefaultBucketBytes,
                    GradientBucketer::kDefaultFirstBucketBytes, &defaults);
  EXPECT_EQ(one_each, 7u);
  EXPECT_EQ(one_bucket, 1u);
  EXPECT_EQ(defaults, 1u);  // 22 KiB fit the first bucket
  for (size_t k = 0; k < a.size(); ++k)
    for (size_t i = 0; i < a[k].size(); ++i) {
      ASSERT_EQ(a[k][i], FakeParameters::expected(comm->size(), k, int64_t(i))) << k << "," << i;
      ASSERT_EQ(b[k][i], a[k][i]);
      ASSERT_EQ(c[k][i], a[k][i]);
    }
}

// After the first step every gradient lives in its bucket's buffer (lent through grad_source),
// so backward writes where the all-reduce reads; the means stay exact, and gradients still held
// when the bucketer goes keep their values.
TEST(GradientBucketer, LentBuffersAverageInPlaceAndOutliveTheBucketer) {
  auto comm = make_communicator();
  auto backend = make_cpu_backend(1);
  FakeParameters fake(comm->rank());
  auto bucketer = std::make_unique<GradientBucketer>(*backend, *comm, fake.named, 2000, 1400);
  const auto expect_means = [&] {
    for (size_t k = 0; k < fake.storage.size(); ++k) {
      auto g = fake.storage[k].grad.to_vector();
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_EQ(g[i], FakeParameters::expected(comm->size(), k, int64_t(i))) << k << "," << i;
    }
  };
  for (size_t k = fake.storage.size(); k-- > 0;) fake.storage[k].mark_ready();
  bucketer->finish();
  expect_means();
  FakeParameters fresh(comm->rank());  // this rank's gradients again
  for (size_t k = fake.storage.size(); k-- > 0;) {
    nn::Parameter& p = fake.storage[k];
    ASSERT_TRUE(p.grad_source) << k;
    Tensor lent = p.grad_source(p.grad.desc());
    ASSERT_TRUE(lent.defined()) << k;
    EXPECT_EQ(lent.data(), p.grad.data()) << k;  // the slice it already holds
    std::memcpy(lent.data(), fresh.storage[k].grad.data(), lent.bytes());
    p.grad = lent;
    p.mark_ready();
  }
  bucketer->finish();
  expect_means();
  bucketer.reset();
  for (auto& p : fake.storage) EXPECT_FALSE(p.grad_source);
  expect_means();
}

// Gradients that backward left in bf16 (Parameter::low_grad, as a GPU's convolutions do) are
// cast into their f32 buffers a bucket at a time, as the bucket completes and before it is
// summed; the second step casts into the lent slices.
TEST(GradientBucketer, PendingLowPrecisionGradientsAreCastWithTheirBucket) {
  auto comm = make_communicator();
  auto backend = make_cpu_backend(1);
  FakeParameters fake(comm->rank()), fresh(comm->rank());
  GradientBucketer bucketer(*backend, *comm, fake.named, 2000, 1400);
  ASSERT_EQ(bucketer.bucket_names(0), (std::vector<std::string>{"p6", "p5"}));
  for (int step = 1; step <= 2; ++step) {
    for (size_t k = 0; k < fake.storage.size(); ++k) {
      nn::Parameter& p = fake.storage[k];
      p.low_grad = backend->allocate(TensorDesc{p.shape, DType::bf16, nullptr});
      backend->cast(fresh.storage[k].grad, p.low_grad);            // small integers: exact in bf16
      std::fill_n(p.grad.data_as<float>(), p.grad.numel(), -1.f);  // last step's, stale
    }
    for (size_t k = fake.storage.size(); k-- > 0;) {
      fake.storage[k].mark_ready();
      EXPECT_EQ(fake.storage[6].low_grad.defined(), k == 6)
          << "step " << step << ": the first bucket casts when p5 completes it";
      EXPECT_TRUE(fake.storage[0].low_grad.defined() || k == 0) << step;
    }
    bucketer.finish();
    for (size_t k = 0; k < fake.storage.size(); ++k) {
      EXPECT_FALSE(fake.storage[k].low_grad.defined()) << k;
      auto g = fake.storage[k].grad.to_vector();
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_EQ(g[i], FakeParameters::expected(comm->size(), k, int64_t(i)))
            << "step " << step << ", p" << k << "[" << i << "]";
    }
  }
}

TEST(GradientBucketer, BucketsFollowReverseOrderWithASmallFirstBucket) {
  SingleProcessCommunicator comm;
  auto backend = make_cpu_backend(1);
  FakeParameters fake(0);
  // 1728 B, 64, 64, 18432, 128, 1280, 40: first bucket <= 1400 B, then <= 2000 B;
  // a parameter larger than a bucket gets one of its own.
  GradientBucketer bucketer(*backend, comm, fake.named, 2000, 1400);
  ASSERT_EQ(bucketer.num_buckets(), 4u);
  EXPECT_EQ(bucketer.bucket_names(0), (std::vector<std::string>{"p6", "p5"}));
  EXPECT_EQ(bucketer.bucket_names(1), (std::vector<std::string>{"p4"}));
  EXPECT_EQ(bucketer.bucket_names(2), (std::vector<std::string>{"p3"}));
  EXPECT_EQ(bucketer.bucket_names(3), (std::vector<std::string>{"p2", "p1", "p0"}));
}

// Every slice starts on a 256-byte boundary of its bucket, whatever sizes come before it.
TEST(GradientBucketer, SlicesStartOn256ByteBoundaries) {
  const BucketSlices s = bucket_slices({40, 2560, 4, 256, 1028, 0, 12});
  EXPECT_EQ(s.offsets, (std::vector<size_t>{0, 64, 704, 768, 832, 1152, 1152}));
  EXPECT_EQ(s.total, 1155u);
  EXPECT_THROW(bucket_slices({6}), Error);
}

// Every network of the zoo (10 classes, so that fc.bias is 40 bytes, as in ResNet-20 where it
// once put fc.weight at byte 40), for bucket sizes from one parameter per bucket to one bucket
// for all: after a step every gradient lives in its bucket at a 256-byte offset, and the
// bucket's host buffer is 64-byte aligned, so every lent slice is (the CUDA kernels that update
// and cast many tensors read 16-byte vectors from them). The layouts do not depend on the
// number of ranks: checked on one.
TEST(GradientBucketer, EverySliceOfEveryZooNetworkIsAligned) {
  auto comm = make_communicator();
  if (comm->size() != 1) GTEST_SKIP() << "the same on every number of ranks: run on one";
  auto backend = make_cpu_backend(1);
  const std::vector<std::pair<size_t, size_t>> sizes{
      {1, 1},
      {1000, 600},
      {size_t{100} << 10, size_t{10} << 10},
      {GradientBucketer::kDefaultBucketBytes, GradientBucketer::kDefaultFirstBucketBytes},
      {size_t{1} << 40, size_t{1} << 40}};
  for (const std::string& name : models::known_models()) {
    std::vector<Shape> shapes;
    {
      auto net = models::build_model_uninitialised(*backend, models::model_spec(name, 3, 10));
      for (const auto& np : net->parameters()) shapes.push_back(np.param->shape);
    }
    // The gradients are allocated once: each bucketer hands them back as buffers of their own.
    std::deque<nn::Parameter> storage;
    std::vector<nn::NamedParameter> named;
    for (size_t k = 0; k < shapes.size(); ++k) {
      nn::Parameter& p = storage.emplace_back();
      p.shape = shapes[k];
      p.grad = Tensor::zeros(shapes[k]);
      named.push_back({str_cat("p", k), &p});
    }
    for (const auto& [bucket, first] : sizes) {
      SingleProcessCommunicator single;
      GradientBucketer bucketer(*backend, single, named, bucket, first);
      for (size_t k = storage.size(); k-- > 0;) storage[k].mark_ready();
      bucketer.finish();
      const std::string what = str_cat(name, ", buckets of ", bucket, " B (first ", first, " B)");
      size_t members = 0;
      for (size_t b = 0; b < bucketer.num_buckets(); ++b) {
        const std::vector<size_t> offsets = bucketer.slice_offsets_bytes(b);
        const std::vector<std::string> names = bucketer.bucket_names(b);
        ASSERT_EQ(offsets.size(), names.size()) << what;
        members += offsets.size();
        // The gradients are the lent slices themselves: they lie in the buffer at the offsets.
        const auto* first_grad =
            static_cast<const char*>(storage[std::stoul(names[0].substr(1))].grad.data());
        for (size_t j = 0; j < offsets.size(); ++j) {
          ASSERT_EQ(offsets[j] % GradientBucketer::kSliceAlignBytes, 0u) << what;
          const auto* grad =
              static_cast<const char*>(storage[std::stoul(names[j].substr(1))].grad.data());
          ASSERT_EQ(static_cast<size_t>(grad - first_grad), offsets[j] - offsets[0])
              << what << ", " << names[j];
        }
      }
      ASSERT_EQ(members, storage.size()) << what;
      for (const nn::Parameter& p : storage)
        ASSERT_EQ(reinterpret_cast<uintptr_t>(p.grad.data()) % 64, 0u) << what;
    }
  }
}

TEST(GradientBucketer, ReadyOutOfOrderStillAverages) {
  auto comm = make_communicator();
  auto backend = make_cpu_backend(1);
  FakeParameters fake(comm->rank());
  GradientBucketer bucketer(*backend, *comm, fake.named, 1, 1);
  for (auto& p : fake.storage) p.mark_ready();  // forward order: last bucket first
  bucketer.finish();
  for (size_t k = 0; k < fake.storage.size(); ++k) {
    auto g = fake.storage[k].grad.to_vector();
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_EQ(g[i], FakeParameters::expected(comm->size(), k, int64_t(i)));
  }
}

TEST(GradientBucketer, GradientNeverReadyIsAnErrorNamingIt) {
  auto comm = make_communicator();
  auto backend = make_cpu_backend(1);
  FakeParameters fake(comm->rank());
  GradientBucketer bucketer(*backend, *comm, fake.named, 1, 1);
  for (size_t k = 0; k < fake.storage.size(); ++k)
    if (k != 3) fake.storage[k].mark_ready();
  try {
    bucketer.finish();
    FAIL() << "finish() should have thrown";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("p3"), std::string::npos) << e.what();
  }
  // The next step starts clean.
  for (size_t k = fake.storage.size(); k-- > 0;) fake.storage[k].mark_ready();
  bucketer.finish();
}

// The stall watchdog: rank 1 reaches the all-reduce 2 s late; rank 0, with a 0.5 s timeout, gives
// up naming the bucket it waits on. (In a job that error ends every rank; here rank 1 then joins
// and the collective completes, so the next tests run normally.)
TEST(GradientBucketer, LateRankTripsTheWatchdogNamingTheBucket) {
  auto comm = make_communicator();
  if (comm->size() == 1) GTEST_SKIP() << "needs 2 ranks";
  auto backend = make_cpu_backend(1);
  FakeParameters fake(comm->rank());
  GradientBucketer bucketer(*backend, *comm, fake.named, 2000, 1400);
  if (comm->rank() == 0) comm->set_timeout(0.5);
  if (comm->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(2));
  for (size_t k = fake.storage.size(); k-- > 0;) fake.storage[k].mark_ready();
  if (comm->rank() == 0) {
    try {
      bucketer.finish();
      ADD_FAILURE() << "finish() should have timed out";
    } catch (const CollectiveTimeout& e) {
      EXPECT_NE(std::string(e.what()).find("[watchdog] rank 0: gradient bucket 1/4 (2 tensor(s) "
                                           "from p6"),
                std::string::npos)
          << e.what();
    }
    comm->set_timeout(300);
  } else {
    bucketer.finish();
  }
  comm->barrier();
}

// One process whose collectives behave like NCCL's: ordered on the device, complete only
// when the test says so. Records what the bucketer asked of each request.
struct DeviceOrderedLog {
  int ordered = 0, waited = 0, abandoned = 0;
  bool complete = false;
  std::vector<double> timeouts;
};

class DeviceOrderedRequest final : public Request {
 public:
  explicit DeviceOrderedRequest(DeviceOrderedLog& log) : log_(log) {}
  bool device_ordered() const override { return true; }
  void order() override { ++log_.ordered; }
  bool wait_for(double timeout_s) override {
    ++log_.waited;
    log_.timeouts.push_back(timeout_s);
    if (!log_.complete) std::this_thread::sleep_for(std::chrono::duration<double>(timeout_s));
    return log_.complete;
  }
  bool test() override { return log_.complete; }
  void abandon() override { ++log_.abandoned; }

 private:
  DeviceOrderedLog& log_;
};

class DeviceOrderedCommunicator final : public Communicator {
 public:
  DeviceOrderedLog log;
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<int> world_ranks() const override { return {0}; }
  std::unique_ptr<Request> all_reduce_sum_async(float*, size_t) override {
    return std::make_unique<DeviceOrderedRequest>(log);
  }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  void all_reduce_sum(double*, size_t) override {}
  std::unique_ptr<Communicator> split(int, int) override { return nullptr; }
  void post(int, const std::string&) override {}
  std::optional<std::string> poll() override { return std::nullopt; }
};

// The fake parameters in 4 buckets over a device-ordered communicator with `timeout_s`.
struct DeviceOrderedBuckets {
  explicit DeviceOrderedBuckets(double timeout_s) { comm.set_timeout(timeout_s); }
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
  DeviceOrderedCommunicator comm;
  FakeParameters fake{0};
  GradientBucketer bucketer{*backend, comm, fake.named, 2000, 1400};
};

// With collectives the device orders (NCCL), finish() only queues them, so the update can be
// queued at once; confirm() is where the host waits, under the watchdog's timeout.
TEST(GradientBucketer, DeviceOrderedCollectivesAreWaitedForInConfirm) {
  DeviceOrderedBuckets b(7);
  auto& [backend, comm, fake, bucketer] = b;
  const int buckets = static_cast<int>(bucketer.num_buckets());
  ASSERT_GT(buckets, 1);
  comm.log.complete = true;
  for (int step = 1; step <= 2; ++step) {
    for (size_t k = fake.storage.size(); k-- > 0;) fake.storage[k].mark_ready();
    bucketer.finish();
    EXPECT_EQ(comm.log.ordered, step * buckets);
    EXPECT_EQ(comm.log.waited, (step - 1) * buckets) << "finish() never waits on the host";
    for (size_t k = 0; k < fake.storage.size(); ++k)
      EXPECT_EQ(fake.storage[k].grad.to_vector()[5], FakeParameters::expected(1, k, 5));
    bucketer.confirm();
    EXPECT_EQ(comm.log.waited, step * buckets);
    bucketer.confirm();  // nothing left to wait for
    EXPECT_EQ(comm.log.waited, step * buckets);
  }
  EXPECT_EQ(comm.log.timeouts, std::vector<double>(comm.log.waited, 7.0));
  EXPECT_EQ(comm.log.abandoned, 0);
}

TEST(GradientBucketer, AnUnconfirmedCollectiveTripsTheWatchdogNamingTheBucket) {
  DeviceOrderedBuckets b(0.05);
  auto& [backend, comm, fake, bucketer] = b;
  for (size_t k = fake.storage.size(); k-- > 0;) fake.storage[k].mark_ready();
  bucketer.finish();
  try {
    bucketer.confirm();
    ADD_FAILURE() << "confirm() should have timed out";
  } catch (const CollectiveTimeout& e) {
    EXPECT_NE(std::string(e.what()).find("gradient bucket 1/4 (2 tensor(s) from p6"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(comm.log.waited, 1) << "the first bucket that never completes ends the wait";
  EXPECT_EQ(comm.log.abandoned, 4) << "every collective still in flight is abandoned";
  bucketer.confirm();  // nothing is left pending
  EXPECT_EQ(comm.log.waited, 1);
}

TEST(Communicator, LateRankTripsTheWatchdogOfABlockingCollective) {
  auto comm = make_communicator();
  if (comm->size() == 1) GTEST_SKIP() << "needs 2 ranks";
  if (comm->rank() == 0) {
    comm->set_timeout(0.3);
    try {
      comm->all_reduce_sum(1.0);
      ADD_FAILURE() << "all_reduce_sum should have timed out";
    } catch (const CollectiveTimeout& e) {
      EXPECT_NE(std::string(e.what()).find("all-reduce of 1 values not complete after 0.3 s"),
                std::string::npos)
          << e.what();
    }
    comm->set_timeout(300);
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    EXPECT_EQ(comm->all_reduce_sum(1.0), comm->size());
  }
  comm->barrier();
}

TEST(GradientBucketer, ReadyTwiceIsAnError) {
  SingleProcessCommunicator comm;
  auto backend = make_cpu_backend(1);
  FakeParameters fake(0);
  GradientBucketer bucketer(*backend, comm, fake.named);
  fake.storage[0].mark_ready();
  EXPECT_THROW(fake.storage[0].mark_ready(), Error);
}

void expect_mean_of_shards(size_t bucket_bytes, size_t first_bucket_bytes) {
  auto comm = make_communicator();
  const int n = comm->size();
  auto be = make_cpu_backend(1);
  const auto spec = models::model_spec("resnet20", 1, 10);

  auto ref_net = models::build_model(*be, spec, 7);
  auto ref_params = ref_net->parameters();
  std::vector<std::vector<double>> mean(ref_params.size());
  for (int s = 0; s < n; ++s) {
    test::forward_backward(*be, *ref_net, test::make_shard(s));
    for (size_t k = 0; k < ref_params.size(); ++k) {
      auto g = be->download(ref_params[k].param->grad).to_vector();
      mean[k].resize(g.size());
      for (size_t i = 0; i < g.size(); ++i) mean[k][i] += g[i] / double(n);
    }
  }

  auto net = models::build_model(*be, spec, 7);
  auto params = net->parameters();
  GradientBucketer bucketer(*be, *comm, params, bucket_bytes, first_bucket_bytes);
  for (int step = 0; step < 2; ++step) {
    test::forward_backward(*be, *net, test::make_shard(comm->rank()));
    bucketer.finish();
    for (size_t k = 0; k < params.size(); ++k) {
      auto g = be->download(params[k].param->grad).to_vector();
      ASSERT_EQ(g.size(), mean[k].size());
      double scale = 1e-12;
      for (double v : mean[k]) scale = std::max(scale, std::abs(v));
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_NEAR(g[i], mean[k][i], 1e-4 * scale)
            << params[k].name << "[" << i << "] step " << step << " rank " << comm->rank();
    }
  }
}

TEST(GradientBucketer, ResNet20MeanOfShardsSmallBuckets) {
  expect_mean_of_shards(16 << 10, 4 << 10);
}

TEST(GradientBucketer, ResNet20MeanOfShardsDefaultBuckets) {
  expect_mean_of_shards(GradientBucketer::kDefaultBucketBytes,
                        GradientBucketer::kDefaultFirstBucketBytes);
}

}  // namespace
}  // namespace rn::distributed

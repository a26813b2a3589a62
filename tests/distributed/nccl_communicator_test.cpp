// NcclCommunicator: all-reduce and broadcast of GPU buffers, and host buffers handed to MPI. NCCL
// needs one GPU per rank, so the NCCL cases run in the one-rank run (every rank skips alike in
// the others) and only where a GPU is usable.
#include "distributed/nccl_communicator.h"

#include <gtest/gtest.h>

#include <deque>
#include <vector>

#include "core/check.h"
#include "distributed/gradient_bucketer.h"
#include "distributed/rank_environment.h"

namespace rn::distributed {
namespace {

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = make_communicator();
    if (comm_->size() > 1) GTEST_SKIP() << "NCCL needs a GPU per rank; covered by the 1-rank run";
    if (!cuda_available()) GTEST_SKIP() << "no usable CUDA GPU";
    backend_ = make_cuda_backend(make_rank_environment(*comm_).gpu_index);
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

// GPU gradients in buckets NCCL sums in place: from the second step on, backward writes into
// slices of the buckets (grad_source) and no copy goes in or out; bf16 gradients left pending
// are cast into those slices a bucket at a time; the gradients keep their values when the
// bucketer goes. One rank: each mean is the rank's own gradient.
TEST_F(NcclTest, DeviceGradientsLiveInTheirBucketsFromTheSecondStep) {
  const std::vector<Shape> shapes{{16, 3, 3, 3}, {16}, {10, 16}, {10}};
  std::deque<nn::Parameter> storage;
  std::vector<nn::NamedParameter> named;
  std::vector<std::vector<float>> values;
  for (size_t k = 0; k < shapes.size(); ++k) {
    nn::Parameter& p = storage.emplace_back();
    p.shape = shapes[k];
    std::vector<float> v(static_cast<size_t>(shapes[k].numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(int(k + 1) * 3 + int(i % 11));
    values.push_back(v);
    p.value = backend_->upload(Tensor::zeros(shapes[k]));
    p.grad = backend_->upload(Tensor::from_vector(shapes[k], v));
    named.push_back({"p" + std::to_string(k), &p});
  }
  auto bucketer = std::make_unique<GradientBucketer>(*backend_, *nccl_, named, 1000, 300);
  ASSERT_GT(bucketer->num_buckets(), 1u);
  for (int step = 1; step <= 3; ++step) {
    for (size_t k = storage.size(); k-- > 0;) {
      nn::Parameter& p = storage[k];
      if (step > 1) {
        ASSERT_TRUE(p.grad_source) << k;
        Tensor lent = p.grad_source(p.grad.desc());
        ASSERT_TRUE(lent.defined()) << k;
        EXPECT_EQ(lent.data(), p.grad.data()) << "step " << step << ": p" << k;
        backend_->fill(p.grad, -1.f);  // the last step's mean, stale
      }
      Tensor v = backend_->upload(Tensor::from_vector(shapes[k], values[k]));
      if (step == 3) {
        p.low_grad = backend_->allocate(TensorDesc{shapes[k], DType::bf16, nullptr});
        backend_->cast(v, p.low_grad);  // small integers: exact in bf16
      } else if (step == 2) {
        backend_->copy_bytes(v, 0, p.grad, 0, p.grad.bytes());
      }
      p.mark_ready();
    }
    bucketer->finish();
    bucketer->confirm();
    for (size_t k = 0; k < storage.size(); ++k) {
      EXPECT_FALSE(storage[k].low_grad.defined()) << k;
      EXPECT_EQ(backend_->download(storage[k].grad).to_vector(), values[k])
          << "step " << step << ": p" << k;
    }
  }
  bucketer.reset();
  for (size_t k = 0; k < storage.size(); ++k) {
    EXPECT_FALSE(storage[k].grad_source) << k;
    EXPECT_EQ(backend_->download(storage[k].grad).to_vector(), values[k]) << k;
  }
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

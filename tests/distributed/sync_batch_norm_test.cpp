// Cross-replica batch norm: N ranks with b samples each step as one process with the N * b
// samples in one batch (same weights, momentum and running statistics); without it they do not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/nn/layers.h"
#include "core/optim/optimizer.h"
#include "distributed/gradient_bucketer.h"
#include "tests/distributed/shards.h"

namespace rn::distributed {
namespace {

constexpr int kSteps = 3;
constexpr int kPerRank = 2;
constexpr double kLr = 0.1;

const optim::OptimizerOptions kOptimizer{.momentum = 0.9, .weight_decay = 5e-4};

// ResNet-20's layout with one unit per stage: every kind of layer, and few ReLUs. Each ReLU is a
// kink where a pre-activation within rounding of zero may go either way in two computations
// that differ only in summation order, and change every gradient below it; few activations make
// such a flip improbable.
models::ModelSpec small_spec() {
  auto spec = models::model_spec("resnet20", 1, 10);
  spec.blocks = {1, 1, 1};
  return spec;
}

// Direct convolutions: Winograd's rounding (about ten times direct's) makes such a flip likelier,
// and the test is of batch norm.
std::unique_ptr<Backend> direct_backend() {
  auto be = make_cpu_backend(1);
  be->set_conv_algorithm(ConvAlgorithm::direct);
  return be;
}

struct Replica {
  std::unique_ptr<Backend> be = direct_backend();
  std::unique_ptr<models::Network> net = models::build_model(*be, small_spec(), 11);
  optim::Optimizer opt{*be, net->parameters(), kOptimizer};
};

// Every parameter, momentum and buffer, in a fixed order, as plain values.
std::vector<std::vector<float>> state_of(Replica& r) {
  std::vector<std::vector<float>> out;
  for (auto& p : r.net->parameters()) out.push_back(r.be->download(p.param->value).to_vector());
  for (auto& p : r.net->parameters())
    if (p.param->momentum.defined()) out.push_back(r.be->download(p.param->momentum).to_vector());
  for (auto& b : r.net->buffers()) out.push_back(r.be->download(*b.tensor).to_vector());
  return out;
}

// Makes `to` an exact copy of `from` (weights, momentum, running statistics), whatever layouts
// each has chosen.
void copy_state(Replica& from, Replica& to) {
  auto src = from.net->parameters(), dst = to.net->parameters();
  for (size_t k = 0; k < src.size(); ++k) {
    to.be->reorder(src[k].param->value, dst[k].param->value);
    if (src[k].param->momentum.defined()) {
      if (!dst[k].param->momentum.defined())
        dst[k].param->momentum = to.be->allocate_persistent(dst[k].param->value.desc());
      to.be->reorder(src[k].param->momentum, dst[k].param->momentum);
    }
  }
  auto sb = from.net->buffers(), db = to.net->buffers();
  for (size_t k = 0; k < sb.size(); ++k) to.be->reorder(*sb[k].tensor, *db[k].tensor);
}

// The largest difference of any value, relative to the largest magnitude of its tensor.
double max_relative_difference(const std::vector<std::vector<float>>& a,
                               const std::vector<std::vector<float>>& b) {
  double worst = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    double scale = 1e-6;
    for (float v : b[k]) scale = std::max(scale, std::abs(double(v)));
    for (size_t i = 0; i < a[k].size(); ++i)
      worst = std::max(worst, std::abs(double(a[k][i]) - b[k][i]) / scale);
  }
  return worst;
}

// Runs kSteps data-parallel steps on every rank of `comm`, each rank on its kPerRank samples of
// the step's global batch. Before each step a single-process reference takes the replica's exact
// state and steps once on the whole global batch; returns the worst difference between the two
// after any step.
double worst_step_difference(Communicator& comm, bool sync_bn) {
  const int n = comm.size();
  Replica ranked, reference;
  if (sync_bn)
    nn::set_batch_norm_sync(*ranked.net,
                            [&](double* d, size_t count) { comm.all_reduce_sum(d, count); });
  GradientBucketer bucketer(*ranked.be, comm, ranked.net->parameters(), 64 << 10, 16 << 10);
  double worst = 0;
  for (int step = 0; step < kSteps; ++step) {
    copy_state(ranked, reference);
    test::forward_backward(*reference.be, *reference.net,
                           test::samples(step * n * kPerRank, n * kPerRank));
    reference.opt.step(kLr);

    test::forward_backward(*ranked.be, *ranked.net,
                           test::samples((step * n + comm.rank()) * kPerRank, kPerRank));
    bucketer.finish();
    ranked.opt.step(kLr);
    worst = std::max(worst, max_relative_difference(state_of(ranked), state_of(reference)));
  }
  return worst;
}

// Stated tolerance: 2e-5 of each tensor's largest magnitude (fp32 sums in another order give
// about 1e-6). Batch norm over each rank's samples alone differs by far more.
constexpr double kTolerance = 2e-5;

TEST(SyncBatchNorm, RanksMatchOneProcessWithTheWholeBatch) {
  auto comm = make_communicator();
  const double diff = worst_step_difference(*comm, /*sync_bn=*/true);
  if (comm->rank() == 0)
    std::printf("[sync_bn] %d rank(s) x %d vs 1 x %d, %d steps: max relative difference %.3g\n",
                comm->size(), kPerRank, comm->size() * kPerRank, kSteps, diff);
  EXPECT_LE(diff, kTolerance) << "rank " << comm->rank();
}

TEST(SyncBatchNorm, LocalStatisticsDoNotMatchTheWholeBatch) {
  auto comm = make_communicator();
  if (comm->size() == 1) GTEST_SKIP() << "one rank: local and global statistics coincide";
  const double diff = worst_step_difference(*comm, /*sync_bn=*/false);
  if (comm->rank() == 0) std::printf("[sync_bn] without it: max relative difference %.3g\n", diff);
  EXPECT_GT(diff, 100 * kTolerance) << "rank " << comm->rank();
}

}  // namespace
}  // namespace rn::distributed

// StepRunner: the order of one training step (forward, loss, backward, gradient sync, update,
// confirm) and the loss statistics it returns, read at the step's end.
#include "launch/train/step.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/models/model_spec.h"
#include "tests/core/gradient_check.h"

namespace rn::launch {
namespace {

TEST(StepRunner, SyncRunsBeforeTheUpdateAndConfirmAfterIt) {
  auto be = make_cpu_backend(1);
  auto spec = models::model_spec("resnet20", 1, 10);
  spec.blocks = {1, 1, 1};
  auto net = models::build_model(*be, spec, 5);
  StepRunner runner(*be, *net, optim::OptimizerOptions{.momentum = 0.9}, CrossEntropyParams{});
  std::vector<std::string> events;
  nn::Parameter& first = *net->parameters().front().param;
  const std::vector<float> before = be->download(first.value).to_vector();
  runner.set_gradient_sync(
      [&] {
        // The gradients are there and the weights not yet updated.
        events.push_back(first.grad.defined() ? "sync: gradients" : "sync: none");
        EXPECT_EQ(be->download(first.value).to_vector(), before);
      },
      [&] {
        // The update has run (it releases the gradients) before the host waits here.
        events.push_back(first.grad.defined() ? "confirm: gradients" : "confirm: updated");
        EXPECT_NE(be->download(first.value).to_vector(), before);
      });
  const Tensor images = test::random_tensor(Shape{4, 1, 28, 28}, 1);
  Tensor labels = Tensor::zeros(Shape{4}, DType::i32);
  for (int i = 0; i < 4; ++i) labels.data_as<int32_t>()[i] = i;
  const LossStats s = runner.train_step(images, labels, 0.1);
  EXPECT_EQ(events, (std::vector<std::string>{"sync: gradients", "confirm: updated"}));
  // The statistics are the step's forward pass: the same as evaluating the weights it started
  // from, which a second network built from the same seed still has.
  auto twin = models::build_model(*be, spec, 5);
  twin->set_training(true);
  const LossStats e = be->softmax_cross_entropy(twin->forward(be->upload(images)),
                                                be->upload(labels), CrossEntropyParams{}, nullptr);
  EXPECT_DOUBLE_EQ(s.loss, e.loss);
  EXPECT_EQ(s.top1, e.top1);
  EXPECT_EQ(s.top5, e.top5);
}

}  // namespace
}  // namespace rn::launch

// A network rebuilt from a checkpoint file alone (its model name, input channels and classes
// read from the file), and the checked images and labels of an array file: what `resnet infer`
// and `resnet step` share.
#pragma once

#include <memory>
#include <string>

#include "core/models/model_spec.h"
#include "distributed/communicator.h"
#include "io/array_file.h"
#include "launch/train/checkpointing.h"

namespace rn::launch {

struct CheckpointNetwork {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<models::Network> net;
  int in_channels = 0, classes = 0;
  ModelUse use;  // the checkpoint's class names and evaluation transform, where it has them
};

// Builds the checkpoint's network on `device` (the CPU with `threads` threads) and loads /model
// (and /optimizer when `with_momentum`) into it (collective over `comm`).
CheckpointNetwork load_checkpoint_network(const std::string& path, int threads, bool with_momentum,
                                          distributed::Communicator& comm,
                                          const CheckpointSharing& sharing,
                                          Device device = Device{});

// /images of `in` as a host tensor N x C x H x W, checked against the network's input channels.
Tensor read_images(const io::ArrayReader& in, const std::string& path, int channels);
// /labels of `in`: N integers in [0, classes), as a host i32 tensor.
Tensor read_labels(const io::ArrayReader& in, const std::string& path, int64_t n, int classes);

}  // namespace rn::launch

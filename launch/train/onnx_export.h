// A network's inference graph as an ONNX model (`resnet export`): written with the ONNX project's
// own protobuf schema (libonnx's onnx_proto), checked by its C++ checker before the file is
// written, the class names and evaluation transform kept as model metadata.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/models/model_spec.h"
#include "launch/train/model_use.h"

namespace rn::launch {

// The ONNX opsets the exporter writes: 11 is the first with Pad's pads as an input, 17 the last
// that Debian's libonnx (1.12) knows.
constexpr int kMinOnnxOpset = 11, kMaxOnnxOpset = 17;

struct OnnxExportOptions {
  int opset = 13;
  int64_t batch = 1;     // the input's batch dimension; 0: any ("N", dynamic)
  bool fold_bn = false;  // fold each batch norm that follows a convolution into its weights
};

// An opset outside [kMinOnnxOpset, kMaxOnnxOpset] or a negative batch: one error naming the flag.
void check_onnx_options(const OnnxExportOptions& options);

struct OnnxExportSummary {
  std::map<std::string, int> ops;  // node count per ONNX op type
  int nodes = 0, initializers = 0, folded_batch_norms = 0;
  int64_t floats = 0;  // in the initializers: weights, biases and batch-norm statistics
  int64_t bytes = 0;   // the file's size
};

// Writes the eval-mode graph of `net` (on `backend`, its weights as they are) for inputs of
// `input` = C x H x W to `path`: input "input" (batch x C x H x W float32), output "logits"
// (batch x classes), initializers named as the checkpoint names its tensors; metadata
// "model" (`model_name`), "class_names" (one per line) and "transform" (JSON, as
// /meta/transform) where `use` knows them. The file appears whole or not at all (written beside
// it, then renamed). The options are checked first (check_onnx_options).
OnnxExportSummary export_onnx(models::Network& net, Backend& backend, const Shape& input,
                              const ModelUse& use, const std::string& model_name,
                              const OnnxExportOptions& options, const std::string& path);

}  // namespace rn::launch

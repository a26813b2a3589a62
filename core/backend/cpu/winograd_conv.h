// The project's own Winograd (winograd.h) as one pass of a convolution on the oneDNN backend:
// the transforms around one batched oneDNN matmul of the 36 products, chunk by chunk of tiles,
// the transformed tensors in buffers of the pool. Activations in nChw8c, weights in oihw.
#pragma once

#include "core/backend/cpu/dnnl_common.h"
#include "core/backend/cpu/winograd.h"

namespace rn::cpu {

class WinogradConv {
 public:
  // The transformed tensors of a chunk of tiles take at most this much (winograd_conv.cpp).
  static constexpr int64_t kChunkBytes = int64_t{32} << 20;

  // The pass `pass` of the convolution of geometry g (the forward's, whatever the pass).
  WinogradConv(DnnlContext& ctx, const winograd::Geometry& g, ConvPass pass,
               int64_t chunk_bytes = kChunkBytes);
  // Forward: out = conv(in, w), in = x and out = y. Backward-data: in = dy, out = dx.
  void forward(const void* in, const void* w, void* out);
  // Backward-weights: dw (oihw) from x and dy.
  void backward_weights(const void* x, const void* dy, void* dw);
  int64_t chunk() const { return chunk_; }

 private:
  Tensor scratch(int64_t floats) { return ctx_.allocate(TensorDesc{Shape{floats}, DType::f32}); }

  DnnlContext& ctx_;
  winograd::Geometry g_;  // the pass's own: backward-data's has dy as its input
  ConvPass pass_;
  int64_t chunk_ = 0;  // tiles per chunk
  BoundPrimitive matmul_;
};

}  // namespace rn::cpu

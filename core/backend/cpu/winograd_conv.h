// The project's own Winograd (winograd.h) as one pass of a convolution on the oneDNN backend:
// the transforms around one batched oneDNN matmul of the 36 products, chunk by chunk of tiles,
// the transformed tensors in buffers of the pool. Activations in nChw8c, weights in oihw.
#pragma once

#include "core/backend/cpu/dnnl_common.h"
#include "core/backend/cpu/winograd.h"

namespace rn::cpu {

// How a pass runs its 36 products: `matmul`, one batched oneDNN matmul per chunk of tiles, the
// transformed tiles going through memory; `fused`, each thread takes a run of tiles small enough
// to stay in its cache through the input transform, the products (winograd::multiply) and the
// output transform. `automatic` chooses by the layer's channels (winograd_conv.cpp).
enum class WinogradProducts { automatic, matmul, fused };

class WinogradConv {
 public:
  // The transformed tensors of a chunk of tiles take at most this much (winograd_conv.cpp).
  static constexpr int64_t kChunkBytes = int64_t{32} << 20;
  // A fused run's transformed tiles take about this much per thread.
  static constexpr int64_t kRunBytes = int64_t{128} << 10;

  // The pass `pass` of the convolution of geometry g (the forward's, whatever the pass).
  WinogradConv(DnnlContext& ctx, const winograd::Geometry& g, ConvPass pass,
               WinogradProducts products = WinogradProducts::automatic,
               int64_t chunk_bytes = kChunkBytes, int64_t run_bytes = kRunBytes);
  // Forward: out = conv(in, w), in = x and out = y. Backward-data: in = dy, out = dx.
  void forward(const void* in, const void* w, void* out);
  // Backward-weights: dw (oihw) from x and dy.
  void backward_weights(const void* x, const void* dy, void* dw);
  bool fused() const { return run_ > 0; }
  int64_t chunk() const { return chunk_; }  // tiles per chunk (matmul)
  int64_t run() const { return run_; }      // tiles per run (fused)

 private:
  Tensor scratch(int64_t floats) { return ctx_.allocate(TensorDesc{Shape{floats}, DType::f32}); }
  void forward_fused(const float* in, const float* u, float* out);
  void backward_weights_fused(const float* x, const float* dy, float* du);

  DnnlContext& ctx_;
  winograd::Geometry g_;  // the pass's own: backward-data's has dy as its input
  ConvPass pass_;
  int64_t chunk_ = 0;  // tiles per chunk (matmul)
  int64_t run_ = 0;    // tiles per run (fused); 0 for matmul
  BoundPrimitive matmul_;
};

}  // namespace rn::cpu

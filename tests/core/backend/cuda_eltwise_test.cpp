// The CUDA backend's own kernels against the CPU backend: element-wise ops (sigmoid, products
// and dropout's mask included), the padding
// shortcut, the per-channel affine accumulation, casts, the finiteness check, softmax
// cross-entropy, SGD and LARS, and transfers through the NHWC layout. Skipped where no GPU is
// usable.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "tests/core/backend/cuda_test_util.h"

namespace rn {
namespace {

using test::plain_desc;
using test::random_values;

class CudaEltwiseTest : public test::CudaTest {
 protected:
  // The GPU's activation layout (NHWC) for `s` in dtype `t`: a 1x1 convolution's output.
  TensorDesc activation_desc(const Shape& s, DType t) {
    auto op =
        gpu_->make_conv(ConvParams{.out_channels = static_cast<int>(s[1]), .kernel = 1, .pad = 0},
                        TensorDesc{s, t, nullptr}, true);
    EXPECT_NE(op->output_desc().layout, nullptr);
    return op->output_desc();
  }
};

TEST_F(CudaEltwiseTest, TransfersThroughNhwcAreExact) {
  const Shape s{2, 5, 3, 7};
  const auto v = random_values(s.numel(), 1);
  Tensor t = to_gpu_as(activation_desc(s, DType::f32), v);
  EXPECT_EQ(from_gpu(t), v);
  Tensor back = gpu_->allocate(plain_desc(s));
  gpu_->reorder(t, back);
  EXPECT_EQ(gpu_->download(back).to_vector(), v);
}

// The layout change is the project's own kernel (a tiled transpose moving 16- or 32-bit
// elements): NCHW -> NHWC -> NCHW gives back the same bits in every storage type, on shapes with
// 1 and 3 channels and spatial sizes that do not fill a 32 x 32 tile.
TEST_F(CudaEltwiseTest, LayoutChangesAreExactInEveryType) {
  for (DType t : {DType::f32, DType::bf16, DType::f16})
    for (const Shape& s :
         {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{2, 64, 9, 9}, Shape{3, 33, 40, 40}}) {
      const auto v = random_values(s.numel(), 3);
      Tensor plain = to_gpu(s, v, t);
      Tensor nhwc = gpu_->allocate(activation_desc(s, t));
      gpu_->reorder(plain, nhwc);
      Tensor back = gpu_->allocate(TensorDesc{s, t, nullptr});
      gpu_->reorder(nhwc, back);
      EXPECT_EQ(from_gpu(back), from_gpu(plain)) << dtype_name(t) << " " << s.str();
      // The NHWC bytes are the CPU's NHWC order of the same values.
      const std::vector<float> in_nhwc = from_gpu(nhwc);
      EXPECT_EQ(in_nhwc, from_gpu(plain)) << "logical values through NHWC, " << s.str();
    }
}

// A view may start anywhere in its buffer (a bucket slice, a sub-tensor): maps and updates on
// views 4 bytes off a 16-byte boundary take their scalar paths and agree with the CPU.
TEST_F(CudaEltwiseTest, MapsAndUpdatesOnViewsOffA16ByteBoundary) {
  class At final : public Allocator {
   public:
    explicit At(void* p) : p_(p) {}
    void* allocate(size_t) override { return p_; }
    void release(void*, size_t) noexcept override {}

   private:
    void* p_;
  };
  const Shape s{37};
  Tensor buffer = gpu_->allocate(plain_desc(Shape{4 * 40}));
  std::vector<std::unique_ptr<At>> keep;
  auto view = [&](int k) {  // floats 40 k + 1 ...: 4 bytes past a 16-byte boundary
    keep.push_back(std::make_unique<At>(buffer.data_as<float>() + 40 * k + 1));
    return Tensor(plain_desc(s),
                  std::make_shared<Storage>(*keep.back(), s.numel() * 4, gpu_->device()));
  };
  const auto a = random_values(s.numel(), 4), w = random_values(s.numel(), 5),
             m = random_values(s.numel(), 6);
  Tensor va = view(0), vy = view(1), vw = view(2), vm = view(3);
  gpu_->copy_bytes(to_gpu(s, a), 0, va, 0, va.bytes());
  gpu_->relu_forward(va, vy);
  Tensor ca = to_cpu(s, a), cy = cpu_->allocate(plain_desc(s));
  cpu_->relu_forward(ca, cy);
  EXPECT_EQ(from_gpu(vy), from_cpu(cy));
  gpu_->copy_bytes(to_gpu(s, w), 0, vw, 0, vw.bytes());
  gpu_->copy_bytes(to_gpu(s, m), 0, vm, 0, vm.bytes());
  const SgdParams p{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-4f, .nesterov = true};
  gpu_->sgd_update_many(p, {{&vw, &va, &vm}});
  Tensor cw = to_cpu(s, w), cm = to_cpu(s, m);
  cpu_->sgd_update(p, cw, ca, cm);
  EXPECT_TRUE(close(from_gpu(vw), from_cpu(cw), DType::f32));
  EXPECT_TRUE(close(from_gpu(vm), from_cpu(cm), DType::f32));
}

TEST_F(CudaEltwiseTest, ElementwiseOpsMatchCpu) {
  // 2*16*5*5 = 800 elements: a whole number of 16-byte vectors in every dtype, plus an odd
  // shape that leaves a tail.
  for (const Shape& s : {Shape{2, 16, 5, 5}, Shape{1, 3, 3, 5}})
    for (DType t : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(s.str() + " " + dtype_name(t));
      const auto av = random_values(s.numel(), 1), bv = random_values(s.numel(), 2),
                 cv = random_values(s.numel(), 3);
      const TensorDesc d = activation_desc(s, t);
      Tensor ga = to_gpu_as(d, av), gb = to_gpu_as(d, bv), gc = to_gpu_as(d, cv);
      Tensor ca = to_cpu(s, av), cb = to_cpu(s, bv), cc = to_cpu(s, cv);
      Tensor gy = gpu_->allocate(d), cy = cpu_->allocate(plain_desc(s));
      auto expect_same = [&](const char* what) {
        EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), t)) << what;
      };
      gpu_->relu_forward(ga, gy), cpu_->relu_forward(ca, cy);
      expect_same("relu");
      gpu_->relu_backward(ga, gb, gy), cpu_->relu_backward(ca, cb, cy);
      expect_same("relu_backward");
      gpu_->relu_backward_add(ga, gb, gc, gy), cpu_->relu_backward_add(ca, cb, cc, cy);
      expect_same("relu_backward_add");
      gpu_->add(ga, gb, gy, false), cpu_->add(ca, cb, cy, false);
      expect_same("add");
      gpu_->add(ga, gb, gy, true), cpu_->add(ca, cb, cy, true);
      expect_same("add relu");
      gpu_->add_inplace(gy, gc), cpu_->add_inplace(cy, cc);
      expect_same("add_inplace");
      gpu_->axpby(gy, 0.3f, ga, 0.7f), cpu_->axpby(cy, 0.3f, ca, 0.7f);
      expect_same("axpby");
      gpu_->scale(gy, -2.f), cpu_->scale(cy, -2.f);
      expect_same("scale");
      gpu_->fill(gy, 3.5f), cpu_->fill(cy, 3.5f);
      expect_same("fill");
      gpu_->fill(gy, 0.f), cpu_->fill(cy, 0.f);
      expect_same("fill zero");
      gpu_->sigmoid_forward(ga, gy), cpu_->sigmoid_forward(ca, cy);
      expect_same("sigmoid");
      gpu_->sigmoid_backward(ga, gb, gy), cpu_->sigmoid_backward(ca, cb, cy);
      expect_same("sigmoid_backward");
      gpu_->mul(ga, gb, gy), cpu_->mul(ca, cb, cy);
      expect_same("mul");
      gpu_->mul(ga, gb, gy, -1.f, 1.f), cpu_->mul(ca, cb, cy, -1.f, 1.f);
      expect_same("mul 1 - b");
      gpu_->scale_to(ga, 0.5f, gy), cpu_->scale_to(ca, 0.5f, cy);
      expect_same("scale_to");
      // The same mask on both, though the GPU's tensor is NHWC and the CPU's NCHW.
      gpu_->dropout_forward(ga, 0.5f, 77, gy), cpu_->dropout_forward(ca, 0.5f, 77, cy);
      expect_same("dropout");
      gpu_->dropout_backward(gb, 0.3f, 78, gy), cpu_->dropout_backward(cb, 0.3f, 78, cy);
      expect_same("dropout_backward");
    }
}

TEST_F(CudaEltwiseTest, PadShortcutMatchesCpu) {
  const Shape xs{2, 4, 7, 7}, ys{2, 8, 4, 4};
  const auto xv = random_values(xs.numel(), 1), dyv = random_values(ys.numel(), 2);
  for (DType t : {DType::f32, DType::bf16}) {
    const TensorDesc xd = activation_desc(xs, t);
    const TensorDesc yd{ys, t, gpu_->layout_like(xd, ys)};
    Tensor gx = to_gpu_as(xd, xv), gy = gpu_->allocate(yd);
    Tensor cx = to_cpu(xs, xv), cy = cpu_->allocate(plain_desc(ys));
    gpu_->pad_shortcut_forward(gx, 2, gy), cpu_->pad_shortcut_forward(cx, 2, cy);
    EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), t)) << "forward " << dtype_name(t);
    Tensor gdy = to_gpu_as(yd, dyv), gdx = gpu_->allocate(xd);
    Tensor cdy = to_cpu(ys, dyv), cdx = cpu_->allocate(plain_desc(xs));
    gpu_->pad_shortcut_backward(gdy, 2, gdx), cpu_->pad_shortcut_backward(cdy, 2, cdx);
    EXPECT_TRUE(close(from_gpu(gdx), from_cpu(cdx), t)) << "backward " << dtype_name(t);
  }
}

TEST_F(CudaEltwiseTest, ChannelAffineAddMatchesCpu) {
  const Shape s{2, 6, 5, 3};
  const auto xv = random_values(s.numel(), 1), yv = random_values(s.numel(), 2);
  const auto scale = random_values(s[1], 3), shift = random_values(s[1], 4);
  for (DType t : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(t));
    const TensorDesc d = activation_desc(s, t);
    Tensor gx = to_gpu_as(d, xv), gy = to_gpu_as(d, yv);
    Tensor cx = to_cpu(s, xv), cy = to_cpu(s, yv);
    gpu_->channel_affine_add(gy, gx, gpu_->upload(Tensor::from_vector(Shape{s[1]}, scale)),
                             gpu_->upload(Tensor::from_vector(Shape{s[1]}, shift)));
    cpu_->channel_affine_add(cy, cx, Tensor::from_vector(Shape{s[1]}, scale),
                             Tensor::from_vector(Shape{s[1]}, shift));
    EXPECT_TRUE(close(from_gpu(gy), from_cpu(cy), t));
  }
}

TEST_F(CudaEltwiseTest, CastsRoundToTheTargetType) {
  const Shape s{3, 4, 5, 6};
  const auto v = random_values(s.numel(), 1, -100.f, 100.f);
  for (DType t : {DType::bf16, DType::f16}) {
    Tensor low = to_gpu(s, v, t);  // plain f32 -> t
    Tensor nhwc = gpu_->allocate(activation_desc(s, DType::f32));
    gpu_->cast(low, nhwc);  // t -> f32 with a layout change
    const auto back = from_gpu(nhwc);
    // Round to nearest: within half a unit in the last place (2^-8 for bf16, 2^-11 for fp16).
    const double ulp = t == DType::bf16 ? 1.0 / 256 : 1.0 / 2048;
    EXPECT_TRUE(test::all_close(back, v, 1e-3, ulp)) << dtype_name(t);
  }
}

TEST_F(CudaEltwiseTest, AllFiniteFindsInfAndNan) {
  const Shape s{1003};
  auto v = random_values(s.numel(), 1);
  EXPECT_TRUE(gpu_->all_finite(to_gpu(s, v)));
  v[1002] = INFINITY;
  EXPECT_FALSE(gpu_->all_finite(to_gpu(s, v)));
  v[1002] = 0.f, v[7] = NAN;
  EXPECT_FALSE(gpu_->all_finite(to_gpu(s, v)));
  EXPECT_FALSE(gpu_->all_finite(to_gpu(s, v, DType::f16)));
}

TEST_F(CudaEltwiseTest, CopyBytesMovesARange) {
  const auto v = random_values(100, 1);
  Tensor src = to_gpu(Shape{100}, v), dst = to_gpu(Shape{100}, std::vector<float>(100, 0.f));
  gpu_->copy_bytes(src, 10 * sizeof(float), dst, 50 * sizeof(float), 20 * sizeof(float));
  const auto out = from_gpu(dst);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[i], (i >= 50 && i < 70) ? v[i - 40] : 0.f) << i;
}

TEST_F(CudaEltwiseTest, SoftmaxCrossEntropyMatchesCpu) {
  const int64_t n = 37, k = 10;
  const auto zv = random_values(n * k, 1, -3.f, 3.f);
  Tensor labels = Tensor::zeros(Shape{n}, DType::i32);
  for (int64_t i = 0; i < n; ++i) labels.data_as<int32_t>()[i] = static_cast<int32_t>(i * 7 % k);
  for (float smoothing : {0.f, 0.1f}) {
    const CrossEntropyParams p{.label_smoothing = smoothing};
    Tensor cz = to_cpu(Shape{n, k}, zv), cd = cpu_->allocate(plain_desc(Shape{n, k}));
    Tensor gz = to_gpu(Shape{n, k}, zv), gd = gpu_->allocate(plain_desc(Shape{n, k}));
    const LossStats c = cpu_->softmax_cross_entropy(cz, cpu_->upload(labels), p, &cd);
    const LossStats g = gpu_->softmax_cross_entropy(gz, gpu_->upload(labels), p, &gd);
    EXPECT_NEAR(g.loss, c.loss, 1e-5 * c.loss);
    EXPECT_EQ(g.top1, c.top1);
    EXPECT_EQ(g.top5, c.top5);
    EXPECT_TRUE(test::all_close(from_gpu(gd), from_cpu(cd), 1e-6, 1e-4));
  }
  labels.data_as<int32_t>()[3] = static_cast<int32_t>(k);
  EXPECT_THROW(gpu_->softmax_cross_entropy(to_gpu(Shape{n, k}, zv), gpu_->upload(labels),
                                           CrossEntropyParams{}, nullptr),
               Error);
}

TEST_F(CudaEltwiseTest, SgdAndLarsUpdatesMatchCpu) {
  const Shape s{1003};  // not a multiple of four: the vector loop's tail runs too
  const auto wv = random_values(s.numel(), 1), gv = random_values(s.numel(), 2),
             mv = random_values(s.numel(), 3);
  auto run = [&](Backend& be, auto update) {
    Tensor w = be.upload(Tensor::from_vector(s, wv)), g = be.upload(Tensor::from_vector(s, gv)),
           m = be.upload(Tensor::from_vector(s, mv));
    for (int i = 0; i < 3; ++i) update(be, w, g, m);
    return std::make_pair(be.download(w).to_vector(), be.download(m).to_vector());
  };
  for (bool nesterov : {false, true}) {
    auto sgd = [&](Backend& be, Tensor& w, Tensor& g, Tensor& m) {
      be.sgd_update(
          SgdParams{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-3f, .nesterov = nesterov}, w,
          g, m);
    };
    const auto c = run(*cpu_, sgd), g = run(*gpu_, sgd);
    EXPECT_TRUE(test::all_close(g.first, c.first, 1e-6, 1e-5)) << "sgd weights " << nesterov;
    EXPECT_TRUE(test::all_close(g.second, c.second, 1e-6, 1e-5)) << "sgd momentum " << nesterov;
  }
  auto lars = [&](Backend& be, Tensor& w, Tensor& g, Tensor& m) {
    be.lars_update(LarsParams{.lr = 0.5f, .momentum = 0.9f, .weight_decay = 1e-3f, .eta = 0.01f}, w,
                   g, m);
  };
  const auto c = run(*cpu_, lars), g = run(*gpu_, lars);
  EXPECT_TRUE(test::all_close(g.first, c.first, 1e-6, 1e-5)) << "lars weights";
  EXPECT_TRUE(test::all_close(g.second, c.second, 1e-6, 1e-5)) << "lars momentum";
}

// 70 tensors (two launches of at most 64), of sizes around the 4096-element chunks and the
// float4 tail: the batched update equals one update per tensor, on the GPU and the CPU.
TEST_F(CudaEltwiseTest, SgdUpdateManyMatchesOneUpdatePerTensor) {
  std::vector<int64_t> sizes = {1, 3, 4, 5, 1003, 4095, 4096, 4097, 9000, 12288};
  while (sizes.size() < 70) sizes.push_back(static_cast<int64_t>(sizes.size()) * 37 + 1);
  const SgdParams p{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-3f, .nesterov = true};
  auto run = [&](Backend& be, bool many) {
    std::vector<Tensor> w, g, m;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const Shape s{sizes[i]};
      w.push_back(be.upload(Tensor::from_vector(s, random_values(sizes[i], 3 * i + 1))));
      g.push_back(be.upload(Tensor::from_vector(s, random_values(sizes[i], 3 * i + 2))));
      m.push_back(be.upload(Tensor::from_vector(s, random_values(sizes[i], 3 * i + 3))));
    }
    for (int step = 0; step < 2; ++step) {
      if (many) {
        std::vector<Backend::UpdateTensors> list;
        for (size_t i = 0; i < w.size(); ++i) list.push_back({&w[i], &g[i], &m[i]});
        be.sgd_update_many(p, list);
      } else {
        for (size_t i = 0; i < w.size(); ++i) be.sgd_update(p, w[i], g[i], m[i]);
      }
    }
    std::vector<float> out;
    for (size_t i = 0; i < w.size(); ++i)
      for (const Tensor* t : {&w[i], &m[i]}) {
        const auto v = be.download(*t).to_vector();
        out.insert(out.end(), v.begin(), v.end());
      }
    return out;
  };
  const auto gpu_many = run(*gpu_, true), gpu_each = run(*gpu_, false), cpu = run(*cpu_, false);
  EXPECT_TRUE(test::all_close(gpu_many, gpu_each, 1e-7, 1e-6));
  EXPECT_TRUE(test::all_close(gpu_many, cpu, 1e-6, 1e-5));
}

// 70 f32 tensors into bf16 and f16 copies (alternating, so each type fills its own launches),
// of sizes around the 4096-element chunks, and one 4-D pair from plain to NHWC that takes the
// single cast: the batched casts equal one cast per tensor, bit for bit.
TEST_F(CudaEltwiseTest, CastManyMatchesOneCastPerTensor) {
  std::vector<int64_t> sizes = {1, 3, 4, 5, 1003, 4095, 4096, 4097, 9000, 12288};
  while (sizes.size() < 70) sizes.push_back(static_cast<int64_t>(sizes.size()) * 37 + 1);
  std::vector<Tensor> src, many, each;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Shape s{sizes[i]};
    const DType to = i % 2 ? DType::f16 : DType::bf16;
    src.push_back(gpu_->upload(Tensor::from_vector(s, random_values(sizes[i], i + 1))));
    many.push_back(gpu_->allocate(TensorDesc{s, to, nullptr}));
    each.push_back(gpu_->allocate(TensorDesc{s, to, nullptr}));
  }
  const Shape s4{2, 5, 3, 7};
  src.push_back(gpu_->upload(Tensor::from_vector(s4, random_values(s4.numel(), 99))));
  many.push_back(gpu_->allocate(activation_desc(s4, DType::bf16)));
  each.push_back(gpu_->allocate(activation_desc(s4, DType::bf16)));
  std::vector<Backend::CastPair> list;
  for (size_t i = 0; i < src.size(); ++i) {
    list.push_back({&src[i], &many[i]});
    gpu_->cast(src[i], each[i]);
  }
  gpu_->cast_many(list);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(from_gpu(many[i]), from_gpu(each[i])) << i;

  // Back into f32 (weight gradients after a low-precision backward), in one list with casts the
  // other way: every direction takes its own launches.
  std::vector<Tensor> back_many, back_each, again;
  for (auto* v : {&back_many, &back_each, &again}) v->reserve(each.size());  // list points in
  list.clear();
  for (size_t i = 0; i < each.size(); ++i) {
    const TensorDesc f32 = i < sizes.size() ? TensorDesc{each[i].shape(), DType::f32, nullptr}
                                            : activation_desc(s4, DType::f32);
    back_many.push_back(gpu_->allocate(f32));
    back_each.push_back(gpu_->allocate(f32));
    again.push_back(gpu_->allocate(each[i].desc()));
    gpu_->fill(back_many.back(), -7.f);
    gpu_->cast(each[i], back_each.back());
    list.push_back({&each[i], &back_many.back()});
    list.push_back({&src[i], &again.back()});
  }
  gpu_->cast_many(list);
  for (size_t i = 0; i < each.size(); ++i) {
    EXPECT_EQ(from_gpu(back_many[i]), from_gpu(back_each[i])) << i;
    EXPECT_EQ(from_gpu(again[i]), from_gpu(each[i])) << i;
  }
}

}  // namespace
}  // namespace rn

// `resnet bench --peak`: the convolution throughput this CPU reaches through oneDNN in fp32 and
// bf16, the yardstick for the networks' figures: the forward of two ResNet-50 convolutions (a
// 3x3 64->64 on 16x64x56x56, and a 1x1 1024->1024 on 16x1024x14x14, GEMM-shaped), median of
// timed runs after warm-up, in the layouts the training convolutions use.
#include <chrono>
#include <cstdio>

#include "core/backend/backend.h"
#include "core/check.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"

namespace rn::launch {

int run_peak_bench(const Args& args, const Job& job) {
  const int threads = args.get_int("threads", job.env.threads);
  const int iters = args.get_int("iters", 10), warmup = args.get_int("warmup", 3);
  if (threads < 1 || iters < 1 || warmup < 0)
    RN_FAIL("--threads and --iters must be positive, --warmup >= 0");
  auto backend = make_backend(Device{}, threads);
  struct Case {
    const char* name;
    Shape x;
    ConvParams p;
  };
  const Case cases[] = {
      {"conv3x3 64->64 16x64x56x56", Shape{16, 64, 56, 56}, ConvParams{.out_channels = 64}},
      {"conv1x1 1024->1024 16x1024x14x14", Shape{16, 1024, 14, 14},
       ConvParams{.out_channels = 1024, .kernel = 1, .pad = 0}}};
  std::vector<std::string> rows;
  for (DType t : {DType::f32, DType::bf16}) {
    if (!precision_unsupported(Device{}, t).empty()) continue;
    for (const Case& c : cases) {
      auto op = backend->make_conv(c.p, TensorDesc{c.x, t, nullptr}, true);
      // The input in the layout the op prefers for its output (that of the previous layer).
      Tensor xin =
          backend->allocate(TensorDesc{c.x, t, backend->layout_like(op->output_desc(), c.x)});
      backend->fill(xin, 0.5f);
      Tensor w = backend->allocate(op->weight_desc());
      backend->fill(w, 0.01f);
      Tensor y = backend->allocate(op->output_desc());
      std::vector<double> secs;
      for (int i = 0; i < warmup + iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        op->forward(xin, w, nullptr, y);
        backend->synchronize();
        if (i >= warmup)
          secs.push_back(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const Shape ys = op->output_desc().shape;
      const double macs = static_cast<double>(ys.numel()) * c.x[1] * c.p.kernel * c.p.kernel;
      const double gflops = 2 * macs / median(secs) / 1e9;
      char buf[256];
      std::snprintf(
          buf, sizeof buf,
          "{\"precision\": \"%s\", \"case\": \"%s\", \"gflops\": %.1f, \"seconds\": %.5f}",
          t == DType::f32 ? "fp32" : "bf16", c.name, gflops, median(secs));
      rows.push_back(buf);
      if (!args.flag("json"))
        std::printf("%-5s %-34s %8.1f GFLOP/s  (%.2f ms)\n", t == DType::f32 ? "fp32" : "bf16",
                    c.name, gflops, 1e3 * median(secs));
    }
  }
  if (args.flag("json")) {
    std::printf("{\"backend\": \"%s\", \"peak\": [", backend->name().c_str());
    for (size_t i = 0; i < rows.size(); ++i) std::printf("%s%s", i ? ", " : "", rows[i].c_str());
    std::printf("]}\n");
  } else {
    std::printf("backend %s\n", backend->name().c_str());
  }
  return 0;
}

}  // namespace rn::launch

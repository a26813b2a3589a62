// SGD (momentum, Nesterov, weight decay) and LARS updates, in place, on any shared layout.
#include <cmath>

#include "core/backend/cpu/cpu_backend.h"

namespace rn::cpu {
namespace {

void check_update(const char* op, const Tensor& w, const Tensor& g, const Tensor& m) {
  RN_CHECK(w.desc().same_layout(g.desc()) && w.desc().same_layout(m.desc()),
           "[" << op << "] weight, gradient and momentum layouts differ: " << w.desc().str() << ", "
               << g.desc().str() << ", " << m.desc().str());
}

}  // namespace

void CpuBackend::sgd_update(const SgdParams& p, Tensor& w, const Tensor& g, Tensor& m) {
  check_update("sgd", w, g, m);
  float* wp = w.data_as<float>();
  const float* gp = g.data_as<float>();
  float* mp = m.data_as<float>();
  const int64_t n = static_cast<int64_t>(w.bytes() / sizeof(float));
  const float lr = p.lr, mu = p.momentum, wd = p.weight_decay;
  if (p.nesterov) {
#pragma omp parallel for simd num_threads(threads_) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      const float d = gp[i] + wd * wp[i];
      mp[i] = mu * mp[i] + d;
      wp[i] -= lr * (d + mu * mp[i]);
    }
  } else {
#pragma omp parallel for simd num_threads(threads_) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      mp[i] = mu * mp[i] + gp[i] + wd * wp[i];
      wp[i] -= lr * mp[i];
    }
  }
}

void CpuBackend::lars_update(const LarsParams& p, Tensor& w, const Tensor& g, Tensor& m) {
  check_update("lars", w, g, m);
  float* wp = w.data_as<float>();
  const float* gp = g.data_as<float>();
  float* mp = m.data_as<float>();
  const int64_t n = static_cast<int64_t>(w.bytes() / sizeof(float));
  double w2 = 0, g2 = 0;
#pragma omp parallel for num_threads(threads_) reduction(+ : w2, g2) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) w2 += double(wp[i]) * wp[i], g2 += double(gp[i]) * gp[i];
  const double wn = std::sqrt(w2), gn = std::sqrt(g2);
  const double denom = gn + p.weight_decay * wn;
  // A zero weight or gradient norm falls back to the plain learning rate.
  const float trust = (wn > 0 && gn > 0) ? static_cast<float>(p.eta * wn / denom) : 1.f;
  const float lr = p.lr * trust, mu = p.momentum, wd = p.weight_decay;
#pragma omp parallel for simd num_threads(threads_) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    mp[i] = mu * mp[i] + lr * (gp[i] + wd * wp[i]);
    wp[i] -= mp[i];
  }
}

}  // namespace rn::cpu

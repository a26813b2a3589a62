// Where a step's time goes: a Backend that runs another one and times each of its calls, by op
// kind and by layer (each planned op object is one layer), as PyTorch's profiler does for its
// operators. Off, it only forwards; on, each call reads the clock twice (on CUDA it also waits for
// the device before and after each call, so that a call's time is its own: the step then loses
// the overlap of host and device, and its profile is of the kernels alone).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/backend.h"

namespace rn {

// One line of a profile: a kind ("conv forward", "batch norm", "element-wise", "all-reduce
// wait", ...) and what it is within the kind (a layer: "conv 3 3x3/1 16->16 at 28x28"; an
// element-wise function: "relu backward").
struct ProfileEntry {
  std::string kind, what;
  int layer = -1;  // the planned op's number, in planning order; -1 for non-layer entries
  // A layer's pass: 0 forward, 1 backward (of a convolution or linear layer: backward-data), 2
  // backward-weights.
  int pass = 0;
  double flop = 0;        // floating-point operations of one call (convolutions and linear)
  std::string algorithm;  // a convolution pass's ("direct", "winograd"), where the backend says
  double seconds = 0;
  int64_t calls = 0;
};

class Profiler {
 public:
  // The entry of (kind, what), made the first time it is asked for.
  int entry(const std::string& kind, const std::string& what, int layer = -1, int pass = 0,
            double flop = 0);
  ProfileEntry& at(int e) { return entries_[static_cast<size_t>(e)]; }
  const std::vector<ProfileEntry>& entries() const { return entries_; }
  // Timing is off until enabled; reset() zeroes the times and calls, keeping the entries.
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void reset();
  int next_layer() { return layers_++; }

  // Adds the time from its construction to its end to entry `e`, when the profiler is on.
  class Scope {
   public:
    Scope(Profiler& p, int e) : p_(p.enabled_ ? &p : nullptr), e_(e) {
      if (p_) t0_ = std::chrono::steady_clock::now();
    }
    ~Scope() {
      if (!p_) return;
      ProfileEntry& x = p_->at(e_);
      x.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
      ++x.calls;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler* p_;
    int e_;
    std::chrono::steady_clock::time_point t0_;
  };

 private:
  std::vector<ProfileEntry> entries_;
  bool enabled_ = false;
  int layers_ = 0;
};

// `inner` run through `profiler`: ops planned on the result are timed per call. `inner` and
// `profiler` must outlive it.
std::unique_ptr<Backend> make_profiling_backend(Backend& inner, Profiler& profiler);

// The peak a profile compares the convolutions against: fp32 on the CPU, cpu_fp32_peak_gflops
// on `threads` threads; 0 (not measured) for another device or compute type.
double profile_peak_gflops(Device device, DType compute, int threads);

// A profile as a reader wants it: the kinds' totals per step, with their share of the step, and
// for convolutions and linear layers their rate and its fraction of `peak_gflops` (0: unknown);
// then every layer, slowest first, and every call outside the layers, slowest first. `steps` timed
// steps of `step_s` seconds each; what the entries do not cover is "other" (the host between calls:
// the framework's own time).
struct ProfileKind {
  std::string kind;
  double ms_per_step = 0, share = 0, gflops = 0, of_peak = 0;
};
struct ProfileLayer {
  int layer = -1;
  std::string what;
  double ms_per_step = 0, share = 0;
  double pass_ms[3] = {0, 0, 0};  // convolutions: forward, backward-data, backward-weights
  std::string algorithm[3];
  double gflops = 0, of_peak = 0;
};
// A call that is not a layer's (an element-wise function, the loss, the optimizer, ...): its
// time per step and calls per step.
struct ProfileFunction {
  std::string kind, what;
  double ms_per_step = 0, share = 0, calls_per_step = 0;
};
struct ProfileReport {
  int steps = 0;
  double step_s = 0, peak_gflops = 0;
  std::vector<ProfileKind> kinds;
  std::vector<ProfileLayer> layers;
  std::vector<ProfileFunction> functions;  // slowest first
};
ProfileReport make_profile_report(const Profiler& profiler, int steps, double step_s,
                                  double peak_gflops);
// The report as text (`top_layers` slowest layers; the rest summed in one line; the calls outside
// the layers that take at least 0.1% of the step) and as JSON.
std::string profile_text(const ProfileReport& r, size_t top_layers);
std::string profile_json(const ProfileReport& r);

}  // namespace rn

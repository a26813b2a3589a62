// The grid emulator's launches (a loop, or fibers between barriers), its fault messages and the
// host bf16 / f16 conversions.
#include "tests/core/backend/cuda/kernel_emulator.h"

#include <ucontext.h>

#include <algorithm>
#include <exception>
#include <sstream>

namespace rn::cuda::emu {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, NaN
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        mant <<= 1, ++e;
      } while (!(mant & 0x400u));
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to infinity (65520 and above)
  if (abs < 0x38800000u) {
    // Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even.
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // the value is mant * 2^-24 >> shift
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    return sign | static_cast<uint16_t>(q + (rem > half || (rem == half && (q & 1u))));
  }
  uint32_t r = abs - (112u << 23);  // rebias the exponent (127 - 15)
  r += 0xfffu + ((r >> 13) & 1u);
  return sign | static_cast<uint16_t>(r >> 13);
}

namespace {

// The launch and thread running now (one at a time), for fault messages.
struct Running {
  const char* kernel = nullptr;
  const EmulatedThread* thread = nullptr;
};
thread_local Running g_running;

std::string dims(Dim3 d) {
  std::ostringstream s;
  s << "(" << d.x << "," << d.y << "," << d.z << ")";
  return s.str();
}

}  // namespace

std::string running_thread() {
  if (!g_running.kernel) return "[host]";
  std::string s = std::string("[kernel ") + g_running.kernel + "]";
  if (g_running.thread)
    s +=
        " block " + dims(g_running.thread->block()) + " thread " + dims(g_running.thread->thread());
  return s;
}

void fault(const std::string& what) {
  throw KernelFault(what);
}

void EmulatedThread::sync() const {
  grid_->barrier();
}

// Switching between the scheduler and a thread's fiber. On x86-64 a switch of the System V ABI's
// callee-saved registers and floating-point control words: ucontext's swapcontext also saves and
// restores the signal mask, two system calls per switch, which made barrier-heavy launches spend
// most of their time in the kernel. Elsewhere, ucontext.
#if defined(__x86_64__)
extern "C" void rn_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl rn_emu_switch
  .type rn_emu_switch, @function
rn_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size rn_emu_switch, .-rn_emu_switch
)");
struct Context {
  void* sp = nullptr;
};
#else
struct Context {
  ucontext_t uc{};
};
#endif

// The fibers of one block: a context and stack per thread, reused from block to block.
struct Grid::Fibers {
  static constexpr size_t kStackBytes = 256 << 10;
  enum class State { ready, at_barrier, done };

  Context main;
  std::vector<Context> contexts;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<State> state;
  std::vector<EmulatedThread> threads;
  std::exception_ptr error;
  const ThreadBody* body = nullptr;
  size_t current = 0;
  bool active = false;

  void ensure(size_t n) {
    while (stacks.size() < n) stacks.push_back(std::make_unique<char[]>(kStackBytes));
    contexts.resize(std::max(contexts.size(), n));
  }
  void start(size_t t, void (*entry)());
  void enter(size_t t);  // scheduler -> thread t, until it waits or ends
  void leave();          // the running thread -> scheduler
};

namespace {
thread_local Grid::Fibers* g_fibers = nullptr;

void fiber_entry() {
  Grid::Fibers& f = *g_fibers;
  const size_t t = f.current;
  try {
    (*f.body)(f.threads[t]);
  } catch (...) {
    if (!f.error) f.error = std::current_exception();
  }
  f.state[t] = Grid::Fibers::State::done;
  f.leave();  // never resumed
  std::abort();
}
}  // namespace

#if defined(__x86_64__)
void Grid::Fibers::start(size_t t, void (*entry)()) {
  // The frame rn_emu_switch pops: control words, six registers, then `entry` as the return
  // address, placed so that entry starts with the stack aligned as after a call.
  auto top = reinterpret_cast<uintptr_t>(stacks[t].get() + kStackBytes) & ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top - 72);
  uint32_t csr[2] = {0, 0};
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  std::memcpy(&frame[0], csr, 8);
  for (int r = 1; r <= 6; ++r) frame[r] = 0;
  frame[7] = reinterpret_cast<uint64_t>(entry);
  contexts[t].sp = frame;
}
void Grid::Fibers::enter(size_t t) {
  rn_emu_switch(&main.sp, contexts[t].sp);
}
void Grid::Fibers::leave() {
  rn_emu_switch(&contexts[current].sp, main.sp);
}
#else
void Grid::Fibers::start(size_t t, void (*entry)()) {
  getcontext(&contexts[t].uc);
  contexts[t].uc.uc_stack.ss_sp = stacks[t].get();
  contexts[t].uc.uc_stack.ss_size = kStackBytes;
  contexts[t].uc.uc_link = &main.uc;
  makecontext(&contexts[t].uc, entry, 0);
}
void Grid::Fibers::enter(size_t t) {
  swapcontext(&main.uc, &contexts[t].uc);
}
void Grid::Fibers::leave() {
  swapcontext(&contexts[current].uc, &main.uc);
}
#endif

Grid::Grid() : fibers_(std::make_unique<Fibers>()) {}
Grid::~Grid() = default;

void Grid::barrier() const {
  Fibers* f = g_fibers;
  if (!f || !f->active)
    fault(running_thread() +
          ": __syncthreads() in a launch run without barriers (run, not "
          "run_with_shared)");
  f->state[f->current] = Fibers::State::at_barrier;
  f->leave();
}

void Grid::run_plain(const char* kernel, const LaunchShape& shape, const ThreadBody& body,
                     const BlockFilter& keep) {
  g_running = Running{kernel, nullptr};
  for (unsigned bz = 0; bz < shape.grid.z; ++bz)
    for (unsigned by = 0; by < shape.grid.y; ++by)
      for (unsigned bx = 0; bx < shape.grid.x; ++bx)
        if (!keep || keep(Dim3{bx, by, bz}))
          for (unsigned tz = 0; tz < shape.block.z; ++tz)
            for (unsigned ty = 0; ty < shape.block.y; ++ty)
              for (unsigned tx = 0; tx < shape.block.x; ++tx) {
                const EmulatedThread th(*this, Dim3{bx, by, bz}, Dim3{tx, ty, tz}, shape);
                g_running.thread = &th;
                body(th);
                ++threads_run_;
              }
  g_running = Running{};
}

void Grid::run_fibers(const char* kernel, const LaunchShape& shape, void* shared,
                      size_t shared_bytes, const ThreadBody& body, const BlockFilter& keep) {
  Fibers& f = *fibers_;
  const size_t per_block = size_t{shape.block.x} * shape.block.y * shape.block.z;
  f.ensure(per_block);
  f.body = &body;
  g_running = Running{kernel, nullptr};
  Fibers* outer = g_fibers;
  g_fibers = &f;
  struct Restore {
    Fibers* outer;
    Fibers& f;
    ~Restore() {
      f.active = false;
      g_fibers = outer;
      g_running = Running{};
    }
  } restore{outer, f};
  f.active = true;
  for (unsigned bz = 0; bz < shape.grid.z; ++bz)
    for (unsigned by = 0; by < shape.grid.y; ++by)
      for (unsigned bx = 0; bx < shape.grid.x; ++bx) {
        if (keep && !keep(Dim3{bx, by, bz})) continue;
        std::memset(shared, 0xff, shared_bytes);
        f.threads.clear();
        for (unsigned tz = 0; tz < shape.block.z; ++tz)
          for (unsigned ty = 0; ty < shape.block.y; ++ty)
            for (unsigned tx = 0; tx < shape.block.x; ++tx)
              f.threads.emplace_back(*this, Dim3{bx, by, bz}, Dim3{tx, ty, tz}, shape);
        f.state.assign(per_block, Fibers::State::ready);
        for (size_t t = 0; t < per_block; ++t) f.start(t, fiber_entry);
        // Phases: every ready thread runs to its next barrier (or its end); then the barrier
        // opens for all of them at once.
        for (;;) {
          for (size_t t = 0; t < per_block; ++t) {
            if (f.state[t] != Fibers::State::ready) continue;
            f.current = t;
            g_running.thread = &f.threads[t];
            f.enter(t);
            if (f.error) std::rethrow_exception(std::exchange(f.error, nullptr));
          }
          const auto waiting =
              std::count(f.state.begin(), f.state.end(), Fibers::State::at_barrier);
          if (waiting == 0) break;
          if (waiting != static_cast<std::ptrdiff_t>(per_block)) {
            const size_t gone =
                std::find(f.state.begin(), f.state.end(), Fibers::State::done) - f.state.begin();
            g_running.thread = &f.threads[gone];
            fault(running_thread() + ": returned while " + std::to_string(waiting) + " of the " +
                  std::to_string(per_block) + " threads of its block wait at __syncthreads()");
          }
          std::fill(f.state.begin(), f.state.end(), Fibers::State::ready);
          ++barriers_passed_;
        }
        threads_run_ += static_cast<int64_t>(per_block);
      }
}

}  // namespace rn::cuda::emu

// `resnet ckpt bench`: write and read throughput of a network's checkpoint (weights + momentum)
// on however many ranks it runs on; launch/scripts/bench_checkpoint.sh compares it with dd.
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/check.h"
#include "launch/cli/args.h"
#include "launch/cli/commands.h"
#include "launch/train/checkpointing.h"

namespace rn::launch {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

bool drop_caches() {
  ::sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  return static_cast<bool>(f << "3\n" << std::flush);
}

const CommandSpec& ckpt_bench_command() {
  static const CommandSpec c{
      "ckpt bench",
      "",
      "Checkpoint write and read times of a network's training state (all ranks together "
      "under mpirun), against the disk's sequential speed.",
      {{"model", Flag::Takes::value, "NAME", "the network (default resnet50)"},
       {"dir", Flag::Takes::value, "DIR", "where the files go (default .)"},
       {"repeat", Flag::Takes::value, "N", "writes and reads each (default 3)"},
       {"drop-caches", Flag::Takes::nothing, "", "read from the disk, not the page cache (root)"},
       {"json", Flag::Takes::nothing, "", "one JSON object"}}};
  return c;
}

int run_ckpt_bench(const std::vector<std::string>& argv, const Job& job) {
  distributed::Communicator& comm = job.comm;
  Args args(argv, ckpt_bench_command());
  const std::string name = args.get("model", "resnet50");
  const std::string dir = args.get("dir", ".");
  const int repeat = args.get_int("repeat", 3);
  if (repeat < 1) RN_FAIL("--repeat must be at least 1, got " << repeat);
  const DefaultInput in = default_input(name);
  auto backend = make_backend(Device{}, 1);
  auto net = models::build_model(*backend, models::model_spec(name, in.channels, in.classes), 0);
  std::error_code ec;
  if (comm.rank() == 0) std::filesystem::create_directories(dir, ec);
  comm.barrier();
  const std::string path = (std::filesystem::path(dir) / "bench-checkpoint.h5").string();
  const CheckpointSharing sharing = checkpoint_sharing(job.env, comm, job.hooks);
  TrainerState st{.world_size = comm.size()};
  st.loss_sum.assign(comm.size(), 0), st.correct.assign(comm.size(), 0);
  st.seen.assign(comm.size(), 0);
  std::vector<double> writes, reads;
  bool cold = args.flag("drop-caches");
  size_t bytes = 0;
  for (int i = 0; i < repeat; ++i) {
    // A checkpoint goes to a new name: the previous file's blocks are freed outside the timing
    // (in training, pruning old checkpoints happens after the write).
    if (comm.rank() == 0) std::filesystem::remove(path, ec), ::sync();
    comm.barrier();
    double t0 = now_s();
    save_checkpoint(path, *net, *backend, st, "bench", comm, sharing);
    comm.barrier();
    writes.push_back(now_s() - t0);
    if (args.flag("drop-caches")) {
      if (comm.rank() == 0) cold = drop_caches() && cold;
      // A resume reads a file written long before: let the disk finish with this one's writes.
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    comm.barrier();
    t0 = now_s();
    const CheckpointData data =
        load_into_model(path, *net, *backend, /*with_momentum=*/true, comm, sharing);
    comm.barrier();
    reads.push_back(now_s() - t0);
    bytes = data.summary.bytes();
  }
  if (comm.rank() == 0) std::filesystem::remove(path, ec);
  if (comm.rank() != 0) return 0;
  const double w = median(writes), r = median(reads), mb = bytes / 1e6;
  if (args.flag("json"))
    std::printf(
        "{\"model\": \"%s\", \"ranks\": %d, \"bytes\": %zu, \"write_s\": %.4f, \"write_mb_s\": "
        "%.1f, \"read_s\": %.4f, \"read_mb_s\": %.1f, \"read_cache\": \"%s\"}\n",
        name.c_str(), comm.size(), bytes, w, mb / w, r, mb / r, cold ? "cold" : "warm");
  else
    std::printf(
        "%s on %d rank(s): %.1f MB; write %.3f s (%.1f MB/s), read + verify + load %.3f s "
        "(%.1f MB/s, %s page cache); median of %d\n",
        name.c_str(), comm.size(), mb, w, mb / w, r, mb / r, cold ? "cold" : "warm", repeat);
  return 0;
}

}  // namespace rn::launch

// `resnet train`: read the config, train (or resume), print the final top-1 / top-5.
#include <cstdio>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/logging.h"
#include "launch/trainer.h"

namespace rn::launch {

int run_train(const std::vector<std::string>& argv, distributed::Communicator& comm) {
  Args args(argv, FlagSpec{{"config", "resume"}, {"set"}, {"verbose"}});
  init_logging(comm.rank(), args.flag("verbose"));
  const Config cfg = load_config(args.required("config"), args.all("set"));
  const TrainResult r = train(cfg, comm, args.get("resume"));
  if (comm.rank() != 0) return 0;
  if (r.preempted) {
    std::printf("stopped by signal after %lld steps: checkpoint %s\n",
                static_cast<long long>(r.steps), r.last_checkpoint.c_str());
    return 0;
  }
  std::printf(
      "final: %s after %d epoch(s), %lld steps, %.1f s: test top-1 %.4f, top-5 %.4f "
      "(%lld test samples), %.1f train img/s\n",
      cfg.model.name.c_str(), r.epochs, static_cast<long long>(r.steps), r.wall_s, r.test.top1,
      r.test.top5, static_cast<long long>(r.test.samples), r.train_img_per_s);
  return 0;
}

}  // namespace rn::launch

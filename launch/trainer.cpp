// The trainer: one process, one replica, from a validated Config.
#include "launch/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "core/nn/init.h"
#include "core/nn/layers.h"
#include "core/optim/lr_schedule.h"
#include "distributed/gradient_bucketer.h"
#include "distributed/nccl_communicator.h"
#include "io/fashion_mnist.h"
#include "io/loader.h"
#include "launch/checkpointing.h"
#include "launch/commands.h"
#include "launch/logging.h"

namespace rn::launch {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Host tensors that track a HostBatch's shape, reallocated only when it changes.
struct BatchTensors {
  Tensor images, labels;
  void fill(const io::HostBatch& b) {
    const Shape s{b.n, b.c, b.h, b.w};
    if (!images.defined() || !(images.shape() == s)) {
      images = Tensor::zeros(s);
      labels = Tensor::zeros(Shape{b.n}, DType::i32);
    }
    std::memcpy(images.data(), b.images.data(), b.images.size() * sizeof(float));
    std::memcpy(labels.data(), b.labels.data(), b.labels.size() * sizeof(int32_t));
  }
};

std::string format_duration(double s) {
  const int t = static_cast<int>(std::lround(s));
  std::ostringstream os;
  os << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  return os.str();
}

optim::OptimizerOptions optimizer_options(const OptimConfig& o) {
  return optim::OptimizerOptions{
      .kind = o.name == "lars" ? optim::OptimizerKind::lars : optim::OptimizerKind::sgd,
      .momentum = o.momentum,
      .nesterov = o.nesterov,
      .weight_decay = o.weight_decay,
      .decay_bn_and_bias = o.decay_bn_and_bias};
}

}  // namespace

EvalResult evaluate(StepRunner& runner, const io::SampleSet& data, const Config& cfg,
                    distributed::Communicator& comm) {
  io::DistributedSampler sampler(data.size(), 0, /*shuffle=*/false, comm.rank(), comm.size(),
                                 /*wrap=*/false);
  io::Loader loader(data, sampler, loader_options(cfg, /*train=*/false));
  loader.start_epoch(0);
  io::HostBatch b;
  BatchTensors t;
  EvalResult r;
  double loss_sum = 0;
  int64_t top1 = 0, top5 = 0, bad = 0;
  while (loader.next(b)) {
    t.fill(b);
    bad += b.bad;
    LossStats s = runner.eval_step(t.images, t.labels);
    loss_sum += s.loss * b.n;
    top1 += s.top1;
    top5 += s.top5;
    r.samples += b.n;
  }
  // Ranks may hold one batch more or less: the sums are reduced once, at the end.
  r.samples = static_cast<int64_t>(comm.all_reduce_sum(static_cast<double>(r.samples)));
  r.loss = comm.all_reduce_sum(loss_sum) / r.samples;
  r.top1 = comm.all_reduce_sum(static_cast<double>(top1)) / r.samples;
  r.top5 = comm.all_reduce_sum(static_cast<double>(top5)) / r.samples;
  r.bad = static_cast<int64_t>(comm.all_reduce_sum(static_cast<double>(bad)));
  return r;
}

TrainResult train(const Config& cfg, distributed::Communicator& comm, const std::string& resume) {
  const int rank = comm.rank(), world = comm.size();
  const bool lead = rank == 0;
  comm.set_timeout(cfg.distributed.timeout_s);
  // Every rank must run the same job: compare the resolved configs before touching any data.
  {
    const std::string text = to_yaml(cfg);
    const auto hashes = comm.all_gather(std::hash<std::string>{}(text));
    for (int r = 1; r < world; ++r)
      if (hashes[r] != hashes[0])
        RN_FAIL("rank " << r
                        << "'s resolved config differs from rank 0's (same file and --set "
                           "flags on every rank?)");
  }
  const auto t_start = Clock::now();
  // Fail on a bad model name before reading any data.
  models::ModelSpec spec;
  try {
    spec = models::model_spec(cfg.model.name, cfg.model.in_channels, cfg.model.num_classes);
  } catch (const Error& e) {
    RN_FAIL(cfg.source << ": 'model.name': " << e.what());
  }
  spec.zero_init_residual = cfg.model.zero_init_residual;
  const DType compute =
      checked_precision(cfg.train.precision,
                        Device{cfg.train.device == "cuda" ? DeviceKind::cuda : DeviceKind::cpu, 0},
                        cfg.source + ": 'train.precision'");

  namespace fs = std::filesystem;
  if (lead) {
    std::error_code ec;
    fs::create_directories(cfg.run_dir, ec);
    if (ec) RN_FAIL("run_dir '" << cfg.run_dir << "': cannot create: " << ec.message());
    std::ofstream f(fs::path(cfg.run_dir) / "config.yaml");
    if (!(f << to_yaml(cfg))) RN_FAIL("run_dir '" << cfg.run_dir << "': cannot write config.yaml");
    add_log_file((fs::path(cfg.run_dir) / "train.log").string());
  }

  DataSplits data = load_data(cfg, comm);
  const int threads = cfg.train.threads > 0 ? cfg.train.threads : default_threads_per_rank();
  const bool on_gpu = cfg.train.device == "cuda";
  // One GPU per rank, by the rank's place on its node.
  auto backend = make_backend(
      Device{on_gpu ? DeviceKind::cuda : DeviceKind::cpu, on_gpu ? distributed::local_rank() : 0},
      threads);
  // GPU buffers are summed and broadcast by NCCL; MPI keeps the host-side collectives.
  std::unique_ptr<distributed::Communicator> nccl;
  if (on_gpu && world > 1) nccl = distributed::make_nccl_communicator(comm, *backend);
  distributed::Communicator& device_comm = nccl ? *nccl : comm;
  auto net = models::build_model(*backend, spec, cfg.train.seed);
  // Every replica starts from rank 0's weights and statistics.
  for (auto& p : net->parameters())
    device_comm.broadcast(p.param->value.data(), p.param->value.bytes(), 0);
  for (auto& b : net->buffers()) device_comm.broadcast(b.tensor->data(), b.tensor->bytes(), 0);
  StepRunner runner(*backend, *net, optimizer_options(cfg.optim),
                    CrossEntropyParams{static_cast<float>(cfg.optim.label_smoothing)});
  // bf16 / fp16 activations with f32 master weights (where the device has them: checked above).
  if (compute != DType::f32) runner.set_precision(compute);
  std::unique_ptr<distributed::GradientBucketer> bucketer;
  if (world > 1) {
    const auto mib = [](double m) { return static_cast<size_t>(m * (1 << 20)); };
    bucketer = std::make_unique<distributed::GradientBucketer>(
        *backend, device_comm, net->parameters(), mib(cfg.distributed.bucket_mib),
        mib(cfg.distributed.first_bucket_mib));
    runner.set_gradient_sync([&] { bucketer->finish(); });
    if (cfg.distributed.sync_bn)
      nn::set_batch_norm_sync(*net, [&](double* d, size_t n) { comm.all_reduce_sum(d, n); });
  }
  RN_LOG(info) << "model " << spec.name << ": " << net->num_parameters() << " parameters, "
               << net->macs(Shape{1, spec.in_channels, data.height, data.width}) / 1e6
               << " M multiply-adds per image; backend " << backend->name();
  if (world > 1)
    RN_LOG(info) << "data-parallel: " << world << " ranks, " << bucketer->num_buckets()
                 << " gradient bucket(s), batch norm "
                 << (cfg.distributed.sync_bn ? "over the global batch (sync_bn)" : "per rank")
                 << ", collective timeout "
                 << (cfg.distributed.timeout_s > 0 ? str_cat(cfg.distributed.timeout_s, " s")
                                                   : std::string("off"));
  RN_LOG(info) << "data " << cfg.data.kind << ": " << data.train->size() << " train, "
               << data.test->size() << " test samples, " << data.train->num_classes()
               << " classes, input " << spec.in_channels << "x" << data.height << "x"
               << data.width << " (augmentation " << cfg.data.augment.recipe << "); " << world
               << " rank(s) x " << cfg.data.batch_size << " per rank";

  io::DistributedSampler sampler(data.train->size(), cfg.train.seed, /*shuffle=*/true, rank,
                                 world, /*wrap=*/true);
  io::Loader loader(*data.train, sampler, loader_options(cfg, /*train=*/true));
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  optim::LrSchedule schedule(
      optim::LrScheduleOptions{.kind = cfg.optim.schedule,
                               .base_lr = cfg.optim.scale_lr ? cfg.optim.lr * world : cfg.optim.lr,
                               .milestones = cfg.optim.milestones,
                               .gamma = cfg.optim.gamma,
                               .warmup_epochs = cfg.optim.warmup_epochs,
                               .total_epochs = cfg.train.epochs,
                               .steps_per_epoch = steps_per_epoch});
  int64_t total_steps = steps_per_epoch * cfg.train.epochs;
  if (cfg.train.max_steps > 0) total_steps = std::min(total_steps, cfg.train.max_steps);

  std::ofstream metrics;
  if (lead) {
    metrics.open(fs::path(cfg.run_dir) / "metrics.jsonl", std::ios::app);
    if (!metrics) RN_FAIL("run_dir '" << cfg.run_dir << "': cannot write metrics.jsonl");
  }

  // --- checkpoints: resume, then write per checkpoint.every_* and on SIGTERM / SIGUSR1 ---
  TrainerState ckpt{
      .steps_per_epoch = steps_per_epoch, .world_size = world, .seed = cfg.train.seed};
  ckpt.loss_sum.assign(world, 0), ckpt.correct.assign(world, 0), ckpt.seen.assign(world, 0);
  if (lead) {
    std::error_code ec;
    fs::create_directories(checkpoint_dir(cfg), ec);
    if (ec)
      RN_FAIL("run_dir '" << cfg.run_dir << "': cannot create checkpoints/: " << ec.message());
    prune_checkpoints(cfg, /*remove_temporaries=*/true);
    check_writable(checkpoint_dir(cfg));
  }
  const std::string resume_path = resume.empty() ? "" : resolve_resume(cfg, resume, comm);
  if (!resume_path.empty()) {
    const CheckpointData data =
        load_into_model(resume_path, *net, *backend, /*with_momentum=*/true, comm);
    ckpt =
        restore_trainer_state(data, resume_path, rank, world, cfg.data.batch_size, steps_per_epoch);
    // On the same number of ranks each replica takes back its own BN statistics.
    if (data.summary.header.world_size == world)
      restore_rank_buffers(data, resume_path, *net, *backend, rank, world);
    if (ckpt.seed != cfg.train.seed)
      RN_LOG(warning) << resume_path << " was trained with train.seed " << ckpt.seed
                      << "; continuing with " << cfg.train.seed
                      << " changes the data order and augmentation from here on";
    ckpt.seed = cfg.train.seed;
    RN_LOG(info) << "resumed from " << resume_path << " at epoch " << ckpt.epoch + 1 << ", step "
                 << ckpt.step << " (batch " << ckpt.batch_in_epoch << " of the epoch)";
  } else if (resume == "auto") {
    RN_LOG(info) << "no checkpoint in " << checkpoint_dir(cfg) << ": starting fresh";
  }
  StopSignals signals;
  double train_time = ckpt.train_time_s;
  int64_t train_images = ckpt.train_images;
  auto state_at = [&](int64_t epoch, int64_t batch, int64_t at_step) {
    TrainerState s = ckpt;
    s.epoch = epoch, s.batch_in_epoch = batch, s.step = at_step, s.lr = schedule.lr_at(at_step);
    s.train_time_s = train_time, s.train_images = train_images;
    return s;
  };
  // --- end checkpoints ---

  TrainResult result;
  io::HostBatch batch;
  BatchTensors bt;
  int64_t step = ckpt.step;
  for (int epoch = static_cast<int>(ckpt.epoch); epoch < cfg.train.epochs && step < total_steps;
       ++epoch) {
    loader.start_epoch(epoch);
    const auto t_epoch = Clock::now();
    double loss_sum = 0, window_loss = 0;
    int64_t seen = 0, correct = 0, window_seen = 0, bad = 0;
    int64_t batch_in_epoch = 0;
    if (epoch == ckpt.epoch && ckpt.batch_in_epoch > 0) {  // resumed inside this epoch
      loader.skip(ckpt.batch_in_epoch);
      batch_in_epoch = ckpt.batch_in_epoch;
      loss_sum = ckpt.loss_sum[rank], correct = ckpt.correct[rank], seen = ckpt.seen[rank];
    }
    auto t_window = Clock::now();
    double lr = step > 0 ? schedule.lr_at(step - 1) : 0;  // a resumed epoch may take no step
    while (step < total_steps && loader.next(batch)) {
      bt.fill(batch);
      bad += batch.bad;
      lr = schedule.lr_at(step);
      LossStats s;
      try {
        s = runner.train_step(bt.images, bt.labels, lr);
      } catch (const distributed::CollectiveTimeout& e) {
        throw distributed::CollectiveTimeout(
            str_cat(e.what(), "; waiting at step ", step + 1, " (epoch ", epoch + 1, ")"));
      }
      if (!std::isfinite(s.loss))
        RN_FAIL("training diverged at step " << step << " (loss " << s.loss
                                             << "); lower 'optim.lr' or add warm-up");
      ++step;
      loss_sum += s.loss * batch.n, window_loss += s.loss * batch.n;
      correct += s.top1;
      seen += batch.n, window_seen += batch.n;
      if (step % cfg.train.log_every == 0 || step == total_steps) {
        const double ips = world * window_seen / seconds_since(t_window);
        const double eta = (total_steps - step) * cfg.data.batch_size * world / ips;
        RN_LOG(info) << "epoch " << epoch + 1 << "/" << cfg.train.epochs << " step " << step << "/"
                     << total_steps << "  loss " << std::fixed << std::setprecision(4)
                     << window_loss / window_seen << "  lr " << std::setprecision(5) << lr << "  "
                     << std::setprecision(1) << ips << " img/s  ETA " << format_duration(eta);
        window_loss = 0, window_seen = 0, t_window = Clock::now();
      }
      ++batch_in_epoch;
      bool stop = false;
      try {
        stop = stop_requested(signals, comm);
      } catch (const distributed::CollectiveTimeout& e) {
        throw distributed::CollectiveTimeout(str_cat(
            e.what(), "; in the stop-signal check after step ", step, " (epoch ", epoch + 1, ")"));
      }
      if (stop || (cfg.checkpoint.every_steps > 0 && step % cfg.checkpoint.every_steps == 0))
        result.last_checkpoint =
            save_run_checkpoint(cfg, *net, *backend, state_at(epoch, batch_in_epoch, step),
                                loss_sum, correct, seen, comm);
      if (stop) {
        RN_LOG(warning) << "stop signal: checkpoint written after step " << step << ", exiting";
        result.preempted = true;
        result.steps = step;
        result.epochs = epoch;
        result.wall_s = seconds_since(t_start);
        return result;
      }
    }
    const bool epoch_complete = batch_in_epoch == steps_per_epoch;
    const double local_loss_sum = loss_sum;
    const int64_t local_correct = correct, local_seen = seen;
    const double epoch_train_s = seconds_since(t_epoch);
    // Training metrics over every rank's samples.
    loss_sum = comm.all_reduce_sum(loss_sum);
    correct = static_cast<int64_t>(comm.all_reduce_sum(static_cast<double>(correct)));
    seen = static_cast<int64_t>(comm.all_reduce_sum(static_cast<double>(seen)));
    // Bad samples met in this run's part of the epoch (a resumed epoch counts from the resume).
    bad = static_cast<int64_t>(comm.all_reduce_sum(static_cast<double>(bad)));
    train_time += epoch_train_s;
    train_images += seen;
    const auto t_eval = Clock::now();
    result.test = evaluate(runner, *data.test, cfg, comm);
    const double eval_s = seconds_since(t_eval);
    result.epochs = epoch + 1;
    std::ostringstream line;
    line << std::setprecision(6) << "{\"epoch\": " << epoch + 1 << ", \"step\": " << step
         << ", \"train_loss\": " << loss_sum / std::max<int64_t>(seen, 1)
         << ", \"train_top1\": " << static_cast<double>(correct) / std::max<int64_t>(seen, 1)
         << ", \"test_loss\": " << result.test.loss << ", \"test_top1\": " << result.test.top1
         << ", \"test_top5\": " << result.test.top5 << ", \"lr\": " << lr
         << ", \"img_per_s\": " << seen / epoch_train_s << ", \"epoch_train_s\": " << epoch_train_s
         << ", \"eval_s\": " << eval_s << ", \"bad_samples\": " << bad
         << ", \"bad_test_samples\": " << result.test.bad << ", \"wall_s\": " << seconds_since(t_start)
         << "}";
    if (lead) metrics << line.str() << "\n" << std::flush;
    RN_LOG(info) << "epoch " << epoch + 1 << " done: train loss " << std::fixed
                 << std::setprecision(4) << loss_sum / std::max<int64_t>(seen, 1) << ", test top-1 "
                 << result.test.top1 << " top-5 " << result.test.top5 << " ("
                 << std::setprecision(1) << seen / epoch_train_s << " img/s, epoch "
                 << epoch_train_s << " s, eval " << eval_s << " s)"
                 << (bad + result.test.bad > 0
                         ? str_cat("; bad samples substituted: ", bad, " train, ", result.test.bad,
                                   " test")
                         : std::string());
    // Checkpoint at the epoch's end, and always once training is over. An epoch cut short by
    // train.max_steps is saved mid-epoch, so a longer run continues it exactly.
    const bool last = step >= total_steps || epoch + 1 == cfg.train.epochs;
    if (last || (epoch_complete && cfg.checkpoint.every_epochs > 0 &&
                 (epoch + 1) % cfg.checkpoint.every_epochs == 0)) {
      TrainerState s =
          epoch_complete ? state_at(epoch + 1, 0, step) : state_at(epoch, batch_in_epoch, step);
      result.last_checkpoint = epoch_complete
                                   ? save_run_checkpoint(cfg, *net, *backend, s, 0, 0, 0, comm)
                                   : save_run_checkpoint(cfg, *net, *backend, s, local_loss_sum,
                                                         local_correct, local_seen, comm);
    }
  }
  result.steps = step;
  result.wall_s = seconds_since(t_start);
  result.train_img_per_s = train_images / std::max(train_time, 1e-9);
  return result;
}

}  // namespace rn::launch

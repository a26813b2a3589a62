// The trainer: one replica per rank of a communicator, from a validated Config.
#include "launch/train/trainer.h"

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
#include "distributed/nccl_communicator.h"
#include "io/counter_rng.h"

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
  return optim::OptimizerOptions{.kind = o.name.value,
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

Trainer::Trainer(const Config& cfg, distributed::Communicator& comm,
                 const distributed::RankEnvironment& env, TrainerOptions options)
    : cfg_(cfg),
      comm_(comm),
      env_(env),
      options_(std::move(options)),
      rank_(comm.rank()),
      world_(comm.size()),
      lead_(comm.rank() == 0),
      t_start_(Clock::now()) {
  comm_.set_timeout(cfg_.distributed.timeout_s);
  check_same_config_everywhere();
  spec_ = cfg_.model.spec();
  compute_ = cfg_.train.precision.value;
  check_precision_runs(compute_, env_.device(cfg_.train.device.value),
                       cfg_.source + ": 'train.precision'");
  prepare_run_dir();
  build();
  log_setup();
  prepare_checkpoints();
}

Trainer::~Trainer() = default;

// Every rank must run the same job: compare the resolved configs before touching any data.
void Trainer::check_same_config_everywhere() {
  const std::string text = to_yaml(cfg_);
  const auto hashes = comm_.all_gather(std::hash<std::string>{}(text));
  for (int r = 1; r < world_; ++r)
    if (hashes[r] != hashes[0])
      RN_FAIL("rank " << r
                      << "'s resolved config differs from rank 0's (same file and --set "
                         "flags on every rank?)");
}

void Trainer::prepare_run_dir() {
  if (!lead_) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(cfg_.run_dir, ec);
  if (ec) RN_FAIL("run_dir '" << cfg_.run_dir << "': cannot create: " << ec.message());
  std::ofstream f(fs::path(cfg_.run_dir) / "config.yaml");
  if (!(f << to_yaml(cfg_))) RN_FAIL("run_dir '" << cfg_.run_dir << "': cannot write config.yaml");
  log_file_ = std::make_unique<LogFile>((fs::path(cfg_.run_dir) / "train.log").string());
}

// Data, backend, model (every replica from rank 0's weights), step runner, gradient bucketer,
// sampler, loader and LR schedule.
void Trainer::build() {
  data_ = load_data(cfg_, comm_, DataOptions{.list_threads = std::max(4, env_.cpus)});
  sharing_ = checkpoint_sharing(env_, comm_, options_.hooks);
  const bool on_gpu = cfg_.train.device.value == DeviceKind::cuda;
  // One GPU per rank, by the rank's place on its node.
  device_backend_ =
      make_backend(env_.device(cfg_.train.device.value), env_.threads_or(cfg_.train.threads));
  device_backend_->set_conv_algorithm(cfg_.train.conv_algorithm.value);
  if (options_.profile_steps > 0) {
    backend_ = make_profiling_backend(*device_backend_, profiler_);
    loader_entry_ = profiler_.entry("loader wait", "the next batch");
    batch_entry_ = profiler_.entry("loader wait", "the batch into tensors");
    stop_entry_ = profiler_.entry("stop-signal check", "all ranks agree to go on");
  } else {
    backend_ = std::move(device_backend_);
  }
  // GPU buffers are summed and broadcast by NCCL; MPI keeps the host-side collectives.
  if (on_gpu && world_ > 1)
    nccl_ =
        distributed::make_nccl_communicator(comm_, device_backend_ ? *device_backend_ : *backend_);
  distributed::Communicator& device_comm = nccl_ ? *nccl_ : comm_;
  net_ = models::build_model(*backend_, spec_, cfg_.train.seed);
  for (auto& p : net_->parameters())
    device_comm.broadcast(p.param->value.data(), p.param->value.bytes(), 0);
  for (auto& b : net_->buffers()) device_comm.broadcast(b.tensor->data(), b.tensor->bytes(), 0);
  runner_ = std::make_unique<StepRunner>(
      *backend_, *net_, optimizer_options(cfg_.optim),
      CrossEntropyParams{static_cast<float>(cfg_.optim.label_smoothing)});
  // bf16 / fp16 activations with f32 master weights (where the device has them: checked above).
  if (compute_ != DType::f32) runner_->set_precision(compute_);
  if (options_.profile_steps > 0) runner_->set_profiler(&profiler_);
  if (world_ > 1) {
    nodes_ = env_.layout_of(comm_.world_ranks());
    const auto mib = [](double m) { return static_cast<size_t>(m * (1 << 20)); };
    bucketer_ = std::make_unique<distributed::GradientBucketer>(
        *backend_, device_comm, net_->parameters(), mib(cfg_.distributed.bucket_mib),
        mib(cfg_.distributed.first_bucket_mib));
    runner_->set_gradient_sync([this] { bucketer_->finish(); }, [this] { bucketer_->confirm(); });
    if (cfg_.distributed.sync_bn)
      nn::set_batch_norm_sync(*net_, [this](double* d, size_t n) { comm_.all_reduce_sum(d, n); });
  }
  sampler_ = std::make_unique<io::DistributedSampler>(data_.train->size(), cfg_.train.seed,
                                                      /*shuffle=*/true, rank_, world_,
                                                      /*wrap=*/true);
  loader_ = std::make_unique<io::Loader>(*data_.train, *sampler_, loader_options(cfg_, true));
  steps_per_epoch_ = loader_->batches_per_epoch();
  if (steps_per_epoch_ < 1)
    RN_FAIL(cfg_.source << ": 'data.batch_size' is " << cfg_.data.batch_size << " per rank, but "
                        << world_ << " rank(s) share " << data_.train->size()
                        << " training samples: not one batch per epoch");
  schedule_ = std::make_unique<optim::LrSchedule>(optim::LrScheduleOptions{
      .kind = cfg_.optim.schedule.value,
      .base_lr = cfg_.optim.scale_lr ? cfg_.optim.lr * world_ : cfg_.optim.lr,
      .milestones = cfg_.optim.milestones,
      .gamma = cfg_.optim.gamma,
      .warmup_epochs = cfg_.optim.warmup_epochs,
      .total_epochs = cfg_.train.epochs,
      .steps_per_epoch = steps_per_epoch_});
  total_steps_ = steps_per_epoch_ * cfg_.train.epochs;
  if (cfg_.train.max_steps > 0) total_steps_ = std::min(total_steps_, cfg_.train.max_steps);
}

void Trainer::log_setup() const {
  RN_LOG(info) << "model " << spec_.name << ": " << net_->num_parameters() << " parameters, "
               << net_->macs(Shape{1, spec_.in_channels, data_.height, data_.width}) / 1e6
               << " M multiply-adds per image; backend " << backend_->name() << ", "
               << precision_name(compute_)
               << (cfg_.train.precision == "auto" ? " (train.precision auto)" : "");
  if (world_ > 1)
    RN_LOG(info) << "data-parallel: " << world_ << " ranks on " << nodes_.describe() << ", "
                 << bucketer_->num_buckets() << " gradient bucket(s), batch norm "
                 << (cfg_.distributed.sync_bn ? "over the global batch (sync_bn)" : "per rank")
                 << ", collective timeout "
                 << (cfg_.distributed.timeout_s > 0 ? str_cat(cfg_.distributed.timeout_s, " s")
                                                    : std::string("off"));
  RN_LOG(info) << "data " << cfg_.data.kind << ": " << data_.train->size() << " train, "
               << data_.test->size() << " test samples, " << data_.train->num_classes()
               << " classes, input " << spec_.in_channels << "x" << data_.height << "x"
               << data_.width << " (augmentation " << cfg_.data.augment.recipe << "); " << world_
               << " rank(s) x " << cfg_.data.batch_size << " per rank";
}

// metrics.jsonl and checkpoints/ (a crashed run's temporaries removed), checked writable now
// rather than at the first checkpoint.
void Trainer::prepare_checkpoints() {
  ckpt_ = TrainerState{
      .steps_per_epoch = steps_per_epoch_, .world_size = world_, .seed = cfg_.train.seed};
  ckpt_.loss_sum.assign(world_, 0), ckpt_.correct.assign(world_, 0), ckpt_.seen.assign(world_, 0);
  if (!lead_) return;
  namespace fs = std::filesystem;
  metrics_.open(fs::path(cfg_.run_dir) / "metrics.jsonl", std::ios::app);
  if (!metrics_) RN_FAIL("run_dir '" << cfg_.run_dir << "': cannot write metrics.jsonl");
  steps_.open(fs::path(cfg_.run_dir) / "steps.jsonl", std::ios::app);
  if (!steps_) RN_FAIL("run_dir '" << cfg_.run_dir << "': cannot write steps.jsonl");
  std::error_code ec;
  fs::create_directories(checkpoint_dir(cfg_), ec);
  if (ec) RN_FAIL("run_dir '" << cfg_.run_dir << "': cannot create checkpoints/: " << ec.message());
  prune_checkpoints(cfg_, /*remove_temporaries=*/true);
  check_writable(checkpoint_dir(cfg_));
}

void Trainer::restore(const std::string& resume) {
  const std::string path = resume.empty() ? "" : resolve_resume(cfg_, resume, comm_);
  if (path.empty()) {
    if (resume == "auto")
      RN_LOG(info) << "no checkpoint in " << checkpoint_dir(cfg_) << ": starting fresh";
    return;
  }
  const CheckpointData data =
      load_into_model(path, *net_, *backend_, /*with_momentum=*/true, comm_, sharing_);
  ckpt_ = restore_trainer_state(data, path, rank_, world_, cfg_.data.batch_size, steps_per_epoch_);
  // On the same number of ranks each replica takes back its own BN statistics.
  if (data.summary.header.world_size == world_)
    restore_rank_buffers(data, path, *net_, *backend_, rank_, world_);
  if (ckpt_.seed != cfg_.train.seed)
    RN_LOG(warning) << path << " was trained with train.seed " << ckpt_.seed << "; continuing with "
                    << cfg_.train.seed << " changes the data order and augmentation from here on";
  ckpt_.seed = cfg_.train.seed;
  RN_LOG(info) << "resumed from " << path << " at epoch " << ckpt_.epoch + 1 << ", step "
               << ckpt_.step << " (batch " << ckpt_.batch_in_epoch << " of the epoch)";
  result_.last_checkpoint = path;
}

TrainerState Trainer::state_at(int64_t epoch, int64_t batch, int64_t at_step) const {
  TrainerState s = ckpt_;
  s.epoch = epoch, s.batch_in_epoch = batch, s.step = at_step, s.lr = schedule_->lr_at(at_step);
  s.train_time_s = train_time_, s.train_images = train_images_;
  return s;
}

TrainProgress Trainer::progress_at(TrainProgress::Event event, int epoch) const {
  return TrainProgress{.event = event,
                       .epoch = epoch + 1,
                       .epochs = cfg_.train.epochs,
                       .step = step_,
                       .total_steps = total_steps_};
}

void Trainer::report(const TrainProgress& p) const {
  if (options_.on_progress) options_.on_progress(p);
}

void Trainer::start_profile() {
  profiler_.reset();
  profiler_.set_enabled(true);
  profile_t0_ = Clock::now();
}

// Rank 0's profile, in the log and in run_dir/profile.json.
void Trainer::finish_profile() {
  profiler_.set_enabled(false);
  if (!lead_) return;
  const auto steps = static_cast<int>(profile_to_ - profile_from_);
  const double step_s = seconds_since(profile_t0_) / steps;
  const ProfileReport r = make_profile_report(
      profiler_, steps, step_s,
      profile_peak_gflops(backend_->device(), compute_, env_.threads_or(cfg_.train.threads)));
  RN_LOG(info) << "profile of steps " << profile_from_ + 1 << "-" << profile_to_
               << " (rank 0; also in profile.json):";
  std::istringstream lines(profile_text(r, 15));
  for (std::string l; std::getline(lines, l);) RN_LOG(info) << l;
  const std::string path = (std::filesystem::path(cfg_.run_dir) / "profile.json").string();
  std::ofstream f(path);
  if (!(f << profile_json(r) << "\n")) RN_LOG(warning) << "cannot write " << path;
}

TrainResult Trainer::run(const std::string& resume) {
  if (!options_.signals) own_signals_ = std::make_unique<StopSignals>();
  restore(resume);
  train_time_ = ckpt_.train_time_s;
  train_images_ = ckpt_.train_images;
  step_ = ckpt_.step;
  if (options_.profile_steps > 0) {
    // After up to 10 steps of warm-up (planning, the pool's first allocations), inside the run.
    const int64_t left = total_steps_ - step_;
    profile_from_ =
        step_ + std::min<int64_t>(10, std::max<int64_t>(0, left - options_.profile_steps));
    // Within one epoch, so that no evaluation falls inside.
    const int64_t epoch_end = (profile_from_ / steps_per_epoch_ + 1) * steps_per_epoch_;
    profile_to_ = std::min({total_steps_, epoch_end, profile_from_ + options_.profile_steps});
    if (profile_to_ <= profile_from_) profile_from_ = profile_to_ = -1;
  }
  if (ckpt_.epoch >= cfg_.train.epochs || step_ >= total_steps_) {
    RN_LOG(info) << "training already finished (" << step_ << " of " << total_steps_
                 << " steps): nothing to do";
    result_.already_done = true;
  }
  for (int epoch = static_cast<int>(ckpt_.epoch); epoch < cfg_.train.epochs && step_ < total_steps_;
       ++epoch) {
    EpochSums sums = start_epoch(epoch);
    const auto t_epoch = Clock::now();
    if (!train_epoch(epoch, sums)) {
      result_.preempted = true;
      result_.steps = step_;
      result_.epochs = epoch;
      result_.wall_s = seconds_since(t_start_);
      return result_;
    }
    finish_epoch(epoch, sums, seconds_since(t_epoch));
  }
  result_.steps = step_;
  result_.wall_s = seconds_since(t_start_);
  result_.train_img_per_s = train_images_ / std::max(train_time_, 1e-9);
  return result_;
}

Trainer::EpochSums Trainer::start_epoch(int epoch) {
  loader_->start_epoch(epoch);
  EpochSums sums;
  if (epoch == ckpt_.epoch && ckpt_.batch_in_epoch > 0) {  // resumed inside this epoch
    loader_->skip(ckpt_.batch_in_epoch);
    sums.batch = ckpt_.batch_in_epoch;
    sums.loss_sum = ckpt_.loss_sum[rank_], sums.correct = ckpt_.correct[rank_],
    sums.seen = ckpt_.seen[rank_];
  }
  sums.window_start = Clock::now();
  sums.lr = step_ > 0 ? schedule_->lr_at(step_ - 1) : 0;  // a resumed epoch may take no step
  return sums;
}

bool Trainer::train_epoch(int epoch, EpochSums& sums) {
  io::HostBatch batch;
  BatchTensors bt;
  const StopSignals& signals = options_.signals ? *options_.signals : *own_signals_;
  while (step_ < total_steps_) {
    if (step_ == profile_from_) start_profile();
    {
      Profiler::Scope wait(profiler_, loader_entry_);
      if (!loader_->next(batch)) break;
    }
    {
      Profiler::Scope fill(profiler_, batch_entry_);
      bt.fill(batch);
    }
    sums.bad += batch.bad;
    sums.lr = schedule_->lr_at(step_);
    net_->set_noise_key(io::counter_hash(cfg_.train.seed, io::RngStream::dropout,
                                         static_cast<uint64_t>(step_),
                                         static_cast<uint64_t>(rank_)));
    LossStats s;
    try {
      s = runner_->train_step(bt.images, bt.labels, sums.lr);
    } catch (const distributed::CollectiveTimeout& e) {
      throw distributed::CollectiveTimeout(
          str_cat(e.what(), "; waiting at step ", step_ + 1, " (epoch ", epoch + 1, ")"));
    }
    if (!std::isfinite(s.loss))
      RN_FAIL("training diverged at step " << step_ << " (loss " << s.loss
                                           << "); lower 'optim.lr' or add warm-up");
    ++step_;
    if (!conv_algorithms_logged_) {  // every convolution pass is planned after one step
      conv_algorithms_logged_ = true;
      if (const std::string c = backend_->conv_algorithm_summary(); !c.empty())
        RN_LOG(info) << "train.conv_algorithm " << cfg_.train.conv_algorithm << ": " << c;
    }
    if (step_ == profile_to_) finish_profile();
    sums.loss_sum += s.loss * batch.n, sums.window_loss += s.loss * batch.n;
    sums.correct += s.top1, sums.window_correct += s.top1;
    sums.seen += batch.n, sums.window_seen += batch.n;
    if (step_ % cfg_.train.log_every == 0 || step_ == total_steps_) log_window(epoch, sums);
    report(progress_at(TrainProgress::Event::step, epoch));
    ++sums.batch;
    bool stop = false;
    try {
      Profiler::Scope check(profiler_, stop_entry_);
      stop = stop_requested(signals, comm_);
    } catch (const distributed::CollectiveTimeout& e) {
      throw distributed::CollectiveTimeout(str_cat(
          e.what(), "; in the stop-signal check after step ", step_, " (epoch ", epoch + 1, ")"));
    }
    if (stop || (cfg_.checkpoint.every_steps > 0 && step_ % cfg_.checkpoint.every_steps == 0))
      result_.last_checkpoint =
          save_run_checkpoint(cfg_, *net_, *backend_, state_at(epoch, sums.batch, step_),
                              sums.loss_sum, sums.correct, sums.seen, comm_, sharing_, data_.use);
    if (stop) {
      RN_LOG(warning) << "stop signal: checkpoint written after step " << step_ << ", exiting";
      return false;
    }
  }
  return true;
}

// The progress line and the run's steps.jsonl line of the steps since the last one, over every
// rank's samples (every rank calls it after the same step).
void Trainer::log_window(int epoch, EpochSums& sums) {
  double window[3] = {sums.window_loss, static_cast<double>(sums.window_correct),
                      static_cast<double>(sums.window_seen)};
  if (world_ > 1) comm_.all_reduce_sum(window, 3);
  const double seen = std::max(window[2], 1.0);
  const double ips = window[2] / seconds_since(sums.window_start);
  const double eta = (total_steps_ - step_) * cfg_.data.batch_size * world_ / ips;
  const double loss = window[0] / seen;
  RN_LOG(info) << "epoch " << epoch + 1 << "/" << cfg_.train.epochs << " step " << step_ << "/"
               << total_steps_ << "  loss " << std::fixed << std::setprecision(4) << loss << "  lr "
               << std::setprecision(5) << sums.lr << "  " << std::setprecision(1) << ips
               << " img/s  ETA " << format_duration(eta);
  if (lead_)
    steps_ << std::setprecision(6) << "{\"epoch\": " << epoch + 1 << ", \"step\": " << step_
           << ", \"train_loss\": " << loss << ", \"train_top1\": " << window[1] / seen
           << ", \"lr\": " << sums.lr << ", \"img_per_s\": " << ips
           << ", \"wall_s\": " << seconds_since(t_start_) << "}\n"
           << std::flush;
  TrainProgress p = progress_at(TrainProgress::Event::log, epoch);
  p.loss = loss, p.img_per_s = ips;
  report(p);
  sums.window_loss = 0, sums.window_correct = 0, sums.window_seen = 0;
  sums.window_start = Clock::now();
}

// The epoch's metrics over every rank, its evaluation, its metrics.jsonl line and log line, and
// its checkpoint.
void Trainer::finish_epoch(int epoch, EpochSums& sums, double epoch_train_s) {
  const bool epoch_complete = sums.batch == steps_per_epoch_;
  const double local_loss_sum = sums.loss_sum;
  const int64_t local_correct = sums.correct, local_seen = sums.seen;
  // Training metrics over every rank's samples.
  const auto sum = [&](double v) { return comm_.all_reduce_sum(v); };
  const double loss_sum = sum(sums.loss_sum);
  const auto correct = static_cast<int64_t>(sum(static_cast<double>(sums.correct)));
  const auto seen = static_cast<int64_t>(sum(static_cast<double>(sums.seen)));
  // Bad samples met in this run's part of the epoch (a resumed epoch counts from the resume).
  const auto bad = static_cast<int64_t>(sum(static_cast<double>(sums.bad)));
  train_time_ += epoch_train_s;
  train_images_ += seen;
  const auto t_eval = Clock::now();
  result_.test = evaluate(*runner_, *data_.test, cfg_, comm_);
  result_.evaluated = true;
  const double eval_s = seconds_since(t_eval);
  result_.epochs = epoch + 1;
  const double train_loss = loss_sum / std::max<int64_t>(seen, 1);
  std::ostringstream line;
  line << std::setprecision(6) << "{\"epoch\": " << epoch + 1 << ", \"step\": " << step_
       << ", \"train_loss\": " << train_loss
       << ", \"train_top1\": " << static_cast<double>(correct) / std::max<int64_t>(seen, 1)
       << ", \"test_loss\": " << result_.test.loss << ", \"test_top1\": " << result_.test.top1
       << ", \"test_top5\": " << result_.test.top5 << ", \"lr\": " << sums.lr
       << ", \"img_per_s\": " << seen / epoch_train_s << ", \"epoch_train_s\": " << epoch_train_s
       << ", \"eval_s\": " << eval_s << ", \"bad_samples\": " << bad
       << ", \"bad_test_samples\": " << result_.test.bad
       << ", \"wall_s\": " << seconds_since(t_start_) << "}";
  if (lead_) metrics_ << line.str() << "\n" << std::flush;
  RN_LOG(info) << "epoch " << epoch + 1 << " done: train loss " << std::fixed
               << std::setprecision(4) << train_loss << ", test top-1 " << result_.test.top1
               << " top-5 " << result_.test.top5 << " (" << std::setprecision(1)
               << seen / epoch_train_s << " img/s, epoch " << epoch_train_s << " s, eval " << eval_s
               << " s)"
               << (bad + result_.test.bad > 0 ? str_cat("; bad samples substituted: ", bad,
                                                        " train, ", result_.test.bad, " test")
                                              : std::string());
  TrainProgress p = progress_at(TrainProgress::Event::epoch, epoch);
  p.loss = train_loss, p.img_per_s = seen / epoch_train_s;
  p.test_top1 = result_.test.top1, p.test_top5 = result_.test.top5;
  report(p);
  // Checkpoint at the epoch's end, and always once training is over. An epoch cut short by
  // train.max_steps is saved mid-epoch, so a longer run continues it exactly.
  const bool last = step_ >= total_steps_ || epoch + 1 == cfg_.train.epochs;
  if (last || (epoch_complete && cfg_.checkpoint.every_epochs > 0 &&
               (epoch + 1) % cfg_.checkpoint.every_epochs == 0)) {
    result_.last_checkpoint =
        epoch_complete ? save_run_checkpoint(cfg_, *net_, *backend_, state_at(epoch + 1, 0, step_),
                                             0, 0, 0, comm_, sharing_, data_.use)
                       : save_run_checkpoint(cfg_, *net_, *backend_,
                                             state_at(epoch, sums.batch, step_), local_loss_sum,
                                             local_correct, local_seen, comm_, sharing_, data_.use);
  }
}

TrainResult train(const Config& cfg, distributed::Communicator& comm,
                  const distributed::RankEnvironment& env, const std::string& resume,
                  TrainerOptions options) {
  Trainer trainer(cfg, comm, env, std::move(options));
  return trainer.run(resume);
}

}  // namespace rn::launch

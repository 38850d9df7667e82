// The training loop behind `kiln train`: epochs of shuffled batches through the model, optimizer
// updates, a running tally kept on the device (no host sync per step), evaluation, checkpoints.
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "io/files.h"
#include "kiln/autograd.h"
#include "kiln/cuda.h"
#include "kiln/loader.h"
#include "kiln/ops.h"
#include "kiln/profile.h"
#include "train/checkpoint.h"
#include "train/report.h"

namespace kiln::train {

using Clock = std::chrono::steady_clock;

// ---- signals ---------------------------------------------------------------------------------------
namespace {
std::atomic<bool> g_stop{false};

extern "C" void on_signal(int sig) {
  if (g_stop.load()) {  // second signal: stop now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop.store(true);
}
}  // namespace

void request_stop() { g_stop.store(true); }

void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

// ---- evaluation ------------------------------------------------------------------------------------
namespace {
EvalResult run_eval(nn::Module& model, const ModelSpec& spec, data::Loader& loader) {
  NoGradGuard no_grad;
  const bool was_training = model.training();
  model.set_training(false);
  loader.start_epoch(0);
  data::Batch b;
  Tensor loss_sum, correct;
  std::int64_t n = 0;
  while (loader.next(b)) {
    if (!loss_sum.defined()) {
      loss_sum = Tensor::zeros({}, DType::Float32, b.images.device());
      correct = Tensor::zeros({}, DType::Int64, b.images.device());
    }
    Tensor logits = model(prepare_input(spec, b.images));
    Tensor loss = cross_entropy(logits, b.labels);
    axpy_(static_cast<float>(b.labels.numel()), loss, loss_sum);
    count_correct_(logits, b.labels, correct);
    n += b.labels.numel();
  }
  model.set_training(was_training);
  EvalResult r;
  r.samples = n;
  if (n > 0) {
    r.loss = loss_sum.item() / static_cast<double>(n);
    r.accuracy = static_cast<double>(correct.to_vector<std::int64_t>()[0]) / static_cast<double>(n);
  }
  return r;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string encode_history(const std::vector<EpochMetrics>& h) {
  std::string s;
  for (const auto& m : h) {
    for (double v : {static_cast<double>(m.epoch), m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.epoch_s,
                     m.images_per_s, m.data_wait_pct, m.lr})
      s += detail::fmt_double(v) + ",";
    s.back() = ';';
  }
  return s;
}

std::vector<EpochMetrics> decode_history(const std::string& s, const std::string& path) {
  std::vector<EpochMetrics> h;
  std::stringstream ss(s);
  std::string rec;
  while (std::getline(ss, rec, ';')) {
    if (rec.empty()) continue;
    std::vector<double> v;
    std::stringstream rs(rec);
    std::string item;
    while (std::getline(rs, item, ',')) v.push_back(detail::parse_double(item, path + ": history"));
    KILN_CHECK(v.size() == 9, path, ": malformed history record '", rec, "'");
    EpochMetrics m;
    m.epoch = static_cast<int>(v[0]);
    m.train_loss = v[1], m.train_acc = v[2], m.test_loss = v[3], m.test_acc = v[4];
    m.epoch_s = v[5], m.images_per_s = v[6], m.data_wait_pct = v[7], m.lr = v[8];
    h.push_back(m);
  }
  return h;
}

// Where a run stands; all of it goes into the checkpoint so a resumed run continues exactly.
struct Position {
  int epoch = 0;               // epochs completed
  std::int64_t batch = 0;      // batches done in the current (incomplete) epoch
  std::int64_t global_step = 0;
  double loss_sum = 0, elapsed = 0, wait = 0;  // partial-epoch tallies
  std::int64_t correct = 0, seen = 0;
};

std::unique_ptr<optim::Optimizer> make_optimizer(const Config& c, io::NamedTensors params) {
  if (c.optimizer == "sgd") {
    optim::SGDOptions o;
    o.lr = c.lr, o.momentum = c.momentum, o.weight_decay = c.weight_decay, o.nesterov = c.nesterov;
    return optim::sgd(std::move(params), o);
  }
  optim::AdamOptions o;
  o.lr = c.lr, o.weight_decay = c.weight_decay, o.decoupled = c.optimizer == "adamw";
  return optim::adam(std::move(params), o);
}
}  // namespace

EvalResult evaluate(nn::Module& model, const ModelSpec& spec, std::shared_ptr<const data::Source> source,
                    Device device, std::int64_t batch_size, int workers) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size, lo.shuffle = false, lo.workers = workers, lo.device = device;
  data::Loader loader(std::move(source), lo);
  return run_eval(model, spec, loader);
}

EvalResult evaluate(nn::Module& model, const ModelSpec& spec, const data::Dataset& dataset, Device device,
                    std::int64_t batch_size, int workers) {
  return evaluate(model, spec, data::in_memory(dataset), device, batch_size, workers);
}

std::vector<EpochMetrics> fit(const Config& config, const data::Dataset& train, const data::Dataset& test) {
  return fit(config, data::in_memory(train), data::in_memory(test));
}

// ---- training --------------------------------------------------------------------------------------
std::vector<EpochMetrics> fit(const Config& config, std::shared_ptr<const data::Source> train,
                              std::shared_ptr<const data::Source> test) {
  config.validate();
  check_device_usable(config.device);
  const Device dev = config.device;
  const bool cuda = dev.is_cuda();
  KILN_CHECK(train && test && train->size() > 0 && test->size() > 0, "the training and test sets must not be empty");
  KILN_CHECK(train->sample_shape() == test->sample_shape() && train->num_classes() == test->num_classes(),
             "the training set (", train->describe(), ", ", train->num_classes(), " classes) and the test set (",
             test->describe(), ", ", test->num_classes(), " classes) do not match");

  const std::string dir = config.out_dir;
  const std::string ckpt_path = dir + "/checkpoint.safetensors", model_path = dir + "/model.safetensors",
                    metrics_path = dir + "/metrics.jsonl", curves_path = dir + "/curves.svg";
  ModelSpec spec = config.model;
  spec.input = train->sample_shape();
  if (config.resize > 0) spec.input[1] = spec.input[2] = config.resize;
  spec.classes = train->num_classes();
  spec.class_names = train->class_names();

  Position pos;
  std::vector<EpochMetrics> history;
  std::uint64_t resumed_dropout_offset = 0;
  std::uint64_t seed = config.seed;  // a resumed run keeps its own (shuffling and dropout continue exactly)
  io::SafetensorsFile resumed;
  if (!dir.empty()) {
    if (config.resume) {
      KILN_CHECK(io::exists(ckpt_path), "--resume: no checkpoint at ", ckpt_path,
                 " (start a new run without --resume)");
      resumed = io::load_safetensors(ckpt_path);
      const auto& md = resumed.metadata;
      const ModelSpec saved = detail::decode_spec(md, ckpt_path);
      KILN_CHECK(saved.input == spec.input && saved.classes == spec.classes, ckpt_path, ": the checkpoint's model takes ",
                 shape_str(saved.input), " images and ", saved.classes, " classes, the dataset has ",
                 shape_str(spec.input), " and ", spec.classes);
      spec = saved;
      auto get = [&](const char* k) -> const std::string& {
        auto it = md.find(k);
        KILN_CHECK(it != md.end(), ckpt_path, ": checkpoint metadata has no '", k, "'");
        return it->second;
      };
      KILN_CHECK(get("optimizer") == config.optimizer, ckpt_path, ": the run used --optimizer ", get("optimizer"),
                 ", not ", config.optimizer);
      pos.epoch = static_cast<int>(detail::parse_double(get("epoch"), ckpt_path + ": epoch"));
      pos.batch = static_cast<std::int64_t>(detail::parse_double(get("batch"), ckpt_path + ": batch"));
      pos.global_step = static_cast<std::int64_t>(detail::parse_double(get("global_step"), ckpt_path));
      pos.loss_sum = detail::parse_double(get("epoch_loss_sum"), ckpt_path);
      pos.correct = static_cast<std::int64_t>(detail::parse_double(get("epoch_correct"), ckpt_path));
      pos.seen = static_cast<std::int64_t>(detail::parse_double(get("epoch_seen"), ckpt_path));
      pos.elapsed = detail::parse_double(get("epoch_elapsed"), ckpt_path);
      pos.wait = detail::parse_double(get("epoch_wait"), ckpt_path);
      history = decode_history(get("history"), ckpt_path);
      auto get_u64 = [&](const char* k) {
        const std::string& v = get(k);
        char* end = nullptr;
        const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
        KILN_CHECK(!v.empty() && end && *end == '\0' && v[0] != '-', ckpt_path, ": metadata '", k, "' = '", v,
                   "' is not a number");
        return static_cast<std::uint64_t>(x);
      };
      resumed_dropout_offset = get_u64("dropout_rng");
      seed = get_u64("seed");
      const auto saved_batch = static_cast<std::int64_t>(get_u64("batch_size"));
      KILN_CHECK(pos.batch == 0 || saved_batch == config.batch_size, ckpt_path, ": the run stopped in the middle of an epoch with --batch-size ",
                 saved_batch, "; resume it with the same batch size (got ", config.batch_size, ")");
      KILN_CHECK(pos.epoch < config.epochs, ckpt_path, ": the run already completed ", pos.epoch,
                 " epochs; pass a larger --epochs to train further");
    } else {
      KILN_CHECK(!io::exists(ckpt_path), dir, " already holds a run (", ckpt_path,
                 "); continue it with --resume or choose another --out");
    }
    io::make_dirs(dir);
  }

  Generator gen(seed);
  auto dropout_gen = std::make_shared<Generator>(seed + 1);
  std::unique_ptr<nn::Module> model = build_model(spec, gen, dev, dropout_gen);
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(config, model->named_parameters());
  if (config.resume) {
    try {
      model->load_state(resumed.tensors);
      opt->load_state(resumed.tensors);
      dropout_gen->set_state(seed + 1, resumed_dropout_offset);
    } catch (const Error& e) {
      throw Error(ckpt_path + ": " + e.what());
    }
  }

  data::LoaderOptions lo;
  lo.batch_size = config.batch_size, lo.seed = seed, lo.workers = config.workers, lo.device = dev;
  data::Loader loader(train, lo);
  data::LoaderOptions to = lo;
  to.shuffle = false;
  // Evaluation holds no activations for backward: larger batches, except for the big CNN inputs.
  if (shape_numel(spec.input) <= 64 * 64 * 3) to.batch_size = std::max<std::int64_t>(config.batch_size, 256);
  data::Loader test_loader(test, to);
  const std::int64_t steps_per_epoch = loader.batches_per_epoch();

  optim::Schedule sched;
  sched.kind = optim::Schedule::parse(config.schedule);
  sched.base_lr = config.lr;
  sched.total_steps = steps_per_epoch * config.epochs;
  sched.warmup_steps = steps_per_epoch * config.warmup_epochs;
  sched.step_size = steps_per_epoch * (config.step_epochs > 0 ? config.step_epochs : std::max(1, config.epochs / 3));
  sched.gamma = config.gamma;

  if (!dir.empty() && config.profile_steps == 0)
    io::append_line(metrics_path, detail::metrics_config_line(config, model->parameter_count(),
                                                              config.resume ? pos.epoch : -1));
  if (config.progress)
    std::fprintf(stderr, "kiln: training %s (%lld parameters) on %s, %s: %lld train / %lld test images, %lld steps/epoch%s\n",
                 spec.arch.c_str(), static_cast<long long>(model->parameter_count()), dev.str().c_str(),
                 config.dataset.c_str(), static_cast<long long>(train->size()), static_cast<long long>(test->size()),
                 static_cast<long long>(steps_per_epoch),
                 config.resume ? (", resuming after epoch " + std::to_string(pos.epoch) +
                                  (pos.batch ? " step " + std::to_string(pos.batch) : ""))
                                     .c_str()
                               : "");

  auto save = [&](const Position& p) {
    if (dir.empty()) return;
    detail::Metadata md;
    detail::encode_spec(spec, md);
    md["format"] = "kiln-checkpoint-1";
    md["optimizer"] = config.optimizer;
    md["dataset"] = config.dataset;
    md["config"] = config.to_json();
    md["epoch"] = std::to_string(p.epoch);
    md["batch"] = std::to_string(p.batch);
    md["global_step"] = std::to_string(p.global_step);
    md["epoch_loss_sum"] = detail::fmt_double(p.loss_sum);
    md["epoch_correct"] = std::to_string(p.correct);
    md["epoch_seen"] = std::to_string(p.seen);
    md["epoch_elapsed"] = detail::fmt_double(p.elapsed);
    md["epoch_wait"] = detail::fmt_double(p.wait);
    md["seed"] = std::to_string(seed);
    md["batch_size"] = std::to_string(config.batch_size);
    md["dropout_rng"] = std::to_string(dropout_gen->offset());
    md["history"] = encode_history(history);
    io::NamedTensors tensors = model->named_parameters();
    io::NamedTensors weights = tensors;
    for (auto& t : opt->state()) tensors.push_back(t);
    io::save_safetensors(ckpt_path, tensors, md);
    detail::Metadata wmd;
    detail::encode_spec(spec, wmd);
    wmd["format"] = "kiln-weights-1";
    io::save_safetensors(model_path, weights, wmd);
  };

  detail::Progress progress(config.progress);
  for (int epoch = pos.epoch; epoch < config.epochs; ++epoch) {
    const bool resuming_here = epoch == pos.epoch && pos.batch > 0;
    Position cur;
    cur.epoch = epoch;
    cur.global_step = pos.global_step;
    if (resuming_here) cur = pos;
    Tensor loss_sum = Tensor::full({}, static_cast<float>(cur.loss_sum), dev);
    Tensor correct = Tensor::from_vector<std::int64_t>({cur.correct}, {}, dev);
    std::int64_t seen = cur.seen;
    model->set_training(true);
    loader.start_epoch(epoch, cur.batch);
    const auto t0 = Clock::now();
    std::int64_t step_in_epoch = cur.batch;
    double lr = sched.lr_at(cur.global_step);

    // Reads the device tallies (a host sync): only at progress ticks and at the end of the epoch.
    auto check_finite = [&](double loss_total) {
      if (std::isfinite(loss_total)) return;
      progress.finish();
      KILN_FAIL("the loss became ", std::isnan(loss_total) ? "NaN" : "infinite", " in epoch ", epoch + 1,
                cuda ? " by step " : " at step ", step_in_epoch, " of ", steps_per_epoch,
                "; try a lower --lr. The last good checkpoint is kept", dir.empty() ? "" : " in " + dir);
    };

    data::Batch batch;
    const int warmup = config.profile_warmup_steps;
    std::int64_t profiled = 0;
    double step_t0 = 0, step_ms_sum = 0;
    auto wall_ms = [] { return std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch()).count(); };
    for (;;) {
      bool have;
      {
        profile::Scope wait_scope("data", "wait", Device::cpu());  // NVTX "data wait"
        have = loader.next(batch);
      }
      if (!have) break;
      lr = sched.lr_at(cur.global_step);
      opt->set_lr(static_cast<float>(lr));
      Tensor logits = (*model)(prepare_input(spec, batch.images));
      Tensor loss;
      {
        profile::LayerScope layer("loss cross_entropy");
        profile::Scope scope("loss cross_entropy", "fwd", dev);
        loss = cross_entropy(logits, batch.labels);
      }
      opt->zero_grad();
      loss.backward();
      {
        profile::Scope scope("optimizer " + opt->name(), "step", dev);
        opt->step();
      }
      if (config.profile_steps > 0) {
        const std::int64_t done_steps = step_in_epoch - cur.batch + 1;
        if (done_steps == warmup) {  // warm-up over: start timing from here
          if (cuda) cuda::synchronize(dev.index);
          profile::reset();
          profile::set_enabled(true);
          step_t0 = wall_ms();
        } else if (done_steps > warmup) {
          profile::end_step(dev);
          const double t = wall_ms();
          step_ms_sum += t - step_t0;
          step_t0 = t;
          if (++profiled == config.profile_steps) {
            profile::set_enabled(false);
            progress.finish();
            const double step_ms = step_ms_sum / static_cast<double>(profiled);
            std::printf("kiln profile: %s on %s, batch %lld, input %s, %lld steps after %d warm-up steps\n%s",
                        spec.arch.c_str(), dev.str().c_str(), static_cast<long long>(config.batch_size),
                        shape_str(spec.input).c_str(), static_cast<long long>(profiled), warmup,
                        profile::table(step_ms).c_str());
            std::printf("throughput: %.1f images/s\n", static_cast<double>(config.batch_size) * 1000.0 / step_ms);
            std::fflush(stdout);
            return history;
          }
        }
      }
      axpy_(static_cast<float>(batch.labels.numel()), loss.detach(), loss_sum);
      count_correct_(logits.detach(), batch.labels, correct);
      seen += batch.labels.numel();
      ++step_in_epoch;
      ++cur.global_step;
      if (!cuda) check_finite(loss.item());

      if (progress.due()) {
        const double ls = loss_sum.item();
        check_finite(ls);
        const double acc = static_cast<double>(correct.to_vector<std::int64_t>()[0]) / static_cast<double>(seen);
        const double el = std::chrono::duration<double>(Clock::now() - t0).count();
        const double rate = static_cast<double>(seen - cur.seen) / std::max(el, 1e-9);
        const double eta = static_cast<double>(loader.dataset_size() - seen) / std::max(rate, 1e-9);
        char line[256];
        std::snprintf(line, sizeof line, "epoch %d/%d [%lld/%lld] loss %.4f acc %.2f%% %.0f img/s ETA %.0fs",
                      epoch + 1, config.epochs, static_cast<long long>(step_in_epoch),
                      static_cast<long long>(steps_per_epoch), ls / static_cast<double>(seen), 100.0 * acc, rate, eta);
        progress.show(line);
      }

      if (g_stop.load() && step_in_epoch < steps_per_epoch) {
        if (cuda) cuda::synchronize(dev.index);
        progress.finish();
        Position p = cur;
        p.batch = step_in_epoch;
        p.loss_sum = loss_sum.item();
        p.correct = correct.to_vector<std::int64_t>()[0];
        p.seen = seen;
        p.elapsed = cur.elapsed + std::chrono::duration<double>(Clock::now() - t0).count();
        p.wait = cur.wait + loader.wait_seconds();
        save(p);
        g_stop.store(false);  // handled: a later fit() in this process starts afresh
        throw Interrupted(kiln::detail::str("interrupted in epoch ", epoch + 1, " after step ", step_in_epoch, " of ",
                                      steps_per_epoch,
                                      dir.empty() ? std::string("; no --out folder, nothing saved")
                                                  : "; checkpoint written to " + ckpt_path +
                                                        " (continue with --resume)"));
      }
    }
    if (cuda) cuda::synchronize(dev.index);
    const double epoch_s = cur.elapsed + std::chrono::duration<double>(Clock::now() - t0).count();
    const double wait_s = cur.wait + loader.wait_seconds();
    progress.finish();

    const double ls = loss_sum.item();
    check_finite(ls);
    EpochMetrics m;
    m.epoch = epoch + 1;
    m.train_loss = ls / static_cast<double>(seen);
    m.train_acc = static_cast<double>(correct.to_vector<std::int64_t>()[0]) / static_cast<double>(seen);
    const EvalResult ev = run_eval(*model, spec, test_loader);
    m.test_loss = ev.loss;
    m.test_acc = ev.accuracy;
    m.epoch_s = epoch_s;
    m.images_per_s = static_cast<double>(seen - cur.seen) / std::max(epoch_s - cur.elapsed, 1e-9);
    m.data_wait_pct = 100.0 * wait_s / std::max(epoch_s, 1e-9);
    m.lr = lr;
    history.push_back(m);

    Position done;
    done.epoch = epoch + 1;
    done.global_step = cur.global_step;
    save(done);
    if (!dir.empty()) {
      io::append_line(metrics_path, m.to_json());
      io::write_atomic(curves_path, detail::curves_svg(history, "kiln " + spec.arch + " on " + config.dataset));
    }
    if (config.progress && (loader.skipped() > 0 || test_loader.skipped() > 0))
      std::fprintf(stderr, "kiln: epoch %d skipped %lld training and %lld test images that failed to decode (--strict makes that an error)\n",
                   m.epoch, static_cast<long long>(loader.skipped()), static_cast<long long>(test_loader.skipped()));
    if (config.progress) {
      std::printf("epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.2fs  %.0f img/s  data wait %.1f%%  lr %s\n",
                  m.epoch, config.epochs, m.train_loss, 100 * m.train_acc, m.test_loss, 100 * m.test_acc, m.epoch_s,
                  m.images_per_s, m.data_wait_pct, fmt("%.3g", m.lr).c_str());
      std::fflush(stdout);
    }
    pos = done;
  }
  return history;
}

}  // namespace kiln::train

// The training loop behind `kiln train`: epochs of shuffled batches through TrainStep, progress,
// evaluation, the run's reports (metrics.jsonl, curves.svg, TensorBoard) and checkpoints.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "io/files.h"
#include "kiln/cuda.h"
#include "train/evaluate.h"
#include "train/report.h"
#include "train/session.h"
#include "train/signals.h"
#include "train/step.h"
#include "train/tensorboard.h"

namespace kiln::train {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The part of an epoch this process runs: from its first batch, or from where a resumed run stopped.
struct EpochRun {
  detail::RunState start;  // position and tallies when this process took the epoch up
  Clock::time_point t0 = Clock::now();
  std::int64_t step = 0;   // batches done in the epoch
  double lr = 0;            // of the latest step
};

class EpochLoop {
 public:
  explicit EpochLoop(detail::Session& s);
  std::vector<EpochMetrics> run();

 private:
  void announce() const;
  EpochMetrics train_epoch(int epoch);
  void tick(const EpochRun& r, const detail::Tallies& tallies);
  void check_finite(double loss_total, const EpochRun& r);
  [[noreturn]] void interrupt(const EpochRun& r, const detail::Tallies& tallies);
  [[noreturn]] void stop_between_epochs(int epochs_done);
  EpochMetrics measure(const EpochRun& r, const detail::Tallies& tallies);
  void report(const EpochMetrics& m);

  detail::Session& s_;
  const Device dev_;
  detail::TrainStep step_;
  detail::Progress progress_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::int64_t tensorboard_every_;  // steps between train-loss points, besides the progress ticks
  std::vector<EpochMetrics> history_;
  std::int64_t global_step_;
};

EpochLoop::EpochLoop(detail::Session& s)
    : s_(s),
      dev_(s.config.device),
      step_(*s.model, s.spec, *s.optimizer),
      progress_(s.config.progress),
      tensorboard_every_(std::max<std::int64_t>(1, s.steps_per_epoch / 10)),
      history_(s.state.history),
      global_step_(s.state.global_step) {
  if (s.paths.enabled()) tensorboard_ = std::make_unique<TensorBoardWriter>(s.paths.dir);
}

void EpochLoop::announce() const {
  const Config& c = s_.config;
  const std::int64_t params = s_.model->parameter_count();
  if (s_.paths.enabled())
    io::append_line(s_.paths.metrics, detail::metrics_config_line(c, params, c.resume ? s_.state.epoch : -1));
  if (!c.progress) return;
  const std::string resuming =
      c.resume ? ", resuming after epoch " + std::to_string(s_.state.epoch) +
                     (s_.state.batch ? " step " + std::to_string(s_.state.batch) : "")
               : "";
  std::fprintf(stderr, "kiln: training %s (%lld parameters) on %s, %s: %lld train / %lld test images, %lld steps/epoch%s\n",
               s_.spec.arch.c_str(), static_cast<long long>(params), dev_.str().c_str(), c.dataset.c_str(),
               static_cast<long long>(s_.train_source->size()), static_cast<long long>(s_.test_source->size()),
               static_cast<long long>(s_.steps_per_epoch), resuming.c_str());
}

std::vector<EpochMetrics> EpochLoop::run() {
  announce();
  for (int epoch = s_.state.epoch; epoch < s_.config.epochs; ++epoch) {
    report(train_epoch(epoch));
    // A stop that came during the epoch's last step: the epoch's checkpoint is the place to stop.
    if (detail::stop_requested() && epoch + 1 < s_.config.epochs) stop_between_epochs(epoch + 1);
  }
  return history_;
}

void EpochLoop::stop_between_epochs(int epochs_done) {
  detail::clear_stop();
  throw Interrupted(kiln::detail::str(
      "interrupted after epoch ", epochs_done, " of ", s_.config.epochs,
      s_.paths.enabled() ? "; checkpoint written to " + s_.paths.checkpoint + " (continue with --resume)"
                         : std::string("; no --out folder, nothing saved")));
}

EpochMetrics EpochLoop::train_epoch(int epoch) {
  EpochRun r;
  r.start.epoch = epoch;
  r.start.global_step = global_step_;
  if (epoch == s_.state.epoch && s_.state.batch > 0) r.start = s_.state;  // resumed in the middle
  r.step = r.start.batch;
  r.lr = s_.optimizer->lr();
  detail::Tallies tallies(dev_, r.start.loss_sum, r.start.correct, r.start.seen);
  s_.model->set_training(true);
  s_.loader->start_epoch(epoch, r.start.batch);
  r.t0 = Clock::now();
  data::Batch batch;
  while (detail::next_batch(*s_.loader, batch)) {
    r.lr = s_.optimizer->lr();  // what the step applies (computed on the device from the same schedule)
    Tensor loss = step_.run(batch, tallies);
    ++r.step;
    ++global_step_;
    if (dev_.is_cpu()) check_finite(loss.item(), r);  // free on the CPU; a GPU checks at the ticks
    tick(r, tallies);
    if (detail::stop_requested() && r.step < s_.steps_per_epoch) interrupt(r, tallies);
  }
  return measure(r, tallies);
}

// Reads the device tallies (a host sync): at progress-line updates and every tenth of an epoch.
void EpochLoop::tick(const EpochRun& r, const detail::Tallies& tallies) {
  const bool show = progress_.due(), log = tensorboard_ && r.step % tensorboard_every_ == 0;
  if (!show && !log) return;
  const double ls = tallies.loss_sum();
  check_finite(ls, r);
  const double mean_loss = ls / static_cast<double>(tallies.seen());
  if (log) {
    tensorboard_->scalar("train/loss", global_step_, mean_loss);
    tensorboard_->scalar("train/lr", global_step_, r.lr);
  }
  if (!show) return;
  const double acc = static_cast<double>(tallies.correct()) / static_cast<double>(tallies.seen());
  const double rate = static_cast<double>(tallies.seen() - r.start.seen) / std::max(seconds_since(r.t0), 1e-9);
  const double eta = static_cast<double>(s_.loader->dataset_size() - tallies.seen()) / std::max(rate, 1e-9);
  char line[256];
  std::snprintf(line, sizeof line, "epoch %d/%d [%lld/%lld] loss %.4f acc %.2f%% %.0f img/s ETA %.0fs",
                r.start.epoch + 1, s_.config.epochs, static_cast<long long>(r.step),
                static_cast<long long>(s_.steps_per_epoch), mean_loss, 100.0 * acc, rate, eta);
  progress_.show(line);
}

void EpochLoop::check_finite(double loss_total, const EpochRun& r) {
  if (std::isfinite(loss_total)) return;
  progress_.finish();
  KILN_FAIL("the loss became ", std::isnan(loss_total) ? "NaN" : "infinite", " in epoch ", r.start.epoch + 1,
            dev_.is_cuda() ? " by step " : " at step ", r.step, " of ", s_.steps_per_epoch,
            "; try a lower --lr. ", s_.last_good_checkpoint());
}

// A stop was requested: checkpoint the position inside the epoch, then stop.
void EpochLoop::interrupt(const EpochRun& r, const detail::Tallies& tallies) {
  if (dev_.is_cuda()) cuda::synchronize(dev_.index);
  progress_.finish();
  detail::RunState at = r.start;
  at.batch = r.step;
  at.global_step = global_step_;
  at.loss_sum = tallies.loss_sum();
  at.correct = tallies.correct();
  at.seen = tallies.seen();
  at.elapsed = r.start.elapsed + seconds_since(r.t0);
  at.wait = r.start.wait + s_.loader->wait_seconds();
  at.history = history_;
  s_.save(at);
  detail::clear_stop();
  throw Interrupted(kiln::detail::str(
      "interrupted in epoch ", r.start.epoch + 1, " after step ", r.step, " of ", s_.steps_per_epoch,
      s_.paths.enabled() ? "; checkpoint written to " + s_.paths.checkpoint + " (continue with --resume)"
                         : std::string("; no --out folder, nothing saved")));
}

// The epoch's metrics: its tallies, timing and a pass over the test set.
EpochMetrics EpochLoop::measure(const EpochRun& r, const detail::Tallies& tallies) {
  if (dev_.is_cuda()) cuda::synchronize(dev_.index);
  const double epoch_s = r.start.elapsed + seconds_since(r.t0);
  const double wait_s = r.start.wait + s_.loader->wait_seconds();
  progress_.finish();
  const double ls = tallies.loss_sum();
  check_finite(ls, r);
  const auto seen = static_cast<double>(tallies.seen());
  EpochMetrics m;
  m.epoch = r.start.epoch + 1;
  m.train_loss = ls / seen;
  m.train_acc = static_cast<double>(tallies.correct()) / seen;
  const EvalResult ev = detail::run_eval(*s_.model, s_.spec, *s_.test_loader);
  KILN_CHECK(ev.samples > 0, "none of the test set's images could be decoded (", s_.test_source->describe(),
             "); no accuracy can be measured");
  KILN_CHECK(std::isfinite(ev.loss), "the test loss became ", std::isnan(ev.loss) ? "NaN" : "infinite",
             " after epoch ", m.epoch, ": the weights diverged in its last steps; try a lower --lr. ",
             s_.last_good_checkpoint());
  m.test_loss = ev.loss;
  m.test_acc = ev.accuracy;
  m.epoch_s = epoch_s;
  m.images_per_s = (seen - static_cast<double>(r.start.seen)) / std::max(epoch_s - r.start.elapsed, 1e-9);
  m.data_wait_pct = 100.0 * wait_s / std::max(epoch_s, 1e-9);
  m.lr = r.lr;
  return m;
}

// A finished epoch: checkpoint, metrics.jsonl, curves.svg, TensorBoard and the summary line.
void EpochLoop::report(const EpochMetrics& m) {
  history_.push_back(m);
  detail::RunState done;
  done.epoch = m.epoch;
  done.global_step = global_step_;
  done.history = history_;
  s_.save(done);
  if (s_.paths.enabled()) {
    io::append_line(s_.paths.metrics, m.to_json());
    io::write_atomic(s_.paths.curves,
                     detail::curves_svg(history_, "kiln " + s_.spec.arch + " on " + s_.config.dataset));
  }
  if (tensorboard_) {
    const std::pair<const char*, double> scalars[] = {
        {"epoch/train_loss", m.train_loss}, {"epoch/train_acc", m.train_acc},         {"epoch/test_loss", m.test_loss},
        {"epoch/test_acc", m.test_acc},     {"epoch/images_per_s", m.images_per_s}, {"epoch/data_wait_pct", m.data_wait_pct}};
    for (const auto& [tag, value] : scalars) tensorboard_->scalar(tag, global_step_, value);
    tensorboard_->flush();
  }
  if (!s_.config.progress) return;
  const std::int64_t skipped = s_.loader->skipped(), test_skipped = s_.test_loader->skipped();
  if (skipped > 0 || test_skipped > 0)
    std::fprintf(stderr, "kiln: epoch %d skipped %lld training and %lld test images that failed to decode (--strict makes that an error)\n",
                 m.epoch, static_cast<long long>(skipped), static_cast<long long>(test_skipped));
  std::printf("epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.2fs  %.0f img/s  data wait %.1f%%  lr %s\n",
              m.epoch, s_.config.epochs, m.train_loss, 100 * m.train_acc, m.test_loss, 100 * m.test_acc, m.epoch_s,
              m.images_per_s, m.data_wait_pct, fmt("%.3g", m.lr).c_str());
  std::fflush(stdout);
}
}  // namespace

std::vector<EpochMetrics> fit(const Config& config, std::shared_ptr<const data::Source> train,
                              std::shared_ptr<const data::Source> test) {
  if (config.profile_steps > 0) return profile(config, std::move(train), std::move(test));
  detail::Session session(config, std::move(train), std::move(test));
  return EpochLoop(session).run();
}

std::vector<EpochMetrics> fit(const Config& config, const data::Dataset& train, const data::Dataset& test) {
  return fit(config, data::in_memory(train), data::in_memory(test));
}

}  // namespace kiln::train

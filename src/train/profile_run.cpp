// `kiln train --profile N` and `kiln bench`: the training step of a run, timed per layer after a
// warm-up, then the table; nothing is saved.
#include <chrono>
#include <cstdio>

#include "kiln/cuda.h"
#include "kiln/profile.h"
#include "train/session.h"
#include "train/step.h"

namespace kiln::train {

namespace {
double wall_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Times the steps after the warm-up ones: each step() call marks the end of one training step.
class StepTimer {
 public:
  StepTimer(Device device, int warmup) : device_(device), warmup_(warmup) {
    if (warmup_ == 0) begin();
  }
  void step() {
    ++done_;
    if (done_ == warmup_) {
      begin();
    } else if (done_ > warmup_) {
      profile::end_step(device_);
      const double t = wall_ms();
      ms_sum_ += t - t0_;
      t0_ = t;
      ++timed_;
    }
  }
  std::int64_t timed() const { return timed_; }
  double step_ms() const { return ms_sum_ / static_cast<double>(timed_); }

 private:
  void begin() {  // warm-up over: start timing from here
    if (device_.is_cuda()) cuda::synchronize(device_.index);
    profile::reset();
    profile::set_enabled(true);
    t0_ = wall_ms();
  }
  Device device_;
  int warmup_;
  std::int64_t done_ = 0, timed_ = 0;
  double t0_ = 0, ms_sum_ = 0;
};

void print_table(const detail::Session& s, const StepTimer& timer) {
  const Config& c = s.config;
  std::printf("kiln profile: %s on %s, batch %lld, input %s, %lld steps after %d warm-up steps\n%s",
              s.spec.arch.c_str(), c.device.str().c_str(), static_cast<long long>(c.batch_size),
              shape_str(s.spec.input).c_str(), static_cast<long long>(timer.timed()), c.profile_warmup_steps,
              profile::table(timer.step_ms()).c_str());
  std::printf("throughput: %.1f images/s\n", static_cast<double>(c.batch_size) * 1000.0 / timer.step_ms());
  std::fflush(stdout);
}
}  // namespace

std::vector<EpochMetrics> profile(const Config& config, std::shared_ptr<const data::Source> train,
                                  std::shared_ptr<const data::Source> test) {
  KILN_CHECK(config.profile_steps > 0, "profile: profile_steps must be at least 1, got ", config.profile_steps);
  detail::Session s(config, std::move(train), std::move(test));
  detail::TrainStep step(*s.model, s.spec, *s.optimizer);
  detail::Tallies tallies(config.device, 0.0, 0, 0);
  StepTimer timer(config.device, config.profile_warmup_steps);
  std::int64_t steps_run = 0;
  s.model->set_training(true);
  data::Batch batch;
  for (int epoch = s.state.epoch; epoch < config.epochs; ++epoch) {
    s.loader->start_epoch(epoch, epoch == s.state.epoch ? s.state.batch : 0);
    while (detail::next_batch(*s.loader, batch)) {
      step.run(batch, tallies);
      ++steps_run;
      timer.step();
      if (timer.timed() == config.profile_steps) {
        profile::set_enabled(false);
        print_table(s, timer);
        return s.state.history;
      }
    }
  }
  profile::set_enabled(false);
  KILN_FAIL("--profile ", config.profile_steps, " with ", config.profile_warmup_steps,
            " warm-up steps needs more steps than the run has left (", steps_run,
            "); lower --profile or raise --epochs");
}

}  // namespace kiln::train

// Training configuration: validation of what a user can get wrong, and the JSON forms of the
// config and of one epoch's metrics (metrics.jsonl, checkpoint metadata).
#include <cmath>

#include "io/json.h"
#include "kiln/train.h"
#include "optim/registry.h"
#include "train/architectures.h"
#include "train/report.h"

namespace kiln::train {

void Config::validate() const {
  check_in_range("--epochs", epochs, 1, kMaxEpochs);
  check_in_range("--batch-size", batch_size, 1, kMaxBatchSize);
  check_in_range("--profile", profile_steps, 0, kMaxSteps);
  check_in_range("--warmup", profile_warmup_steps, 0, kMaxSteps);
  KILN_CHECK(std::isfinite(lr) && lr > 0.0f, "--lr must be a positive number, got ", lr);
  KILN_CHECK(std::isfinite(momentum) && momentum >= 0.0f && momentum < 1.0f, "--momentum must be in [0, 1), got ",
             momentum);
  KILN_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0f, "--weight-decay must be >= 0, got ", weight_decay);
  optim::lookup(optimizer, "--optimizer");
  architecture(model.arch, "--model").check_fields(model);
  optim::Schedule::parse(schedule);
  KILN_CHECK(std::isfinite(gamma) && gamma > 0.0f && gamma <= 1.0f, "--gamma must be in (0, 1], got ", gamma);
  check_in_range("--step-epochs", step_epochs, 0, kMaxEpochs);
  KILN_CHECK(warmup_epochs >= 0 && warmup_epochs < epochs, "--warmup-epochs must be in [0, epochs), got ",
             warmup_epochs);
  KILN_CHECK(workers >= 1 && workers <= 256, "--workers must be in [1, 256], got ", workers);
  KILN_CHECK(resize == 0 || (resize >= 8 && resize <= 4096), "--resize must be 0 (off) or in [8, 4096], got ", resize);
  KILN_CHECK(!(resume && out_dir.empty()), "--resume needs the run folder (--out)");
}

namespace {
io::Json config_json(const Config& c) {
  io::Json j = {{"model", c.model.arch}};
  architecture(c.model.arch).add_json_fields(c.model, j);
  j["dataset"] = c.dataset;
  j["epochs"] = c.epochs;
  j["batch_size"] = c.batch_size;
  j["optimizer"] = c.optimizer;
  j["lr"] = io::json_number(c.lr);
  j["momentum"] = io::json_number(c.momentum);
  j["nesterov"] = c.nesterov;
  j["weight_decay"] = io::json_number(c.weight_decay);
  j["schedule"] = c.schedule;
  j["resize"] = c.resize;
  j["groups"] = c.model.groups;  // every architecture's, at the place metrics.jsonl readers know it
  j["warmup_epochs"] = c.warmup_epochs;
  j["step_epochs"] = c.step_epochs;
  j["gamma"] = io::json_number(c.gamma);
  j["seed"] = c.seed;
  j["workers"] = c.workers;
  j["device"] = c.device.str();
  return j;
}
}  // namespace

std::string Config::to_json() const { return io::to_text(config_json(*this)); }

// The measurements are doubles and are written exactly (nlohmann's shortest round-trip form).
std::string EpochMetrics::to_json() const {
  return io::to_text({{"epoch", epoch},
                      {"train_loss", train_loss},
                      {"train_acc", train_acc},
                      {"test_loss", test_loss},
                      {"test_acc", test_acc},
                      {"epoch_s", epoch_s},
                      {"images_per_s", images_per_s},
                      {"data_wait_pct", data_wait_pct},
                      {"lr", lr}});
}

namespace detail {
std::string metrics_config_line(const Config& config, std::int64_t parameters, int resumed_from_epoch) {
  return io::to_text(
      {{"config", config_json(config)}, {"parameters", parameters}, {"resumed_from_epoch", resumed_from_epoch}});
}
}  // namespace detail

}  // namespace kiln::train

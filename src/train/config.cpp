// Training configuration: validation of what a user can get wrong, and the JSON forms of the
// config and of one epoch's metrics (metrics.jsonl, checkpoint metadata).
#include <cmath>
#include <sstream>

#include "kiln/train.h"
#include "train/checkpoint.h"
#include "train/report.h"

namespace kiln::train {

void Config::validate() const {
  KILN_CHECK(epochs >= 1, "--epochs must be at least 1, got ", epochs);
  KILN_CHECK(batch_size >= 1, "--batch-size must be at least 1, got ", batch_size);
  KILN_CHECK(std::isfinite(lr) && lr > 0.0f, "--lr must be a positive number, got ", lr);
  KILN_CHECK(std::isfinite(momentum) && momentum >= 0.0f && momentum < 1.0f, "--momentum must be in [0, 1), got ",
             momentum);
  KILN_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0f, "--weight-decay must be >= 0, got ", weight_decay);
  KILN_CHECK(optimizer == "sgd" || optimizer == "adam" || optimizer == "adamw", "unknown --optimizer '", optimizer,
             "' (expected sgd, adam or adamw)");
  optim::Schedule::parse(schedule);
  KILN_CHECK(warmup_epochs >= 0 && warmup_epochs < epochs, "--warmup-epochs must be in [0, epochs), got ",
             warmup_epochs);
  KILN_CHECK(workers >= 1 && workers <= 256, "--workers must be in [1, 256], got ", workers);
  KILN_CHECK(resize == 0 || (resize >= 8 && resize <= 4096), "--resize must be 0 (off) or in [8, 4096], got ", resize);
  KILN_CHECK(!(resume && out_dir.empty()), "--resume needs the run folder (--out)");
}

std::string Config::to_json() const {
  std::ostringstream o;
  o << "{\"model\":" << detail::json_string(model.arch);
  if (model.arch == "mlp") o << ",\"hidden\":[" << detail::join_ints(model.hidden) << "]";
  o << ",\"dataset\":" << detail::json_string(dataset) << ",\"epochs\":" << epochs << ",\"batch_size\":" << batch_size
    << ",\"optimizer\":" << detail::json_string(optimizer) << ",\"lr\":" << detail::fmt_double(lr)
    << ",\"momentum\":" << detail::fmt_double(momentum) << ",\"nesterov\":" << (nesterov ? "true" : "false")
    << ",\"weight_decay\":" << detail::fmt_double(weight_decay) << ",\"schedule\":" << detail::json_string(schedule)
    << ",\"resize\":" << resize << ",\"groups\":" << model.groups << ",\"warmup_epochs\":" << warmup_epochs << ",\"seed\":" << seed << ",\"workers\":" << workers
    << ",\"device\":" << detail::json_string(device.str()) << "}";
  return o.str();
}

std::string EpochMetrics::to_json() const {
  std::ostringstream o;
  o << "{\"epoch\":" << epoch << ",\"train_loss\":" << detail::fmt_double(train_loss)
    << ",\"train_acc\":" << detail::fmt_double(train_acc) << ",\"test_loss\":" << detail::fmt_double(test_loss)
    << ",\"test_acc\":" << detail::fmt_double(test_acc) << ",\"epoch_s\":" << detail::fmt_double(epoch_s)
    << ",\"images_per_s\":" << detail::fmt_double(images_per_s)
    << ",\"data_wait_pct\":" << detail::fmt_double(data_wait_pct) << ",\"lr\":" << detail::fmt_double(lr) << "}";
  return o.str();
}

}  // namespace kiln::train

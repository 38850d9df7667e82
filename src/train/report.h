// Internal: run reports — metrics.jsonl lines, curves.svg, and the progress line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/train.h"

namespace kiln::train::detail {

// metrics.jsonl's first line for a run (or a resumed part of one): the config, the model's size and
// where it resumed (-1: a fresh run). With the other JSON forms in config.cpp.
std::string metrics_config_line(const Config& config, std::int64_t parameters, int resumed_from_epoch);
std::string curves_svg(const std::vector<EpochMetrics>& history, const std::string& title);

// One updating line on a terminal (at most 5 per second), or a plain line every few seconds otherwise.
class Progress {
 public:
  explicit Progress(bool enabled);
  bool due();  // time for an update?
  void show(const std::string& line);
  void finish();  // ends an updating line before a summary is printed

 private:
  bool enabled_, tty_;
  bool open_ = false;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace kiln::train::detail

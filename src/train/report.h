// Internal: run reports — JSON helpers, metrics.jsonl lines, curves.svg, and the progress line.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "kiln/train.h"

namespace kiln::train::detail {

std::string json_string(const std::string& s);  // quoted and escaped
// Writes `text` to `path` atomically (temporary file + rename).
void write_file_atomic(const std::string& path, const std::string& text);
void append_line(const std::string& path, const std::string& line);
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

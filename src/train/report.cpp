// Run reports: curves.svg and the progress line (metrics.jsonl lines are the JSON forms in config.cpp).
#include "train/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kiln::train::detail {

namespace {
struct Panel {
  double x0, y0, w, h;  // plot area
  double ymin, ymax;
  int epochs;
  double px(double epoch) const { return x0 + (epochs <= 1 ? w / 2 : (epoch - 1) / (epochs - 1) * w); }
  double py(double v) const { return y0 + h - (v - ymin) / (ymax - ymin) * h; }
};

std::string polyline(const Panel& p, const std::vector<EpochMetrics>& hist, double EpochMetrics::*field,
                     const char* color, bool dashed) {
  std::string pts;
  char buf[64];
  for (const auto& m : hist) {
    if (!std::isfinite(m.*field)) continue;
    std::snprintf(buf, sizeof buf, "%.1f,%.1f ", p.px(m.epoch), p.py(m.*field));
    pts += buf;
  }
  std::string s = "<polyline fill='none' stroke='" + std::string(color) + "' stroke-width='2'" +
                  (dashed ? " stroke-dasharray='6,4'" : "") + " points='" + pts + "'/>\n";
  for (const auto& m : hist) {
    if (!std::isfinite(m.*field)) continue;
    std::snprintf(buf, sizeof buf, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", p.px(m.epoch), p.py(m.*field),
                  color);
    s += buf;
  }
  return s;
}

std::string axes(const Panel& p, const char* title, bool percent) {
  char buf[512];
  std::string s;
  std::snprintf(buf, sizeof buf, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='white' stroke='#888'/>\n",
                p.x0, p.y0, p.w, p.h);
  s += buf;
  std::snprintf(buf, sizeof buf, "<text x='%.0f' y='%.0f' font-size='15' text-anchor='middle'>%s</text>\n",
                p.x0 + p.w / 2, p.y0 - 10, title);
  s += buf;
  for (int i = 0; i <= 4; ++i) {
    const double v = p.ymin + (p.ymax - p.ymin) * i / 4;
    std::snprintf(buf, sizeof buf,
                  "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#ddd'/>"
                  "<text x='%.0f' y='%.1f' font-size='11' text-anchor='end'>%.*f%s</text>\n",
                  p.x0, p.x0 + p.w, p.py(v), p.py(v), p.x0 - 6, p.py(v) + 4, percent ? 1 : 3, percent ? v * 100 : v,
                  percent ? "%" : "");
    s += buf;
  }
  const int step = std::max(1, p.epochs / 10);
  for (int e = 1; e <= p.epochs; e += step) {
    std::snprintf(buf, sizeof buf, "<text x='%.1f' y='%.0f' font-size='11' text-anchor='middle'>%d</text>\n", p.px(e),
                  p.y0 + p.h + 16, e);
    s += buf;
  }
  std::snprintf(buf, sizeof buf, "<text x='%.0f' y='%.0f' font-size='12' text-anchor='middle'>epoch</text>\n",
                p.x0 + p.w / 2, p.y0 + p.h + 34);
  s += buf;
  return s;
}

void range_of(const std::vector<EpochMetrics>& h, std::initializer_list<double EpochMetrics::*> fields, double& lo,
              double& hi) {
  lo = INFINITY;
  hi = -INFINITY;
  for (const auto& m : h)
    for (auto f : fields)
      if (std::isfinite(m.*f)) {
        lo = std::min(lo, m.*f);
        hi = std::max(hi, m.*f);
      }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) hi = lo + 1e-3, lo -= 1e-3;
  const double pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
}
}  // namespace

std::string curves_svg(const std::vector<EpochMetrics>& history, const std::string& title) {
  const int epochs = history.empty() ? 1 : history.back().epoch;
  Panel loss{70, 50, 360, 260, 0, 1, epochs}, acc{540, 50, 360, 260, 0, 1, epochs};
  range_of(history, {&EpochMetrics::train_loss, &EpochMetrics::test_loss}, loss.ymin, loss.ymax);
  loss.ymin = std::max(0.0, loss.ymin);
  range_of(history, {&EpochMetrics::train_acc, &EpochMetrics::test_acc}, acc.ymin, acc.ymax);
  acc.ymax = std::min(1.0, acc.ymax);
  std::string s =
      "<svg xmlns='http://www.w3.org/2000/svg' width='940' height='390' font-family='sans-serif'>\n"
      "<rect width='100%' height='100%' fill='#fafafa'/>\n";
  s += "<text x='470' y='20' font-size='16' text-anchor='middle' font-weight='bold'>" + title + "</text>\n";
  s += axes(loss, "loss", false) + axes(acc, "accuracy", true);
  s += polyline(loss, history, &EpochMetrics::train_loss, "#1f77b4", false);
  s += polyline(loss, history, &EpochMetrics::test_loss, "#d62728", true);
  s += polyline(acc, history, &EpochMetrics::train_acc, "#1f77b4", false);
  s += polyline(acc, history, &EpochMetrics::test_acc, "#d62728", true);
  s += "<text x='440' y='375' font-size='12' fill='#1f77b4'>— train</text>"
       "<text x='500' y='375' font-size='12' fill='#d62728'>- - test</text>\n</svg>\n";
  return s;
}

Progress::Progress(bool enabled)
    : enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0), last_(std::chrono::steady_clock::now()) {}

bool Progress::due() {
  if (!enabled_) return false;
  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - last_).count();
  if (dt < (tty_ ? 0.2 : 5.0)) return false;
  last_ = now;
  return true;
}

void Progress::show(const std::string& line) {
  if (!enabled_) return;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    open_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (open_) std::fprintf(stderr, "\r\033[K");
  open_ = false;
  std::fflush(stderr);
}

}  // namespace kiln::train::detail

// Stopping a run cleanly: the first SIGINT/SIGTERM/SIGHUP asks the loop to checkpoint and stop after
// the current step; a second one ends the process at once. SIGHUP is what a dropped SSH session or a
// closed terminal sends: without it, a disconnect would lose everything since the last epoch.
#include "train/signals.h"

#include <atomic>
#include <csignal>

#include "kiln/train.h"

namespace kiln::train {

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
  std::signal(SIGHUP, on_signal);
}

namespace detail {
bool stop_requested() { return g_stop.load(); }
void clear_stop() { g_stop.store(false); }
}  // namespace detail

}  // namespace kiln::train

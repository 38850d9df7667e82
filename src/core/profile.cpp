// Profiling: NVTX ranges and the per-layer timing table.
#include "kiln/profile.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>

#include "kiln/error.h"

#if defined(KILN_WITH_CUDA)
#include <nvtx3/nvToolsExt.h>

#include "cuda/runtime.h"
#include "kiln/cuda.h"
#endif

namespace kiln::profile {

namespace {
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Pending {
  std::string name, phase;
  double flops;
  double ms;     // CPU regions: measured directly
  int device;
  void* start;   // CUDA regions: events, read at end_step
  void* stop;
};

struct State {
  std::mutex mutex;
  bool enabled = false;
  std::vector<Pending> pending;
  std::vector<std::pair<std::string, std::string>> order;  // (name, phase) first-seen
  std::map<std::pair<std::string, std::string>, Row> totals;
  std::int64_t steps = 0;
  std::map<int, std::vector<void*>> event_pool;  // per device: an event belongs to the device it was made on
};
State& state() {
  static State* s = new State();
  return *s;
}

thread_local std::string t_layer;

#if defined(KILN_WITH_CUDA)
void* take_event(State& s, int device) {
  auto& pool = s.event_pool[device];
  if (!pool.empty()) {
    void* e = pool.back();
    pool.pop_back();
    return e;
  }
  cuda::DeviceGuard guard(device);
  cudaEvent_t e;
  KILN_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}
#endif
}  // namespace

Range::Range(const char* name) : active_(false) {
#if defined(KILN_WITH_CUDA)
  nvtxRangePushA(name);
  active_ = true;
#else
  (void)name;
#endif
}

Range::Range(const std::string& name, const char* suffix) : active_(false) {
#if defined(KILN_WITH_CUDA)
  nvtxRangePushA((name + " " + suffix).c_str());
  active_ = true;
#else
  (void)name;
  (void)suffix;
#endif
}

Range::~Range() {
#if defined(KILN_WITH_CUDA)
  if (active_) nvtxRangePop();
#endif
}

void set_enabled(bool e) { state().enabled = e; }
bool enabled() { return state().enabled; }

Scope::Scope(const std::string& name, const char* phase, Device device, double flops)
    : range_(name, phase), phase_(phase), device_(device), flops_(flops) {
  State& s = state();
  if (!s.enabled) return;
  name_ = name;
#if defined(KILN_WITH_CUDA)
  if (device.is_cuda()) {
    std::lock_guard<std::mutex> lock(s.mutex);
    start_ = take_event(s, device.index);
    KILN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), cuda::current_stream(device.index)));
    return;
  }
#endif
  t0_ = now_ms();
}

Scope::~Scope() {
  State& s = state();
  if (!s.enabled) return;
  std::lock_guard<std::mutex> lock(s.mutex);
#if defined(KILN_WITH_CUDA)
  if (start_) {
    void* stop = take_event(s, device_.index);
    KILN_CUDA_WARN(cudaEventRecord(static_cast<cudaEvent_t>(stop), cuda::current_stream(device_.index)));
    s.pending.push_back({name_, phase_, flops_, 0.0, device_.index, start_, stop});
    return;
  }
#endif
  s.pending.push_back({name_, phase_, flops_, now_ms() - t0_, -1, nullptr, nullptr});
}

void end_step(Device device) {
  State& s = state();
  if (!s.enabled) return;
#if defined(KILN_WITH_CUDA)
  if (device.is_cuda()) cuda::synchronize(device.index);
#else
  (void)device;
#endif
  std::lock_guard<std::mutex> lock(s.mutex);
  for (Pending& p : s.pending) {
    double ms = p.ms;
#if defined(KILN_WITH_CUDA)
    if (p.start) {
      float f = 0;
      KILN_CUDA_CHECK(cudaEventElapsedTime(&f, static_cast<cudaEvent_t>(p.start), static_cast<cudaEvent_t>(p.stop)));
      ms = f;
      s.event_pool[p.device].push_back(p.start);
      s.event_pool[p.device].push_back(p.stop);
    }
#endif
    const auto key = std::make_pair(p.name, p.phase);
    auto it = s.totals.find(key);
    if (it == s.totals.end()) {
      s.order.push_back(key);
      it = s.totals.emplace(key, Row{p.name, p.phase, 0, 0}).first;
    }
    it->second.ms += ms;
    it->second.flops += p.flops;
  }
  s.pending.clear();
  ++s.steps;
}

void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
#if defined(KILN_WITH_CUDA)
  for (Pending& p : s.pending)
    if (p.start) s.event_pool[p.device].push_back(p.start), s.event_pool[p.device].push_back(p.stop);
#endif
  s.pending.clear();
  s.totals.clear();
  s.order.clear();
  s.steps = 0;
}

std::int64_t steps() { return state().steps; }

std::vector<Row> rows() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::vector<Row> out;
  const double n = s.steps > 0 ? static_cast<double>(s.steps) : 1.0;
  for (const auto& key : s.order) {
    Row r = s.totals.at(key);
    r.ms /= n;
    r.flops /= n;
    out.push_back(r);
  }
  return out;
}

std::string table(double step_ms) {
  const std::vector<Row> rs = rows();
  // Layers: forward and backward side by side, in forward order.
  std::vector<std::string> layers;
  std::map<std::string, std::pair<const Row*, const Row*>> by_layer;
  std::vector<const Row*> others;
  for (const Row& r : rs) {
    if (r.phase == "fwd" || r.phase == "bwd") {
      if (!by_layer.count(r.name)) layers.push_back(r.name);
      auto& slot = by_layer[r.name];
      (r.phase == "fwd" ? slot.first : slot.second) = &r;
    } else {
      others.push_back(&r);
    }
  }
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-34s %9s %9s %9s %7s %9s %9s\n", "layer", "fwd ms", "bwd ms", "total ms",
                "share", "fwd TF/s", "bwd TF/s");
  out += line;
  double sum = 0;
  auto tflops = [](const Row* r) -> std::string {
    if (!r || r->flops <= 0 || r->ms <= 0) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.3f", r->flops / (r->ms * 1e9));
    return b;
  };
  for (const auto& name : layers) {
    const auto& [f, b] = by_layer[name];
    const double fm = f ? f->ms : 0, bm = b ? b->ms : 0;
    sum += fm + bm;
    std::snprintf(line, sizeof line, "%-34s %9.3f %9.3f %9.3f %6.1f%% %9s %9s\n", name.substr(0, 34).c_str(), fm, bm,
                  fm + bm, step_ms > 0 ? 100 * (fm + bm) / step_ms : 0.0, tflops(f).c_str(), tflops(b).c_str());
    out += line;
  }
  for (const Row* r : others) {
    sum += r->ms;
    std::snprintf(line, sizeof line, "%-34s %29.3f %6.1f%%\n", (r->name + " (" + r->phase + ")").substr(0, 34).c_str(),
                  r->ms, step_ms > 0 ? 100 * r->ms / step_ms : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-34s %29.3f %6.1f%%   (measured step: %.3f ms)\n", "sum of the regions", sum,
                step_ms > 0 ? 100 * sum / step_ms : 0.0, step_ms);
  out += line;
  return out;
}

thread_local double t_layer_bwd_flops = 0;
const std::string& current_layer() { return t_layer; }
double current_layer_backward_flops() { return t_layer_bwd_flops; }
LayerScope::LayerScope(const std::string& name, double backward_flops)
    : previous_(t_layer), previous_flops_(t_layer_bwd_flops) {
  t_layer = name;
  t_layer_bwd_flops = backward_flops;
}
LayerScope::~LayerScope() {
  t_layer = previous_;
  t_layer_bwd_flops = previous_flops_;
}

}  // namespace kiln::profile

// kiln/profile.h — where the time goes. NVTX ranges for Nsight Systems (every layer's forward and
// backward, the loss, the optimizer step, batch copies and data waits; no-ops in CPU-only builds),
// and the per-layer timing table of `kiln train --profile` / `kiln bench`: CUDA events on the GPU
// (read once per step, no sync inside it), a steady clock on the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/device.h"

namespace kiln::profile {

// An NVTX range for its lifetime.
class Range {
 public:
  explicit Range(const char* name);
  explicit Range(const std::string& name) : Range(name.c_str()) {}
  // Named "name suffix"; the string is only built when NVTX is compiled in (CUDA builds).
  Range(const std::string& name, const char* suffix);
  ~Range();
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;

 private:
  bool active_;
};

// Timing collection for the table (off by default; NVTX ranges are always emitted).
void set_enabled(bool enabled);
bool enabled();

// An NVTX range plus, when timing is enabled, a timed region: `name` ("features.0 conv2d"), `phase`
// ("fwd", "bwd", "step", "data"), and the floating-point operations it performs (0: not counted).
class Scope {
 public:
  Scope(const std::string& name, const char* phase, Device device, double flops = 0.0);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Range range_;
  std::string name_;  // copied only while timing is enabled
  const char* phase_;
  Device device_;
  double flops_;
  double t0_ = 0.0;
  void* start_ = nullptr;  // cudaEvent_t
};

// Ends a step: waits for its device work, folds its regions into the totals. `step_ms` is the
// wall time of the whole step measured by the caller (after the same wait).
void end_step(Device device);
void reset();

struct Row {
  std::string name, phase;
  double ms = 0;  // mean per step
  double flops = 0;  // per step
};
// Mean per measured step, in first-seen order.
std::vector<Row> rows();
std::int64_t steps();
// The table: one line per layer (forward, backward, share of the step, TFLOP/s where counted),
// then the other regions and the measured step time with the coverage of the sum.
std::string table(double step_ms);

// The layer whose forward is running on this thread (set by Sequential), so that the autograd nodes
// it records carry the layer's name and backward FLOPs into the backward pass.
const std::string& current_layer();
double current_layer_backward_flops();
class LayerScope {
 public:
  explicit LayerScope(const std::string& name, double backward_flops = 0.0);
  ~LayerScope();
  LayerScope(const LayerScope&) = delete;
  LayerScope& operator=(const LayerScope&) = delete;

 private:
  std::string previous_;
  double previous_flops_;
};

}  // namespace kiln::profile

// `kiln bench --kernels`: the bandwidth of every memory-bound kernel kiln ships, on large tensors,
// against the device's own copy bandwidth measured in the same run. Each kernel is called through
// its backend twin (src/backend/twins.inc) exactly as the ops call it; nothing is re-implemented.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/device.h"

namespace kiln::bench {

struct KernelBenchOptions {
  std::int64_t elements = 1 << 26;  // floats per large tensor (256 MiB: far beyond any L2/L3 cache)
  int repeat = 0;                   // timed runs per kernel (median reported); 0: 20 on a GPU, 5 on the CPU
  std::string filter;          // only kernels whose name contains this
  double min_fraction = 0.0;   // > 0: exit status 1 when an elementwise/reduction kernel is below it
  bool markdown = false;       // the table as Markdown (for bench/RESULTS.md)
};

// Prints the table; returns the exit status.
int kernel_bandwidth(Device device, const KernelBenchOptions& options);

}  // namespace kiln::bench

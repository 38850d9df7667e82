// `kiln bench --kernels`: the bandwidth of every memory-bound kernel kiln ships, on large tensors,
// against the device's own copy bandwidth measured in the same run. Each kernel is called through
// its backend twin (src/backend/twins.inc) exactly as the ops call it; nothing is re-implemented.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/device.h"

namespace kiln::bench {

struct KernelBenchOptions {
  std::int64_t elements = 0;   // floats per large tensor; 0: 2^26 (256 MiB) on a GPU, 2^24 on the CPU
  int repeat = 20;             // timed runs per kernel (the median is reported)
  std::string filter;          // only kernels whose name contains this
  double min_fraction = 0.0;   // > 0: exit status 1 when an elementwise/reduction kernel is below it
};

// Prints the table; returns the exit status.
int kernel_bandwidth(Device device, const KernelBenchOptions& options);

}  // namespace kiln::bench

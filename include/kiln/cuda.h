// kiln/cuda.h — CUDA runtime facts and the caching allocator's counters. Safe to include and call
// in a CPU-only build: the functions report that CUDA is not built in.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/device.h"

namespace kiln::cuda {

struct AllocatorStats {
  std::uint64_t malloc_calls = 0;     // cudaMalloc calls made (cache misses)
  std::uint64_t free_calls = 0;       // cudaFree calls made (cache flushes)
  std::uint64_t allocations = 0;      // blocks handed out
  std::uint64_t cache_hits = 0;       // blocks reused from the free lists
  std::uint64_t bytes_in_use = 0;     // bytes held by live tensors (rounded sizes)
  std::uint64_t bytes_reserved = 0;   // bytes obtained from cudaMalloc and not yet freed
  std::uint64_t peak_bytes_in_use = 0;
};

AllocatorStats allocator_stats(int device = 0);
// Returns every cached, unused block to the driver (cudaFree).
void empty_cache(int device = 0);
// Waits for all work queued on the device.
void synchronize(int device = 0);

// Version strings for `kiln info`: runtime, driver, cuBLAS, cuDNN ("not built" without CUDA).
struct Versions {
  std::string runtime, driver, cublas, cudnn;
};
Versions versions();
// One line per device: "cuda:0 NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB".
std::string describe_devices();

}  // namespace kiln::cuda

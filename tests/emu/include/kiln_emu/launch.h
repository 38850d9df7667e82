// Kernel launches on the emulated CUDA device: the one entry point kiln::cuda::launch
// (src/cuda/launch.h) calls in KILN_CUDA=EMULATE builds instead of <<<>>>.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>

namespace kiln_emu {

struct LaunchSite {
  const char* file;
  int line;
};

// Checks the launch as CUDA does (block and grid limits, zero-size launches, the stream) and that
// every pointer argument is null, device memory or pinned host memory; then queues the grid on
// `stream`, where `body` runs once per CUDA thread. Returns the launch error and records it as the
// calling thread's last error (cudaGetLastError), like a <<<>>> launch.
cudaError_t launch(const LaunchSite& site, dim3 grid, dim3 block, std::size_t dynamic_smem, cudaStream_t stream,
                   const void* const* pointers, std::size_t n_pointers, std::function<void()> body);

}  // namespace kiln_emu

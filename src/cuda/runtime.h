// Internal CUDA runtime services: per-device streams and library handles, the caching allocator,
// pinned host memory and copies. Host code only (no kernels).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>

#include "cuda/check.h"
#include "kiln/device.h"

namespace kiln::cuda {

// The stream kiln launches on for `device`: the thread's override (StreamGuard) or the device's
// compute stream, a non-blocking stream created on first use (never the legacy default stream).
cudaStream_t current_stream(int device);
// Makes `device` current on this thread (cudaSetDevice) when it is not already.
void set_device(int device);

// Makes `device` current for its lifetime and restores the previous one (for code that must touch
// a device without changing the caller's).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Routes this thread's launches for `device` to `stream` for the guard's lifetime. Caution: device
// memory is reused in the order of the stream it was allocated on, so a tensor allocated under a
// guard must not be used on another stream after it is freed (there is no record_stream yet).
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t previous_;
};

// cuBLAS / cuDNN handles of `device`, bound to its current stream.
cublasHandle_t cublas(int device);
cudnnHandle_t cudnn(int device);

// ---- caching allocator ---------------------------------------------------------------------------
struct Block;
// Returns a block of at least `bytes` for use on `stream`; reuses a cached block when one fits.
Block* allocate(std::size_t bytes, int device, cudaStream_t stream);
void* block_ptr(const Block* b);
// Returns the block to its stream's free list (no cudaFree).
void release(Block* b);

// ---- host memory and copies ------------------------------------------------------------------------
void* pinned_alloc(std::size_t bytes);
void pinned_free(void* p);
// Copies `bytes` between any two of host / device memory on the current stream of the device
// involved; when `sync` is set, waits for the copy to finish.
void copy(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes, bool sync);

// Launch geometry for a 1-D grid-stride kernel over n elements.
inline unsigned grid_for(long long n, unsigned block = 256) {
  long long g = (n + block - 1) / block;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

}  // namespace kiln::cuda

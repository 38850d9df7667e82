// Device helpers shared by kiln's kernels: grid-stride indexing and deterministic block reductions.
#pragma once

#include <cstdint>

namespace kiln::cuda::dev {

// Whether a pointer allows 16-byte (float4) accesses: the host's test before a vectorised launch.
inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

__device__ __forceinline__ std::int64_t global_tid() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

// Sums accumulate in double, like the CPU twins (the kernels using them are memory-bound either way).
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32) in a fixed order; the result is valid in every
// thread. `smem` holds 33 doubles; the trailing barrier lets the caller reuse it at once.
__device__ __forceinline__ double block_sum(double v, double* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double w = lane < nwarps ? smem[lane] : 0.0;
    w = warp_sum(w);
    if (lane == 0) smem[32] = w;
  }
  __syncthreads();
  const double r = smem[32];
  __syncthreads();
  return r;
}

}  // namespace kiln::cuda::dev

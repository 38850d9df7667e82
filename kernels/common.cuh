// Device helpers shared by kiln's kernels (kernels/*.cu): thread indexing, grid-stride loops and
// deterministic warp / block reductions. Defined here once; the kernels do not spell them out.
// Compiled by nvcc and, for KILN_CUDA=EMULATE, as C++ by the host compiler (tests/emu).
#pragma once

#include <cmath>
#include <cstdint>

namespace kiln::cuda::dev {

// Whether a pointer allows 16-byte (float4) accesses: the host's test before a vectorised launch.
inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// ---- indexing --------------------------------------------------------------------------------------
// 64-bit, so that a grid may cover more than 2^31 elements. 1-D grids (x only).
__device__ __forceinline__ std::int64_t global_tid() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_threads() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }
// Warps (blockDim.x a multiple of 32): this thread's warp in the grid, and the number of warps.
__device__ __forceinline__ std::int64_t global_warp() {
  return static_cast<std::int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
}
__device__ __forceinline__ std::int64_t grid_warps() {
  return static_cast<std::int64_t>(gridDim.x) * (blockDim.x >> 5);
}

// ---- strided loops ---------------------------------------------------------------------------------
// The indices first, first + step, first + 2 step, ... below end, for a range-based for:
//   for (std::int64_t i : strided(first, end, step)) body;
// is exactly `for (std::int64_t i = first; i < end; i += step) body;`.
class Strided {
 public:
  class iterator {
   public:
    __device__ __forceinline__ iterator(std::int64_t i, std::int64_t step) : i_(i), step_(step) {}
    __device__ __forceinline__ std::int64_t operator*() const { return i_; }
    __device__ __forceinline__ iterator& operator++() {
      i_ += step_;
      return *this;
    }
    // Only ever compared with end(): the loop goes on while i < end.
    __device__ __forceinline__ bool operator!=(const iterator& end) const { return i_ < end.i_; }

   private:
    std::int64_t i_, step_;
  };
  __device__ __forceinline__ Strided(std::int64_t first, std::int64_t end, std::int64_t step)
      : first_(first), end_(end), step_(step) {}
  __device__ __forceinline__ iterator begin() const { return iterator(first_, step_); }
  __device__ __forceinline__ iterator end() const { return iterator(end_, 0); }

 private:
  std::int64_t first_, end_, step_;
};

__device__ __forceinline__ Strided strided(std::int64_t first, std::int64_t end, std::int64_t step) {
  return Strided(first, end, step);
}
// Grid-stride loop, one thread per index: [0, n), or [first, n).
__device__ __forceinline__ Strided grid_stride(std::int64_t n) { return Strided(global_tid(), n, grid_threads()); }
__device__ __forceinline__ Strided grid_stride(std::int64_t first, std::int64_t n) {
  return Strided(first + global_tid(), n, grid_threads());
}
// One warp per index (uniform across the warp, so warp collectives inside are safe).
__device__ __forceinline__ Strided warp_stride(std::int64_t n) { return Strided(global_warp(), n, grid_warps()); }
// One block per index (uniform across the block, so barriers inside are safe).
__device__ __forceinline__ Strided block_stride(std::int64_t n) {
  return Strided(blockIdx.x, n, static_cast<std::int64_t>(gridDim.x));
}

// ---- reductions ------------------------------------------------------------------------------------
// In double: sums accumulate like the CPU twins (the kernels using them are memory-bound either way),
// and a float max converts exactly. fmax ignores NaN, like std::max in the CPU twins.
struct Sum {
  __device__ __forceinline__ double operator()(double a, double b) const { return a + b; }
};
struct Max {
  __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

// xor butterfly over the warp: every lane ends with the same (bit-identical) value.
template <class Op>
__device__ __forceinline__ double warp_allreduce(double v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) { return warp_allreduce(v, Sum{}); }
__device__ __forceinline__ double warp_max(double v) { return warp_allreduce(v, Max{}); }

// Reduction over the block (blockDim.x a multiple of 32) in a fixed order: each warp's butterfly,
// then warp 0's over the warps' results (`identity` for the lanes past the last warp). The result is
// valid in every thread. `smem` holds 33 doubles; the trailing barrier lets the caller reuse it at once.
template <class Op>
__device__ __forceinline__ double block_allreduce(double v, Op op, double identity, double* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = warp_allreduce(v, op);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double w = lane < nwarps ? smem[lane] : identity;
    w = warp_allreduce(w, op);
    if (lane == 0) smem[32] = w;
  }
  __syncthreads();
  const double r = smem[32];
  __syncthreads();
  return r;
}
__device__ __forceinline__ double block_sum(double v, double* smem) { return block_allreduce(v, Sum{}, 0.0, smem); }
__device__ __forceinline__ double block_max(double v, double* smem) {
  return block_allreduce(v, Max{}, -INFINITY, smem);
}

}  // namespace kiln::cuda::dev

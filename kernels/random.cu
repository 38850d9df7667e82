// CUDA twins of the random fills: uniform and normal from the shared Philox counter RNG
// (kiln/random.h). Element i is uniform/normal(seed, offset + i), exactly like the CPU twin, so both
// devices produce the same numbers; each thread draws one Philox block (four elements). The affine
// step uses explicitly rounded float ops (__fmul_rn, __fadd_rn) so nvcc cannot fuse it into an FMA
// and change the last bit.
#include <cstdint>

#include "backend/backend.h"
#include "cuda/launch.h"
#include "common.cuh"
#include "cuda/runtime.h"
#include "kiln/random.h"

namespace {

using kiln::cuda::launch;

using kiln::Tensor;
using std::int64_t;
using std::uint64_t;
using kiln::cuda::dev::grid_stride;

constexpr int kThreads = 256;

// One thread per Philox block: up to four elements from one Philox call (two for normals).
// y[i] = lo + (hi - lo) * uniform(seed, offset + i); span = hi - lo, computed on the host in float.
__global__ void uniform_kernel(float* y, uint64_t n, uint64_t seed, uint64_t offset, float lo, float span) {
  const uint64_t b0 = kiln::philox::first_block(offset), nb = kiln::philox::block_count(offset, n);
  for (int64_t j : grid_stride(static_cast<int64_t>(nb)))
    kiln::philox::for_elements_in_block(kiln::philox::Uniforms{seed}, offset, n, b0 + static_cast<uint64_t>(j),
                                        [&](uint64_t i, float u) { y[i] = __fadd_rn(lo, __fmul_rn(span, u)); });
}

// y[i] = mean + stddev * normal(seed, offset + i)
__global__ void normal_kernel(float* y, uint64_t n, uint64_t seed, uint64_t offset, float mean, float stddev) {
  const uint64_t b0 = kiln::philox::first_block(offset), nb = kiln::philox::block_count(offset, n);
  for (int64_t j : grid_stride(static_cast<int64_t>(nb)))
    kiln::philox::for_elements_in_block(kiln::philox::Normals{seed}, offset, n, b0 + static_cast<uint64_t>(j),
                                        [&](uint64_t i, float z) { y[i] = __fadd_rn(mean, __fmul_rn(stddev, z)); });
}

}  // namespace

namespace kiln::cuda {

void uniform(Tensor& y, std::uint64_t seed, std::uint64_t offset, float lo, float hi) {
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  const auto blocks = static_cast<long long>(kiln::philox::block_count(offset, static_cast<uint64_t>(n)));
  launch(uniform_kernel, grid_for(blocks, kThreads), kThreads, 0, stream, y.data<float>(), static_cast<uint64_t>(n), seed,
                                                                       offset, lo, hi - lo);
}

void normal(Tensor& y, std::uint64_t seed, std::uint64_t offset, float mean, float stddev) {
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  const auto blocks = static_cast<long long>(kiln::philox::block_count(offset, static_cast<uint64_t>(n)));
  launch(normal_kernel, grid_for(blocks, kThreads), kThreads, 0, stream, y.data<float>(), static_cast<uint64_t>(n), seed,
                                                                      offset, mean, stddev);
}

}  // namespace kiln::cuda

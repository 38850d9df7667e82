// CUDA twins of the reductions: sum_all, sum_axis and broadcast_axis (the backward of a sum).
// Every reduction is deterministic: a fixed launch geometry (a function of the sizes only) and
// fixed-order warp-shuffle / shared-memory trees, no float atomics. Sums accumulate in double, like
// the CPU twin; the kernels are memory-bound, so this costs little even where FP64 is slow.
#include <cstdint>

#include "backend/backend.h"
#include "cuda/launch.h"
#include "cuda/runtime.h"
#include "common.cuh"

namespace {

using kiln::cuda::launch;

using kiln::DType;
using kiln::Tensor;
using std::int64_t;
using kiln::cuda::dev::block_stride;
using kiln::cuda::dev::block_sum;
using kiln::cuda::dev::grid_stride;
using kiln::cuda::dev::warp_stride;
using kiln::cuda::dev::warp_sum;

constexpr int kThreads = 256;      // elementwise and partial-sum blocks
constexpr int kRowThreads = 512;   // block-per-row reductions
constexpr int kMaxPartials = 1024; // sum_all: at most this many blocks in the first pass



// ---- sum_all ---------------------------------------------------------------------------------------
// Each block sums a grid-strided share of x and writes one partial: out[blockIdx.x]. Run with
// one block it writes the total. In: float (x) or double (the partials); Out: double or float.
template <class In, class Out>
__global__ void sum_partial_kernel(const In* x, int64_t n, Out* out) {
  __shared__ double smem[33];
  double acc = 0.0;
  for (int64_t i : grid_stride(n)) acc += x[i];
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<Out>(acc);
}

// ---- sum_axis ----------------------------------------------------------------------------------------
// inner == 1, short rows: one warp per row of n (8 rows per 256-thread block).
__global__ void sum_rows_warp_kernel(const float* x, float* y, int64_t outer, int64_t n) {
  const int lane = threadIdx.x & 31;
  for (int64_t r : warp_stride(outer)) {  // uniform across the warp
    const float* xr = x + r * n;
    double acc = 0.0;
    for (int64_t k = lane; k < n; k += 32) acc += xr[k];
    acc = warp_sum(acc);
    if (lane == 0) y[r] = static_cast<float>(acc);
  }
}

// inner == 1, long rows: one block per row.
__global__ void sum_rows_block_kernel(const float* x, float* y, int64_t outer, int64_t n) {
  __shared__ double smem[33];
  for (int64_t r : block_stride(outer)) {  // uniform across the block
    const float* xr = x + r * n;
    double acc = 0.0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += xr[k];
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) y[r] = static_cast<float>(acc);
  }
}

// inner > 1: one thread per output (o, i), walking k; reads are coalesced across i.
__global__ void sum_strided_kernel(const float* x, float* y, int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t j : grid_stride(total)) {
    const int64_t o = j / inner;
    const int64_t i = j - o * inner;
    const float* p = x + o * n * inner + i;
    double acc = 0.0;
    for (int64_t k = 0; k < n; ++k) acc += p[k * inner];
    y[j] = static_cast<float>(acc);
  }
}

// ---- broadcast_axis ----------------------------------------------------------------------------------
__global__ void broadcast_axis_kernel(const float* dy, float s, float* dx, int64_t total, int64_t n,
                                      int64_t inner) {
  const int64_t n_inner = n * inner;
  for (int64_t j : grid_stride(total)) {
    const int64_t o = j / n_inner;
    const int64_t i = j - (j / inner) * inner;
    dx[j] = s * dy[o * inner + i];
  }
}

unsigned capped_grid(int64_t blocks) {
  const int64_t cap = 65535LL * 8;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace

namespace kiln::cuda {

void sum_all(const Tensor& x, Tensor& y) {
  KILN_CHECK(y.numel() == 1, "sum_all: the output must have one element, got ", y.str());
  const int64_t n = x.numel();
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  cudaStream_t stream = current_stream(y.device().index);
  // The number of partials depends on n only, so the summation order (and the result) is the
  // same on every run. An empty x still launches once and writes 0.
  int64_t blocks = (n + kThreads * 4 - 1) / (kThreads * 4);
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxPartials) blocks = kMaxPartials;
  if (blocks == 1) {
    launch(sum_partial_kernel<float, float>, 1, kThreads, 0, stream, xp, n, yp);
    return;
  }
  // Scratch for the double partials, from the caching allocator on this stream (kiln has no
  // float64 dtype: an int64 tensor provides the 8-byte slots). It is released, for reuse in stream
  // order, when `partials` goes out of scope after both launches are queued.
  Tensor partials = Tensor::empty({blocks}, DType::Int64, y.device());
  double* pp = reinterpret_cast<double*>(partials.data<std::int64_t>());
  launch(sum_partial_kernel<float, double>, static_cast<unsigned>(blocks), kThreads, 0, stream, xp, n, pp);
  launch(sum_partial_kernel<double, float>, 1, kMaxPartials, 0, stream, pp, blocks, yp);
}

void sum_axis(const Tensor& x, std::int64_t outer, std::int64_t n, std::int64_t inner, Tensor& y) {
  const int64_t total = outer * inner;
  KILN_CHECK(y.numel() == total && x.numel() == outer * n * inner, "sum_axis: size mismatch (", x.str(),
             " as [", outer, ", ", n, ", ", inner, "] into ", y.str(), ")");
  if (total == 0) return;
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  cudaStream_t stream = current_stream(y.device().index);
  // n == 0 still launches: the sums are 0.
  if (inner == 1) {
    if (n <= 1024) {
      const int64_t rows_per_block = kThreads / 32;
      launch(sum_rows_warp_kernel, capped_grid((outer + rows_per_block - 1) / rows_per_block), kThreads, 0, stream, xp, yp, outer, n);
    } else {
      launch(sum_rows_block_kernel, capped_grid(outer), kRowThreads, 0, stream, xp, yp, outer, n);
    }
  } else {
    launch(sum_strided_kernel, grid_for(total, kThreads), kThreads, 0, stream, xp, yp, outer, n, inner);
  }
}

void broadcast_axis(const Tensor& dy, float s, std::int64_t outer, std::int64_t n, std::int64_t inner, Tensor& dx) {
  const int64_t total = outer * n * inner;
  KILN_CHECK(dx.numel() == total && dy.numel() == outer * inner, "broadcast_axis: size mismatch (", dy.str(),
             " to ", dx.str(), " as [", outer, ", ", n, ", ", inner, "])");
  if (total == 0) return;
  cudaStream_t stream = current_stream(dx.device().index);
  launch(broadcast_axis_kernel, grid_for(total, kThreads), kThreads, 0, stream, dy.data<float>(), s, dx.data<float>(),
                                                                            total, n, inner);
}

}  // namespace kiln::cuda

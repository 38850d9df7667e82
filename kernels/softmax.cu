// CUDA twins of the classification kernels over the rows of x [N, C]: log_softmax and its
// backward, softmax cross-entropy (forward and backward), argmax and count_correct.
//
// Row kernels are templated on G, the number of threads that share one row: G == 32 puts one warp
// on a row (8 rows per 256-thread block, for C <= kWarpMaxC), G == kBlockThreads puts one block on
// a row. Threads stride over the row, so any C works; reductions are warp shuffles (plus shared
// memory across warps when G > 32). log-sum-exp subtracts the row max before exponentiating and
// sums in double; like the CPU twin, a row whose max is +-inf gets lse = max (no exp pass).
#include <cmath>
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
using kiln::cuda::dev::grid_stride;
using kiln::cuda::dev::Strided;
using kiln::cuda::dev::warp_stride;

constexpr int kWarpBlockThreads = 256;  // warp-per-row kernels: 8 rows per block
constexpr int kBlockThreads = 512;      // block-per-row kernels
constexpr int64_t kWarpMaxC = 1024;     // rows up to this long get one warp each
constexpr int kThreads = 256;           // flat elementwise kernels

__device__ __forceinline__ float nan_f() { return __int_as_float(0x7fc00000); }

// ---- row mapping ---------------------------------------------------------------------------------
// The loops over rows are uniform across the threads sharing a row (a warp or the whole block),
// so the shuffles and barriers inside them are safe.
template <int G>
__device__ __forceinline__ Strided row_range(int64_t N) {
  if constexpr (G == 32) return warp_stride(N);
  else return block_stride(N);
}
template <int G>
__device__ __forceinline__ int lane_in_row() {
  if constexpr (G == 32) return threadIdx.x & 31;
  else return threadIdx.x;
}

// ---- reductions ----------------------------------------------------------------------------------
// Over the threads sharing a row (common.cuh's warp or block reductions, in double), valid in all
// of them. `smem` (33 doubles) is used only when G > 32. fmax ignores NaN like std::max in the CPU
// twin, and a NaN still reaches the result through the exp sum.
template <int G>
__device__ double row_sum(double v, double* smem) {
  if constexpr (G == 32) return kiln::cuda::dev::warp_sum(v);
  else return kiln::cuda::dev::block_sum(v, smem);
}
template <int G>
__device__ double row_max(double v, double* smem) {
  if constexpr (G == 32) return kiln::cuda::dev::warp_max(v);
  else return kiln::cuda::dev::block_max(v, smem);
}

// Max and log(sum(exp(x - max))) of one row. When the max is +-inf (all -inf, or a +inf present)
// the sum would be NaN: as in the CPU twin, logsum is 0 so that lse = max. The test is uniform
// across the row's threads (m is the reduced value), so skipping the second reduction is safe.
template <int G>
__device__ void row_max_logsum(const float* xr, int64_t C, double* smem, float* max_out, float* logsum_out) {
  const int t = lane_in_row<G>();
  float m = -INFINITY;
  for (int64_t c = t; c < C; c += G) m = fmaxf(m, xr[c]);
  m = static_cast<float>(row_max<G>(m, smem));
  *max_out = m;
  if (isinf(m)) {
    *logsum_out = 0.0f;
    return;
  }
  double s = 0.0;
  for (int64_t c = t; c < C; c += G) s += expf(xr[c] - m);
  s = row_sum<G>(s, smem);
  *logsum_out = static_cast<float>(log(s));
}

// argmax order: NaN ranks above every number; among equal values (or among NaNs) the lower index
// wins. Returns true when (v, i) beats (bv, bi).
__device__ __forceinline__ bool beats(float v, long long i, float bv, long long bi) {
  const bool vn = isnan(v), bn = isnan(bv);
  if (vn != bn) return vn;
  if (!vn && v != bv) return v > bv;
  return i < bi;
}

constexpr long long kNoIndex = 0x7fffffffffffffffLL;

__device__ __forceinline__ void warp_argmax(float& bv, long long& bi) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const long long oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (beats(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
}

struct ArgmaxSmem {
  float v[33];
  long long i[33];
};

// Index of the row's maximum (first one on ties, first NaN if any), valid in every thread of the
// row; 0 for an empty row.
template <int G>
__device__ long long row_argmax(const float* xr, int64_t C, ArgmaxSmem* smem) {
  const int t = lane_in_row<G>();
  float bv = -INFINITY;
  long long bi = kNoIndex;
  for (int64_t c = t; c < C; c += G) {  // increasing c: a later equal value never wins
    const float v = xr[c];
    if (beats(v, c, bv, bi)) {
      bv = v;
      bi = c;
    }
  }
  warp_argmax(bv, bi);
  if constexpr (G != 32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
      smem->v[warp] = bv;
      smem->i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
      bv = lane < G / 32 ? smem->v[lane] : -INFINITY;
      bi = lane < G / 32 ? smem->i[lane] : kNoIndex;
      warp_argmax(bv, bi);
      if (lane == 0) {
        smem->v[32] = bv;
        smem->i[32] = bi;
      }
    }
    __syncthreads();
    bi = smem->i[32];
    __syncthreads();
  }
  return bi == kNoIndex ? 0 : bi;
}

// ---- kernels -------------------------------------------------------------------------------------
template <int G>
__global__ void log_softmax_kernel(const float* x, float* y, int64_t N, int64_t C) {
  __shared__ double smem[33];
  for (int64_t r : row_range<G>(N)) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float m, ls;
    row_max_logsum<G>(xr, C, smem, &m, &ls);
    for (int64_t c = lane_in_row<G>(); c < C; c += G) yr[c] = (xr[c] - m) - ls;
  }
}

template <int G>
__global__ void log_softmax_backward_kernel(const float* y, const float* dy, float* dx, int64_t N, int64_t C) {
  __shared__ double smem[33];
  for (int64_t r : row_range<G>(N)) {
    const float* yr = y + r * C;
    const float* dyr = dy + r * C;
    float* dxr = dx + r * C;
    double s = 0.0;
    for (int64_t c = lane_in_row<G>(); c < C; c += G) s += dyr[c];
    s = row_sum<G>(s, smem);
    const float sf = static_cast<float>(s);
    for (int64_t c = lane_in_row<G>(); c < C; c += G) dxr[c] = dyr[c] - expf(yr[c]) * sf;
  }
}

template <int G, class L>
__global__ void softmax_xent_kernel(const float* x, const L* labels, float* losses, float* lse, int64_t N,
                                    int64_t C) {
  __shared__ double smem[33];
  for (int64_t r : row_range<G>(N)) {
    const float* xr = x + r * C;
    float m, ls;
    row_max_logsum<G>(xr, C, smem, &m, &ls);
    if (lane_in_row<G>() == 0) {
      const float l = m + ls;
      const long long label = static_cast<long long>(labels[r]);
      lse[r] = l;
      // A label outside [0, C) cannot be reported without a host sync: the loss becomes NaN.
      losses[r] = (label >= 0 && label < C) ? l - xr[label] : nan_f();
    }
  }
}

// Elementwise over [N, C]: dlogits = (exp(x - lse) - onehot(label)) * dloss[0] * s.
template <class L>
__global__ void softmax_xent_backward_kernel(const float* x, const L* labels, const float* lse, const float* dloss,
                                             float s, float* dx, int64_t N, int64_t C) {
  const float g = dloss[0] * s;
  const int64_t total = N * C;
  for (int64_t j : grid_stride(total)) {
    const int64_t r = j / C;
    const int64_t c = j - r * C;
    const long long label = static_cast<long long>(labels[r]);
    float v;
    if (label < 0 || label >= C) {
      v = nan_f();  // invalid label: the whole row is NaN, like its loss
    } else {
      const float p = expf(x[j] - lse[r]);
      v = (p - (c == label ? 1.0f : 0.0f)) * g;
    }
    dx[j] = v;
  }
}

template <int G>
__global__ void argmax_kernel(const float* x, int64_t* index, int64_t N, int64_t C) {
  __shared__ ArgmaxSmem smem;
  for (int64_t r : row_range<G>(N)) {
    const long long bi = row_argmax<G>(x + r * C, C, &smem);
    if (lane_in_row<G>() == 0) index[r] = static_cast<int64_t>(bi);
  }
}

// Adds to count (the caller zeroes it once); each warp (G == 32) or block adds its tally once.
template <int G, class L>
__global__ void count_correct_kernel(const float* x, const L* labels, int64_t* count, int64_t N, int64_t C) {
  __shared__ ArgmaxSmem smem;
  unsigned long long correct = 0;
  for (int64_t r : row_range<G>(N)) {
    const long long bi = row_argmax<G>(x + r * C, C, &smem);
    const long long label = static_cast<long long>(labels[r]);
    // An out-of-range label never matches (bi is always in [0, C) when C > 0).
    if (lane_in_row<G>() == 0 && C > 0 && bi == label) ++correct;
  }
  if (lane_in_row<G>() == 0 && correct > 0) atomicAdd(reinterpret_cast<unsigned long long*>(count), correct);
}

// ---- launch helpers --------------------------------------------------------------------------------
// Rows of x: C is the last dimension, N the product of the others.
void rows_cols(const Tensor& x, int64_t* N, int64_t* C) {
  KILN_CHECK(x.dim() >= 1, "row kernel: expected at least one dimension, got ", x.str());
  *C = x.size(-1);
  int64_t n = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) n *= x.size(d);
  *N = n;
}

unsigned capped(int64_t blocks) {
  const int64_t cap = 65535LL * 8;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

bool warp_per_row(int64_t C) { return C <= kWarpMaxC; }
unsigned warp_grid(int64_t N) {
  const int64_t rows_per_block = kWarpBlockThreads / 32;
  return capped((N + rows_per_block - 1) / rows_per_block);
}

template <class L>
void launch_softmax_xent(const Tensor& logits, const L* labels, Tensor& losses, Tensor& lse, int64_t N, int64_t C,
                         cudaStream_t stream) {
  const float* x = logits.data<float>();
  float* lp = losses.data<float>();
  float* sp = lse.data<float>();
  if (warp_per_row(C)) {
    launch(softmax_xent_kernel<32, L>, warp_grid(N), kWarpBlockThreads, 0, stream, x, labels, lp, sp, N, C);
  } else {
    launch(softmax_xent_kernel<kBlockThreads, L>, capped(N), kBlockThreads, 0, stream, x, labels, lp, sp, N, C);
  }
}

template <class L>
void launch_count_correct(const Tensor& logits, const L* labels, int64_t* count, int64_t N, int64_t C,
                          cudaStream_t stream) {
  const float* x = logits.data<float>();
  if (warp_per_row(C)) {
    launch(count_correct_kernel<32, L>, warp_grid(N), kWarpBlockThreads, 0, stream, x, labels, count, N, C);
  } else {
    launch(count_correct_kernel<kBlockThreads, L>, capped(N), kBlockThreads, 0, stream, x, labels, count, N, C);
  }
}

void check_labels(const Tensor& labels, int64_t N, const char* op) {
  KILN_CHECK(labels.dtype() == DType::Int32 || labels.dtype() == DType::Int64, op,
             ": labels must be int32 or int64, got ", dtype_name(labels.dtype()));
  KILN_CHECK(labels.numel() == N, op, ": ", labels.numel(), " labels for ", N, " rows");
}

}  // namespace

namespace kiln::cuda {

void log_softmax(const Tensor& x, Tensor& y) {
  int64_t N = 0, C = 0;
  rows_cols(x, &N, &C);
  KILN_CHECK(y.numel() == x.numel(), "log_softmax: size mismatch");
  if (x.numel() == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  if (warp_per_row(C)) {
    launch(log_softmax_kernel<32>, warp_grid(N), kWarpBlockThreads, 0, stream, xp, yp, N, C);
  } else {
    launch(log_softmax_kernel<kBlockThreads>, capped(N), kBlockThreads, 0, stream, xp, yp, N, C);
  }
}

void log_softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  int64_t N = 0, C = 0;
  rows_cols(y, &N, &C);
  KILN_CHECK(dy.numel() == y.numel() && dx.numel() == y.numel(), "log_softmax_backward: size mismatch");
  if (y.numel() == 0) return;
  cudaStream_t stream = current_stream(dx.device().index);
  const float* yp = y.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
  if (warp_per_row(C)) {
    launch(log_softmax_backward_kernel<32>, warp_grid(N), kWarpBlockThreads, 0, stream, yp, dyp, dxp, N, C);
  } else {
    launch(log_softmax_backward_kernel<kBlockThreads>, capped(N), kBlockThreads, 0, stream, yp, dyp, dxp, N, C);
  }
}

void softmax_xent(const Tensor& logits, const Tensor& labels, Tensor& losses, Tensor& lse) {
  int64_t N = 0, C = 0;
  rows_cols(logits, &N, &C);
  check_labels(labels, N, "softmax_xent");
  KILN_CHECK(losses.numel() == N && lse.numel() == N, "softmax_xent: losses and lse must have ", N, " elements");
  if (N == 0) return;
  // C == 0 still launches: lse = -inf and every label is out of range, so the losses are NaN.
  cudaStream_t stream = current_stream(losses.device().index);
  if (labels.dtype() == DType::Int32) {
    launch_softmax_xent(logits, labels.data<std::int32_t>(), losses, lse, N, C, stream);
  } else {
    launch_softmax_xent(logits, labels.data<std::int64_t>(), losses, lse, N, C, stream);
  }
}

void softmax_xent_backward(const Tensor& logits, const Tensor& labels, const Tensor& lse, const Tensor& dloss,
                           float s, Tensor& dlogits) {
  int64_t N = 0, C = 0;
  rows_cols(logits, &N, &C);
  check_labels(labels, N, "softmax_xent_backward");
  KILN_CHECK(lse.numel() == N && dloss.numel() == 1 && dlogits.numel() == logits.numel(),
             "softmax_xent_backward: size mismatch");
  const int64_t total = N * C;
  if (total == 0) return;
  cudaStream_t stream = current_stream(dlogits.device().index);
  const unsigned grid = grid_for(total, kThreads);
  const float* x = logits.data<float>();
  const float* lp = lse.data<float>();
  const float* dl = dloss.data<float>();
  float* dx = dlogits.data<float>();
  if (labels.dtype() == DType::Int32) {
    launch(softmax_xent_backward_kernel<std::int32_t>, grid, kThreads, 0, stream, x, labels.data<std::int32_t>(), lp, dl,
                                                                               s, dx, N, C);
  } else {
    launch(softmax_xent_backward_kernel<std::int64_t>, grid, kThreads, 0, stream, x, labels.data<std::int64_t>(), lp, dl,
                                                                               s, dx, N, C);
  }
}

void argmax(const Tensor& x, Tensor& index) {
  int64_t N = 0, C = 0;
  rows_cols(x, &N, &C);
  KILN_CHECK(index.numel() == N, "argmax: index must have ", N, " elements, got ", index.str());
  if (N == 0) return;
  cudaStream_t stream = current_stream(index.device().index);
  const float* xp = x.data<float>();
  std::int64_t* ip = index.data<std::int64_t>();
  if (warp_per_row(C)) {
    launch(argmax_kernel<32>, warp_grid(N), kWarpBlockThreads, 0, stream, xp, ip, N, C);
  } else {
    launch(argmax_kernel<kBlockThreads>, capped(N), kBlockThreads, 0, stream, xp, ip, N, C);
  }
}

void count_correct(const Tensor& logits, const Tensor& labels, Tensor& count) {
  int64_t N = 0, C = 0;
  rows_cols(logits, &N, &C);
  check_labels(labels, N, "count_correct");
  KILN_CHECK(count.numel() == 1, "count_correct: count must have one element, got ", count.str());
  std::int64_t* cp = count.data<std::int64_t>();
  cudaStream_t stream = current_stream(count.device().index);
  if (N == 0) return;  // accumulates: the caller zeroes count
  if (labels.dtype() == DType::Int32) {
    launch_count_correct(logits, labels.data<std::int32_t>(), cp, N, C, stream);
  } else {
    launch_count_correct(logits, labels.data<std::int64_t>(), cp, N, C, stream);
  }
}

}  // namespace kiln::cuda

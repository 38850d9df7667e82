// CUDA twins of the elementwise kernels: fill, add, mul, scale, axpy, relu, relu_backward,
// bias_add and bias_grad. Float maps use float4 loads/stores when every pointer is 16-byte
// aligned (with a scalar tail), plain grid-stride loops otherwise. bias_grad is deterministic
// (fixed-order block reductions, no float atomics).
#include <algorithm>
#include <cstdint>
#include <type_traits>

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
using kiln::cuda::dev::global_tid;
using kiln::cuda::dev::grid_stride;
using kiln::cuda::dev::strided;

constexpr int kThreads = 256;

using kiln::cuda::dev::aligned16;


// ---- fill ----------------------------------------------------------------------------------------
template <class T>
__global__ void fill_kernel(T* y, int64_t n, T value) {
  for (int64_t i : grid_stride(n)) y[i] = value;
}

template <class T>
void launch_fill(Tensor& y, T value) {
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = kiln::cuda::current_stream(y.device().index);
  launch(fill_kernel<T>, kiln::cuda::grid_for(n, kThreads), kThreads, 0, stream, y.data<T>(), n, value);
}

// ---- generic float maps --------------------------------------------------------------------------
// No __restrict__: callers may pass the same tensor as input and output (in-place). Each element is
// read and written by the same thread, so aliasing is harmless.
template <class F>
__global__ void map1_kernel(const float* x, float* y, int64_t n, F f) {
  for (int64_t i : grid_stride(n)) y[i] = f(x[i]);
}

template <class F>
__global__ void map1_vec4_kernel(const float* x, float* y, int64_t n, F f) {
  const int64_t n4 = n / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t i : grid_stride(n4)) {
    const float4 a = x4[i];
    y4[i] = make_float4(f(a.x), f(a.y), f(a.z), f(a.w));
  }
  for (int64_t i : grid_stride(4 * n4, n)) y[i] = f(x[i]);
}

template <class F>
__global__ void map2_kernel(const float* a, const float* b, float* y, int64_t n, F f) {
  for (int64_t i : grid_stride(n)) y[i] = f(a[i], b[i]);
}

template <class F>
__global__ void map2_vec4_kernel(const float* a, const float* b, float* y, int64_t n, F f) {
  const int64_t n4 = n / 4;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t i : grid_stride(n4)) {
    const float4 u = a4[i];
    const float4 v = b4[i];
    y4[i] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
  }
  for (int64_t i : grid_stride(4 * n4, n)) y[i] = f(a[i], b[i]);
}

// Launches y = f(x) over n elements on `stream`.
template <class F>
void launch_map1(const float* x, float* y, int64_t n, F f, cudaStream_t stream) {
  if (aligned16(x) && aligned16(y)) {
    launch(map1_vec4_kernel<F>, kiln::cuda::grid_for((n + 3) / 4, kThreads), kThreads, 0, stream, x, y, n, f);
  } else {
    launch(map1_kernel<F>, kiln::cuda::grid_for(n, kThreads), kThreads, 0, stream, x, y, n, f);
  }
}

// Launches y = f(a, b) over n elements on `stream`.
template <class F>
void launch_map2(const float* a, const float* b, float* y, int64_t n, F f, cudaStream_t stream) {
  if (aligned16(a) && aligned16(b) && aligned16(y)) {
    launch(map2_vec4_kernel<F>, kiln::cuda::grid_for((n + 3) / 4, kThreads), kThreads, 0, stream, a, b, y, n, f);
  } else {
    launch(map2_kernel<F>, kiln::cuda::grid_for(n, kThreads), kThreads, 0, stream, a, b, y, n, f);
  }
}

struct AddOp {
  float alpha, beta;
  __device__ float operator()(float a, float b) const { return alpha * a + beta * b; }
};
struct MulOp {
  __device__ float operator()(float a, float b) const { return a * b; }
};
struct ScaleOp {
  float s;
  __device__ float operator()(float x) const { return s * x; }
};
struct AxpyOp {  // (x, y) -> y + alpha x
  float alpha;
  __device__ float operator()(float x, float y) const { return y + alpha * x; }
};
struct ReluOp {  // NaN stays NaN (divergence must show), as in the CPU twin
  __device__ float operator()(float x) const { return x < 0.0f ? 0.0f : x; }
};
struct ReluBackwardOp {  // (y, dy) -> dy where y > 0
  __device__ float operator()(float y, float dy) const { return y > 0.0f ? dy : 0.0f; }
};

// ---- bias ----------------------------------------------------------------------------------------
// y[(o*C + c)*inner + i] = x[...] + bias[c]. Three launches, by layout (x and y may alias):
//  - rows (inner == 1, C % 4 == 0, 16-byte aligned; a linear layer's [rows, C]): a 2-D grid, x over
//    the float4 columns, y striding over rows; each thread keeps its four bias values in registers.
//    Rows narrower than one block of float4s (C < 512) use a flat float4 loop instead.
//  - planes (inner >= kPlaneMin; a convolution's [N, C, H, W]): a 2-D grid, y over the (o, c)
//    planes, x over the plane (blocks no wider than the plane); one bias load and one modulo per
//    plane, no division per element.
//  - otherwise: a grid-stride loop that finds the channel with a division per element.
constexpr int kBiasRowThreads = 128;
constexpr int64_t kPlaneMin = 64;
constexpr unsigned kMaxGridY = 65535;

__global__ void bias_add_rows_vec4_kernel(const float4* x, const float4* bias, float4* y, int64_t rows,
                                          int64_t C4) {
  const int64_t c4 = global_tid();
  if (c4 >= C4) return;
  const float4 b = bias[c4];
  for (int64_t r : strided(blockIdx.y, rows, gridDim.y)) {
    const float4 v = x[r * C4 + c4];
    y[r * C4 + c4] = make_float4(v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w);
  }
}

// Narrow rows (C / 4 < kBiasRowThreads): a flat float4 grid-stride loop, one division per 16 bytes.
__global__ void bias_add_rows_flat_vec4_kernel(const float4* x, const float4* bias, float4* y, int64_t n4,
                                               int64_t C4) {
  for (int64_t i : grid_stride(n4)) {
    const float4 v = x[i], b = bias[i % C4];
    y[i] = make_float4(v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w);
  }
}

__global__ void bias_add_planes_kernel(const float* x, const float* bias, float* y, int64_t planes, int64_t C,
                                       int64_t inner) {
  const int64_t i = global_tid();
  for (int64_t plane : strided(blockIdx.y, planes, gridDim.y)) {  // uniform across the block
    const float b = bias[plane % C];
    if (i < inner) y[plane * inner + i] = x[plane * inner + i] + b;
  }
}

__global__ void bias_add_kernel(const float* x, const float* bias, float* y, int64_t n, int64_t C,
                                int64_t inner) {
  for (int64_t i : grid_stride(n)) {
    const int64_t c = (i / inner) % C;
    y[i] = x[i] + bias[c];
  }
}


// bias_grad splits the outer dimension into S slices (S a function of the sizes only, so the
// summation order is fixed): pass 1 writes one partial per (slice, channel), pass 2 adds a channel's
// S partials in slice order. With S == 1, pass 1 writes dbias directly. Partials are double.
//
// inner > 1 (a convolution): grid (C, S), block (c, s) sums the planes of channel c in its slice.
template <class Out>
__global__ void bias_grad_planes_kernel(const float* dy, Out* out, int64_t outer, int64_t C, int64_t inner,
                                        int64_t S) {
  __shared__ double smem[33];
  const int64_t s = blockIdx.y;
  const int64_t o0 = s * outer / S, o1 = (s + 1) * outer / S;
  for (int64_t c : block_stride(C)) {  // uniform across the block
    double acc = 0.0;
    if (inner < blockDim.x) {  // small planes: spread the slice's planes over all the threads
      const int64_t m = (o1 - o0) * inner;
      for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
        const int64_t o = o0 + k / inner, i = k - (o - o0) * inner;
        acc += dy[(o * C + c) * inner + i];
      }
    } else {
      for (int64_t o = o0; o < o1; ++o) {
        const float* plane = dy + (o * C + c) * inner;
        for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) acc += plane[i];
      }
    }
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) out[s * C + c] = static_cast<Out>(acc);
  }
}

// inner == 1 (dy is [rows, C], e.g. a linear layer): column sums. Grid (column tiles of 32, S),
// block (32, kColRows): each thread sums rows ty, ty+kColRows, ... of its slice for column c
// (coalesced across tx), then the kColRows partials of each column are added in a fixed order.
constexpr int kColRows = 8;
template <class Out>
__global__ void bias_grad_cols_kernel(const float* dy, Out* out, int64_t rows, int64_t C, int64_t S) {
  __shared__ double part[kColRows][33];
  const int64_t s = blockIdx.y;
  const int64_t r0 = s * rows / S, r1 = (s + 1) * rows / S;
  for (int64_t tile : block_stride((C + 31) / 32)) {  // uniform across the block
    const int64_t c = tile * 32 + threadIdx.x;
    double acc = 0.0;
    if (c < C)
      for (int64_t r = r0 + threadIdx.y; r < r1; r += kColRows) acc += dy[r * C + c];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      double sum = 0.0;
      for (int j = 0; j < kColRows; ++j) sum += part[j][threadIdx.x];
      out[s * C + c] = static_cast<Out>(sum);
    }
    __syncthreads();
  }
}

// Pass 2: dbias[c] = sum over s of part[s * C + c], in slice order.
__global__ void bias_grad_slices_kernel(const double* part, float* dbias, int64_t S, int64_t C) {
  for (int64_t c : grid_stride(C)) {
    double acc = 0.0;
    for (int64_t s = 0; s < S; ++s) acc += part[s * C + c];
    dbias[c] = static_cast<float>(acc);
  }
}

// Slices: enough blocks to fill a large GPU (~2048 in all), each slice still at least `min_units`
// rows or planes, so that pass 2 stays negligible. A function of the sizes only.
int64_t bias_grad_slices(int64_t units, int64_t blocks_per_slice, int64_t min_units) {
  const int64_t want = (2048 + blocks_per_slice - 1) / blocks_per_slice;
  const int64_t most = std::max<int64_t>(1, units / min_units);
  return std::max<int64_t>(1, std::min<int64_t>({want, most, int64_t{kMaxGridY}}));
}

// The [outer, C, inner] view of x for a bias of C elements: outer = x.size(0) (1 for x of rank < 2).
void bias_view(const Tensor& x, int64_t C, int64_t* outer, int64_t* inner) {
  *outer = x.dim() >= 2 ? x.size(0) : 1;
  int64_t in = 1;
  for (int64_t d = 2; d < x.dim(); ++d) in *= x.size(d);
  if (x.dim() < 2) in = C == 0 ? 0 : x.numel() / C;
  *inner = in;
  KILN_CHECK(*outer * C * in == x.numel(), "bias: ", x.str(), " does not match a bias of ", C, " elements");
}

}  // namespace

namespace kiln::cuda {

void fill(Tensor& y, float value) {
  switch (y.dtype()) {
    case DType::Float32: launch_fill<float>(y, value); break;
    case DType::Int32: launch_fill<std::int32_t>(y, static_cast<std::int32_t>(value)); break;
    case DType::Int64: launch_fill<std::int64_t>(y, static_cast<std::int64_t>(value)); break;
    case DType::UInt8: launch_fill<std::uint8_t>(y, static_cast<std::uint8_t>(value)); break;
    default: KILN_FAIL("fill: unsupported dtype ", dtype_name(y.dtype()));
  }
}

void add(float alpha, const Tensor& a, float beta, const Tensor& b, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(a.numel() == n && b.numel() == n, "add: size mismatch");
  if (n == 0) return;
  launch_map2(a.data<float>(), b.data<float>(), y.data<float>(), n, AddOp{alpha, beta},
              current_stream(y.device().index));
}

void mul(const Tensor& a, const Tensor& b, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(a.numel() == n && b.numel() == n, "mul: size mismatch");
  if (n == 0) return;
  launch_map2(a.data<float>(), b.data<float>(), y.data<float>(), n, MulOp{}, current_stream(y.device().index));
}

void scale(const Tensor& x, float s, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "scale: size mismatch");
  if (n == 0) return;
  launch_map1(x.data<float>(), y.data<float>(), n, ScaleOp{s}, current_stream(y.device().index));
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "axpy: size mismatch");
  if (n == 0) return;
  float* yp = y.data<float>();
  launch_map2(x.data<float>(), yp, yp, n, AxpyOp{alpha}, current_stream(y.device().index));
}

void relu(const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "relu: size mismatch");
  if (n == 0) return;
  launch_map1(x.data<float>(), y.data<float>(), n, ReluOp{}, current_stream(y.device().index));
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const int64_t n = dx.numel();
  KILN_CHECK(y.numel() == n && dy.numel() == n, "relu_backward: size mismatch");
  if (n == 0) return;
  launch_map2(y.data<float>(), dy.data<float>(), dx.data<float>(), n, ReluBackwardOp{},
              current_stream(dx.device().index));
}

void bias_add(const Tensor& x, const Tensor& bias, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "bias_add: size mismatch");
  if (n == 0) return;
  const int64_t C = bias.numel();
  int64_t outer = 0, inner = 0;
  bias_view(x, C, &outer, &inner);
  cudaStream_t stream = current_stream(y.device().index);
  const float *xp = x.data<float>(), *bp = bias.data<float>();
  float* yp = y.data<float>();
  if (inner == 1 && C % 4 == 0 && C / 4 < kBiasRowThreads && aligned16(xp) && aligned16(bp) && aligned16(yp)) {
    const int64_t C4 = C / 4, n4 = n / 4;
    launch(bias_add_rows_flat_vec4_kernel, grid_for(n4, kThreads), kThreads, 0, stream, reinterpret_cast<const float4*>(xp), reinterpret_cast<const float4*>(bp), reinterpret_cast<float4*>(yp), n4,
        C4);
  } else if (inner == 1 && C % 4 == 0 && aligned16(xp) && aligned16(bp) && aligned16(yp)) {
    const int64_t C4 = C / 4;
    const dim3 grid(static_cast<unsigned>((C4 + kBiasRowThreads - 1) / kBiasRowThreads),
                    static_cast<unsigned>(std::min<int64_t>(outer, kMaxGridY)));
    launch(bias_add_rows_vec4_kernel, grid, kBiasRowThreads, 0, stream, reinterpret_cast<const float4*>(xp), reinterpret_cast<const float4*>(bp), reinterpret_cast<float4*>(yp),
        outer, C4);
  } else if (inner >= kPlaneMin) {
    // Blocks no wider than the plane (rounded up to a warp): 169 = 13 x 13 gets 192 threads.
    const int threads = static_cast<int>(std::min<int64_t>(kThreads, (inner + 31) / 32 * 32));
    const int64_t planes = outer * C;
    const dim3 grid(static_cast<unsigned>((inner + threads - 1) / threads),
                    static_cast<unsigned>(std::min<int64_t>(planes, kMaxGridY)));
    launch(bias_add_planes_kernel, grid, threads, 0, stream, xp, bp, yp, planes, C, inner);
  } else {
    launch(bias_add_kernel, grid_for(n, kThreads), kThreads, 0, stream, xp, bp, yp, n, C, inner);
  }
}

void bias_grad(const Tensor& dy, Tensor& dbias) {
  const int64_t C = dbias.numel();
  if (C == 0) return;
  int64_t outer = 0, inner = 0;
  bias_view(dy, C, &outer, &inner);
  cudaStream_t stream = current_stream(dbias.device().index);
  const float* dyp = dy.data<float>();
  float* db = dbias.data<float>();
  // Even when dy is empty the launches run: they write zeros into dbias.
  const bool cols = inner == 1;
  const int64_t tiles = cols ? (C + 31) / 32 : C;
  const unsigned grid_x = static_cast<unsigned>(std::min<int64_t>(tiles, kMaxGridY));
  const int64_t S = bias_grad_slices(outer, static_cast<int64_t>(grid_x), cols ? 32 : 2);
  const dim3 grid(grid_x, static_cast<unsigned>(S));
  auto pass1 = [&](auto* out) {
    using Out = std::remove_pointer_t<decltype(out)>;
    if (cols) {
      launch(bias_grad_cols_kernel<Out>, grid, dim3(32, kColRows), 0, stream, dyp, out, outer, C, S);
    } else {
      launch(bias_grad_planes_kernel<Out>, grid, kThreads, 0, stream, dyp, out, outer, C, inner, S);
    }
  };
  if (S == 1) {
    pass1(db);
    return;
  }
  // Scratch for the double partials from the caching allocator (kiln has no float64 dtype: int64
  // slots), released for reuse in stream order once both launches are queued.
  Tensor partials = Tensor::empty({S * C}, DType::Int64, dbias.device());
  double* pp = reinterpret_cast<double*>(partials.data<std::int64_t>());
  pass1(pp);
  launch(bias_grad_slices_kernel, grid_for(C, kThreads), kThreads, 0, stream, pp, db, S, C);
}

}  // namespace kiln::cuda

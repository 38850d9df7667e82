// CUDA twins of the elementwise kernels: fill, add, mul, scale, axpy, relu, relu_backward,
// bias_add and bias_grad. Float maps use float4 loads/stores when every pointer is 16-byte
// aligned (with a scalar tail), plain grid-stride loops otherwise. bias_grad is deterministic
// (fixed-order block reductions, no float atomics).
#include <cstdint>

#include "backend/backend.h"
#include "cuda/runtime.h"
#include "common.cuh"

namespace {

using kiln::DType;
using kiln::Tensor;
using std::int64_t;
using kiln::cuda::dev::block_sum;
using kiln::cuda::dev::global_tid;
using kiln::cuda::dev::grid_stride;
using kiln::cuda::dev::warp_sum;

constexpr int kThreads = 256;

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }


// ---- fill ----------------------------------------------------------------------------------------
template <class T>
__global__ void fill_kernel(T* y, int64_t n, T value) {
  for (int64_t i = global_tid(); i < n; i += grid_stride()) y[i] = value;
}

template <class T>
void launch_fill(Tensor& y, T value) {
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = kiln::cuda::current_stream(y.device().index);
  fill_kernel<T><<<kiln::cuda::grid_for(n, kThreads), kThreads, 0, stream>>>(y.data<T>(), n, value);
  KILN_CUDA_LAUNCH_CHECK("fill_kernel");
}

// ---- generic float maps --------------------------------------------------------------------------
// No __restrict__: callers may pass the same tensor as input and output (in-place). Each element is
// read and written by the same thread, so aliasing is harmless.
template <class F>
__global__ void map1_kernel(const float* x, float* y, int64_t n, F f) {
  for (int64_t i = global_tid(); i < n; i += grid_stride()) y[i] = f(x[i]);
}

template <class F>
__global__ void map1_vec4_kernel(const float* x, float* y, int64_t n, F f) {
  const int64_t n4 = n / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t i = global_tid(); i < n4; i += grid_stride()) {
    const float4 a = x4[i];
    y4[i] = make_float4(f(a.x), f(a.y), f(a.z), f(a.w));
  }
  for (int64_t i = 4 * n4 + global_tid(); i < n; i += grid_stride()) y[i] = f(x[i]);
}

template <class F>
__global__ void map2_kernel(const float* a, const float* b, float* y, int64_t n, F f) {
  for (int64_t i = global_tid(); i < n; i += grid_stride()) y[i] = f(a[i], b[i]);
}

template <class F>
__global__ void map2_vec4_kernel(const float* a, const float* b, float* y, int64_t n, F f) {
  const int64_t n4 = n / 4;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t i = global_tid(); i < n4; i += grid_stride()) {
    const float4 u = a4[i];
    const float4 v = b4[i];
    y4[i] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
  }
  for (int64_t i = 4 * n4 + global_tid(); i < n; i += grid_stride()) y[i] = f(a[i], b[i]);
}

// Launches y = f(x) over n elements on `stream`; the caller checks the launch.
template <class F>
void launch_map1(const float* x, float* y, int64_t n, F f, cudaStream_t stream) {
  if (aligned16(x) && aligned16(y)) {
    map1_vec4_kernel<F><<<kiln::cuda::grid_for((n + 3) / 4, kThreads), kThreads, 0, stream>>>(x, y, n, f);
  } else {
    map1_kernel<F><<<kiln::cuda::grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n, f);
  }
}

// Launches y = f(a, b) over n elements on `stream`; the caller checks the launch.
template <class F>
void launch_map2(const float* a, const float* b, float* y, int64_t n, F f, cudaStream_t stream) {
  if (aligned16(a) && aligned16(b) && aligned16(y)) {
    map2_vec4_kernel<F><<<kiln::cuda::grid_for((n + 3) / 4, kThreads), kThreads, 0, stream>>>(a, b, y, n, f);
  } else {
    map2_kernel<F><<<kiln::cuda::grid_for(n, kThreads), kThreads, 0, stream>>>(a, b, y, n, f);
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
// y[(o*C + c)*inner + i] = x[...] + bias[c]
__global__ void bias_add_kernel(const float* x, const float* bias, float* y, int64_t n, int64_t C,
                                int64_t inner) {
  for (int64_t i = global_tid(); i < n; i += grid_stride()) {
    const int64_t c = (i / inner) % C;
    y[i] = x[i] + bias[c];
  }
}


// General layout: one block per channel, reducing over the outer*inner elements of that channel.
__global__ void bias_grad_kernel(const float* dy, float* dbias, int64_t outer, int64_t C, int64_t inner) {
  __shared__ double smem[33];
  const int64_t total = outer * inner;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {  // uniform across the block
    double acc = 0.0;
    for (int64_t k = threadIdx.x; k < total; k += blockDim.x) {
      const int64_t o = k / inner;
      const int64_t i = k - o * inner;
      acc += dy[(o * C + c) * inner + i];
    }
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) dbias[c] = static_cast<float>(acc);
  }
}

// inner == 1 (dy is [rows, C], e.g. a linear layer): column sums. Block (32, kColRows): each
// thread sums rows ty, ty+kColRows, ... of column c (coalesced across tx), then the kColRows
// partials of each column are added in a fixed order.
constexpr int kColRows = 8;
__global__ void bias_grad_cols_kernel(const float* dy, float* dbias, int64_t rows, int64_t C) {
  __shared__ double part[kColRows][33];
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * 32; c0 < C; c0 += static_cast<int64_t>(gridDim.x) * 32) {
    const int64_t c = c0 + threadIdx.x;
    double acc = 0.0;
    if (c < C)
      for (int64_t r = threadIdx.y; r < rows; r += kColRows) acc += dy[r * C + c];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      double s = 0.0;
      for (int j = 0; j < kColRows; ++j) s += part[j][threadIdx.x];
      dbias[c] = static_cast<float>(s);
    }
    __syncthreads();
  }
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
  KILN_CUDA_LAUNCH_CHECK("add");
}

void mul(const Tensor& a, const Tensor& b, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(a.numel() == n && b.numel() == n, "mul: size mismatch");
  if (n == 0) return;
  launch_map2(a.data<float>(), b.data<float>(), y.data<float>(), n, MulOp{}, current_stream(y.device().index));
  KILN_CUDA_LAUNCH_CHECK("mul");
}

void scale(const Tensor& x, float s, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "scale: size mismatch");
  if (n == 0) return;
  launch_map1(x.data<float>(), y.data<float>(), n, ScaleOp{s}, current_stream(y.device().index));
  KILN_CUDA_LAUNCH_CHECK("scale");
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "axpy: size mismatch");
  if (n == 0) return;
  float* yp = y.data<float>();
  launch_map2(x.data<float>(), yp, yp, n, AxpyOp{alpha}, current_stream(y.device().index));
  KILN_CUDA_LAUNCH_CHECK("axpy");
}

void relu(const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "relu: size mismatch");
  if (n == 0) return;
  launch_map1(x.data<float>(), y.data<float>(), n, ReluOp{}, current_stream(y.device().index));
  KILN_CUDA_LAUNCH_CHECK("relu");
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const int64_t n = dx.numel();
  KILN_CHECK(y.numel() == n && dy.numel() == n, "relu_backward: size mismatch");
  if (n == 0) return;
  launch_map2(y.data<float>(), dy.data<float>(), dx.data<float>(), n, ReluBackwardOp{},
              current_stream(dx.device().index));
  KILN_CUDA_LAUNCH_CHECK("relu_backward");
}

void bias_add(const Tensor& x, const Tensor& bias, Tensor& y) {
  const int64_t n = y.numel();
  KILN_CHECK(x.numel() == n, "bias_add: size mismatch");
  if (n == 0) return;
  const int64_t C = bias.numel();
  int64_t outer = 0, inner = 0;
  bias_view(x, C, &outer, &inner);
  cudaStream_t stream = current_stream(y.device().index);
  bias_add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x.data<float>(), bias.data<float>(),
                                                                   y.data<float>(), n, C, inner);
  KILN_CUDA_LAUNCH_CHECK("bias_add_kernel");
}

void bias_grad(const Tensor& dy, Tensor& dbias) {
  const int64_t C = dbias.numel();
  if (C == 0) return;
  int64_t outer = 0, inner = 0;
  bias_view(dy, C, &outer, &inner);
  cudaStream_t stream = current_stream(dbias.device().index);
  // Even when dy is empty the launch runs: it writes zeros into dbias.
  if (inner == 1) {
    const int64_t tiles = (C + 31) / 32;
    const unsigned grid = static_cast<unsigned>(tiles < 65535 ? tiles : 65535);
    bias_grad_cols_kernel<<<grid, dim3(32, kColRows), 0, stream>>>(dy.data<float>(), dbias.data<float>(), outer, C);
    KILN_CUDA_LAUNCH_CHECK("bias_grad_cols_kernel");
  } else {
    const unsigned grid = static_cast<unsigned>(C < 65535 ? C : 65535);
    bias_grad_kernel<<<grid, kThreads, 0, stream>>>(dy.data<float>(), dbias.data<float>(), outer, C, inner);
    KILN_CUDA_LAUNCH_CHECK("bias_grad_kernel");
  }
}

}  // namespace kiln::cuda

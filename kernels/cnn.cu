// CUDA twins of the CNN helper kernels: max pooling, adaptive average pooling, local response norm
// (across channels), dropout and bilinear resize. Every kernel is a 64-bit grid-stride loop with
// one thread per output element; the per-element work lives in __host__ __device__ functions so
// that it can also be exercised on the host against the CPU twins.
//
//  - max_pool2d_forward: thread per output, scans its window (first maximum wins, first NaN wins,
//    exactly like the CPU twin, so values and argmax agree bit for bit).
//  - max_pool2d_backward: gather, deterministic: one thread per input element visits the windows
//    that contain it (found in closed form from the geometry) in increasing output order and sums
//    dy where the window's argmax is this element: the same additions, in the same order, as the
//    CPU twin's scatter, so the results agree bit for bit and need no atomics.
//  - adaptive_avg_pool2d_backward: gather, deterministic: each input element sums dy / count over
//    the cells that cover it, found in closed form from the shapes.
//  - lrn_forward / lrn_backward: thread per element, loops over the channel window (stride H*W:
//    neighbouring threads read neighbouring w, so the loads coalesce).
//  - dropout: the Philox mask from (seed, offset + i); the kept values are one rounded multiply
//    (__fmul_rn) by the same float 1 / (1 - p) the CPU twin uses, so the outputs are bit-identical.
//  - resize_bilinear: the source coordinate is computed with explicitly rounded float ops, as on
//    the CPU (no FMA contraction), so both twins pick the same taps.
#include <cstdint>
#include <limits>

#include "backend/backend.h"
#include "cuda/launch.h"
#include "common.cuh"
#include "cuda/runtime.h"
#include "kiln/random.h"

namespace {

using kiln::cuda::launch;

using kiln::Pool2dParams;
using kiln::Tensor;
using std::int64_t;
using std::uint64_t;
using kiln::cuda::dev::grid_stride;

constexpr int kThreads = 256;

#define KILN_CNN_HD __host__ __device__ __forceinline__

KILN_CNN_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
KILN_CNN_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
KILN_CNN_HD bool is_nan(float v) { return v != v; }

// Rounded float ops that nvcc may not fuse into an FMA (plain ops on the host, where the C++17
// build does not contract either).
KILN_CNN_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
KILN_CNN_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// ---- max pooling ----------------------------------------------------------------------------------
struct PoolGeom {
  int64_t H, W, P, Q;
  int64_t kh, kw, sh, sw, ph, pw;
};

// Output element o (flat over [planes, P, Q]): the window's maximum and its flat index h * W + w in
// the plane. The window always holds a real element (padding <= kernel / 2).
KILN_CNN_HD void max_pool_elem(const float* x, const PoolGeom& g, int64_t o, float* best_out, int* index_out) {
  const int64_t j = o % g.Q;
  const int64_t i = (o / g.Q) % g.P;
  const int64_t plane = o / (g.P * g.Q);
  const float* xp = x + plane * g.H * g.W;
  const int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  const int64_t hs = max64(h0, 0), he = min64(h0 + g.kh, g.H);
  const int64_t ws = max64(w0, 0), we = min64(w0 + g.kw, g.W);
  float best = -INFINITY;
  int64_t bi = hs * g.W + ws;
  for (int64_t h = hs; h < he; ++h)
    for (int64_t w = ws; w < we; ++w) {
      const float v = xp[h * g.W + w];
      if (v > best || (is_nan(v) && !is_nan(best))) {
        best = v;
        bi = h * g.W + w;
      }
    }
  *best_out = best;
  *index_out = static_cast<int>(bi);
}

__global__ void max_pool2d_forward_kernel(const float* x, float* y, int* argmax, int64_t n, PoolGeom g) {
  for (int64_t o : grid_stride(n)) {
    float v;
    int idx;
    max_pool_elem(x, g, o, &v, &idx);
    y[o] = v;
    argmax[o] = idx;
  }
}

struct PoolBackGeom {
  int64_t H, W, P, Q, kh, kw, sh, sw, ph, pw;
};

// The output positions whose window contains input row h: p * s - pad <= h <= p * s - pad + k - 1.
KILN_CNN_HD int64_t first_window(int64_t h, int64_t k, int64_t s, int64_t pad) {
  const int64_t a = h + pad - k + 1;
  return a <= 0 ? 0 : (a + s - 1) / s;
}
KILN_CNN_HD int64_t last_window(int64_t h, int64_t s, int64_t pad, int64_t P) {
  const int64_t l = (h + pad) / s;
  return l < P - 1 ? l : P - 1;
}

// dx[i] for input element i (n * C planes of H x W): the dy of every window whose argmax is i.
KILN_CNN_HD float max_pool_grad_at(const float* dy, const int* argmax, int64_t i, const PoolBackGeom& g) {
  const int64_t w = i % g.W, h = (i / g.W) % g.H, plane = i / (g.H * g.W);
  const int idx = static_cast<int>(h * g.W + w);
  const int64_t p0 = first_window(h, g.kh, g.sh, g.ph), p1 = last_window(h, g.sh, g.ph, g.P);
  const int64_t q0 = first_window(w, g.kw, g.sw, g.pw), q1 = last_window(w, g.sw, g.pw, g.Q);
  float acc = 0.0f;
  for (int64_t p = p0; p <= p1; ++p)
    for (int64_t q = q0; q <= q1; ++q) {
      const int64_t o = (plane * g.P + p) * g.Q + q;
      if (argmax[o] == idx) acc += dy[o];
    }
  return acc;
}

__global__ void max_pool2d_backward_kernel(const float* dy, const int* argmax, float* dx, int64_t n,
                                           PoolBackGeom g) {
  for (int64_t i : grid_stride(n)) dx[i] = max_pool_grad_at(dy, argmax, i, g);
}

// ---- adaptive average pooling ----------------------------------------------------------------------
// Cell i of `out` cells over `in` rows covers [floor(i in / out), ceil((i + 1) in / out)).
KILN_CNN_HD int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
KILN_CNN_HD int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
// The cells covering row h are [floor(h out / in), ceil((h + 1) out / in) - 1]: start(i) <= h iff
// i in < (h + 1) out, and end(i) > h iff (i + 1) in > h out.
KILN_CNN_HD int64_t covering_first(int64_t h, int64_t in, int64_t out) { return (h * out) / in; }
KILN_CNN_HD int64_t covering_last(int64_t h, int64_t in, int64_t out) {
  return min64(((h + 1) * out + in - 1) / in - 1, out - 1);
}

struct AdaptiveGeom {
  int64_t H, W, P, Q;
};

KILN_CNN_HD float adaptive_avg_elem(const float* x, const AdaptiveGeom& g, int64_t o) {
  const int64_t j = o % g.Q;
  const int64_t i = (o / g.Q) % g.P;
  const int64_t plane = o / (g.P * g.Q);
  const float* xp = x + plane * g.H * g.W;
  const int64_t hs = adaptive_start(i, g.H, g.P), he = adaptive_end(i, g.H, g.P);
  const int64_t ws = adaptive_start(j, g.W, g.Q), we = adaptive_end(j, g.W, g.Q);
  float s = 0.0f;
  for (int64_t h = hs; h < he; ++h)
    for (int64_t w = ws; w < we; ++w) s += xp[h * g.W + w];
  return s / static_cast<float>((he - hs) * (we - ws));
}

// Input element e (flat over [planes, H, W]): sum of dy / count over the covering cells.
KILN_CNN_HD float adaptive_avg_backward_elem(const float* dy, const AdaptiveGeom& g, int64_t e) {
  const int64_t w = e % g.W;
  const int64_t h = (e / g.W) % g.H;
  const int64_t plane = e / (g.H * g.W);
  const float* gp = dy + plane * g.P * g.Q;
  const int64_t i0 = covering_first(h, g.H, g.P), i1 = covering_last(h, g.H, g.P);
  const int64_t j0 = covering_first(w, g.W, g.Q), j1 = covering_last(w, g.W, g.Q);
  float s = 0.0f;
  for (int64_t i = i0; i <= i1; ++i) {
    const int64_t rows = adaptive_end(i, g.H, g.P) - adaptive_start(i, g.H, g.P);
    for (int64_t j = j0; j <= j1; ++j) {
      const int64_t cols = adaptive_end(j, g.W, g.Q) - adaptive_start(j, g.W, g.Q);
      s += gp[i * g.Q + j] / static_cast<float>(rows * cols);
    }
  }
  return s;
}

__global__ void adaptive_avg_forward_kernel(const float* x, float* y, int64_t n, AdaptiveGeom g) {
  for (int64_t o : grid_stride(n)) y[o] = adaptive_avg_elem(x, g, o);
}

__global__ void adaptive_avg_backward_kernel(const float* dy, float* dx, int64_t n, AdaptiveGeom g) {
  for (int64_t e : grid_stride(n)) dx[e] = adaptive_avg_backward_elem(dy, g, e);
}

// ---- local response norm ---------------------------------------------------------------------------
struct LrnGeom {
  int64_t C, HW, size;
  float a;     // alpha / size
  float beta;
  float k;
  float coef;  // 2 alpha beta / size
};

// Element e of [N, C, H*W]: scale = k + alpha/size * sum of x^2 over [c - size/2, c + (size-1)/2] ∩ [0, C).
KILN_CNN_HD void lrn_elem(const float* x, const LrnGeom& g, int64_t e, float* y_out, float* scale_out) {
  const int64_t s = e % g.HW;
  const int64_t c = (e / g.HW) % g.C;
  const int64_t base = e - (c * g.HW + s);  // start of the sample
  const int64_t lo = max64(c - g.size / 2, 0), hi = min64(c + (g.size - 1) / 2, g.C - 1);
  float sq = 0.0f;
  for (int64_t cc = lo; cc <= hi; ++cc) {
    const float v = x[base + cc * g.HW + s];
    sq += v * v;
  }
  const float sc = g.k + g.a * sq;
  *scale_out = sc;
  *y_out = x[e] * powf(sc, -g.beta);
}

// dx = dy scale^-beta - coef x sum_{c' in [c - (size-1)/2, c + size/2] ∩ [0, C)} dy[c'] y[c'] / scale[c'].
KILN_CNN_HD float lrn_backward_elem(const float* x, const float* y, const float* scale, const float* dy,
                                    const LrnGeom& g, int64_t e) {
  const int64_t s = e % g.HW;
  const int64_t c = (e / g.HW) % g.C;
  const int64_t base = e - (c * g.HW + s);
  const int64_t lo = max64(c - (g.size - 1) / 2, 0), hi = min64(c + g.size / 2, g.C - 1);
  float acc = 0.0f;
  for (int64_t cc = lo; cc <= hi; ++cc) {
    const int64_t f = base + cc * g.HW + s;
    acc += dy[f] * y[f] / scale[f];
  }
  return dy[e] * powf(scale[e], -g.beta) - g.coef * x[e] * acc;
}

__global__ void lrn_forward_kernel(const float* x, float* y, float* scale, int64_t n, LrnGeom g) {
  for (int64_t e : grid_stride(n)) {
    float v, sc;
    lrn_elem(x, g, e, &v, &sc);
    y[e] = v;
    scale[e] = sc;
  }
}

__global__ void lrn_backward_kernel(const float* x, const float* y, const float* scale, const float* dy, float* dx,
                                    int64_t n, LrnGeom g) {
  for (int64_t e : grid_stride(n)) dx[e] = lrn_backward_elem(x, y, scale, dy, g, e);
}

// ---- dropout -----------------------------------------------------------------------------------------
// One thread per Philox block: the mask of up to four elements from one Philox call. Also the
// backward (same mask, same scale).
__global__ void dropout_kernel(const float* x, float* y, int64_t n, float p, float s, uint64_t seed,
                               uint64_t offset) {
  const uint64_t un = static_cast<uint64_t>(n);
  const uint64_t b0 = kiln::philox::first_block(offset), nb = kiln::philox::block_count(offset, un);
  for (int64_t j : grid_stride(static_cast<int64_t>(nb)))
    kiln::philox::for_elements_in_block(kiln::philox::Uniforms{seed}, offset, un, b0 + static_cast<uint64_t>(j),
                                        [&](uint64_t i, float u) { y[i] = u >= p ? mul_rn(x[i], s) : 0.0f; });
}

long long dropout_blocks(int64_t n, uint64_t offset) {
  return static_cast<long long>(kiln::philox::block_count(offset, static_cast<uint64_t>(n)));
}

// ---- bilinear resize ------------------------------------------------------------------------------------
struct ResizeGeom {
  int64_t H, W, OH, OW;
  float sh, sw;  // in / out, as floats (PyTorch's scale)
};

// Source taps along one axis: src = scale (d + 0.5) - 0.5, clamped below at 0 (align_corners = false).
KILN_CNN_HD void bilinear_tap(int64_t d, int64_t in, float scale, int64_t* i0, int64_t* i1, float* w0, float* w1) {
  float src = add_rn(mul_rn(scale, add_rn(static_cast<float>(d), 0.5f)), -0.5f);
  if (src < 0.0f) src = 0.0f;
  const int64_t a = min64(static_cast<int64_t>(src), in - 1);
  const float l1 = add_rn(src, -static_cast<float>(a));
  *i0 = a;
  *i1 = a < in - 1 ? a + 1 : a;
  *w0 = 1.0f - l1;
  *w1 = l1;
}

KILN_CNN_HD float resize_elem(const float* x, const ResizeGeom& g, int64_t o) {
  const int64_t ow = o % g.OW;
  const int64_t oh = (o / g.OW) % g.OH;
  const int64_t plane = o / (g.OH * g.OW);
  int64_t h0, h1, w0, w1;
  float a0, a1, b0, b1;
  bilinear_tap(oh, g.H, g.sh, &h0, &h1, &a0, &a1);
  bilinear_tap(ow, g.W, g.sw, &w0, &w1, &b0, &b1);
  const float* xp = x + plane * g.H * g.W;
  const float top = b0 * xp[h0 * g.W + w0] + b1 * xp[h0 * g.W + w1];
  const float bot = b0 * xp[h1 * g.W + w0] + b1 * xp[h1 * g.W + w1];
  return a0 * top + a1 * bot;
}

__global__ void resize_bilinear_kernel(const float* x, float* y, int64_t n, ResizeGeom g) {
  for (int64_t o : grid_stride(n)) y[o] = resize_elem(x, g, o);
}

float dropout_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }

}  // namespace

namespace kiln::cuda {

void max_pool2d_forward(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& argmax) {
  const PoolGeom g{x.size(2), x.size(3), y.size(2), y.size(3), p.kernel_h, p.kernel_w,
                   p.stride_h, p.stride_w, p.pad_h,   p.pad_w};
  KILN_CHECK(g.H * g.W <= std::numeric_limits<std::int32_t>::max(), "max_pool2d: plane ", g.H, "x", g.W,
             " too large for int32 argmax indices");
  KILN_CHECK(argmax.numel() == y.numel(), "max_pool2d_forward: argmax ", argmax.str(), " does not match ", y.str());
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  launch(max_pool2d_forward_kernel, grid_for(n, kThreads), kThreads, 0, stream, x.data<float>(), y.data<float>(),
                                                                             argmax.data<std::int32_t>(), n, g);
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Pool2dParams& p, Tensor& dx) {
  KILN_CHECK(argmax.numel() == dy.numel(), "max_pool2d_backward: argmax ", argmax.str(), " does not match ", dy.str());
  const int64_t n = dx.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(dx.device().index);
  if (dy.numel() == 0) {
    KILN_CUDA_CHECK(cudaMemsetAsync(dx.data<float>(), 0, dx.nbytes(), stream));
    return;
  }
  const PoolBackGeom g{dx.size(2), dx.size(3), dy.size(2), dy.size(3), p.kernel_h, p.kernel_w,
                       p.stride_h,  p.stride_w, p.pad_h,     p.pad_w};
  launch(max_pool2d_backward_kernel, grid_for(n, kThreads), kThreads, 0, stream, dy.data<float>(), argmax.data<std::int32_t>(), dx.data<float>(), n, g);
}

void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) {
  const AdaptiveGeom g{x.size(2), x.size(3), y.size(2), y.size(3)};
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  launch(adaptive_avg_forward_kernel, grid_for(n, kThreads), kThreads, 0, stream, x.data<float>(), y.data<float>(), n, g);
}

void adaptive_avg_pool2d_backward(const Tensor& dy, Tensor& dx) {
  const AdaptiveGeom g{dx.size(2), dx.size(3), dy.size(2), dy.size(3)};
  const int64_t n = dx.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(dx.device().index);
  launch(adaptive_avg_backward_kernel, grid_for(n, kThreads), kThreads, 0, stream, dy.data<float>(), dx.data<float>(),
                                                                                n, g);
}

void lrn_forward(const Tensor& x, std::int64_t size, float alpha, float beta, float k, Tensor& y, Tensor& scale) {
  const LrnGeom g{x.size(1), x.size(2) * x.size(3), size, alpha / static_cast<float>(size), beta, k, 0.0f};
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  launch(lrn_forward_kernel, grid_for(n, kThreads), kThreads, 0, stream, x.data<float>(), y.data<float>(),
                                                                      scale.data<float>(), n, g);
}

void lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, std::int64_t size,
                  float alpha, float beta, float k, Tensor& dx) {
  const float coef = static_cast<float>(2.0 * alpha * beta / static_cast<double>(size));
  const LrnGeom g{x.size(1), x.size(2) * x.size(3), size, alpha / static_cast<float>(size), beta, k, coef};
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(dx.device().index);
  launch(lrn_backward_kernel, grid_for(n, kThreads), kThreads, 0, stream, x.data<float>(), y.data<float>(), scale.data<float>(), dy.data<float>(), dx.data<float>(), n, g);
}

void dropout_forward(const Tensor& x, float p, std::uint64_t seed, std::uint64_t offset, Tensor& y) {
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  launch(dropout_kernel, grid_for(dropout_blocks(n, offset), kThreads), kThreads, 0, stream, x.data<float>(), y.data<float>(), n, p, dropout_scale(p), seed, offset);
}

void dropout_backward(const Tensor& dy, float p, std::uint64_t seed, std::uint64_t offset, Tensor& dx) {
  const int64_t n = dy.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(dx.device().index);
  launch(dropout_kernel, grid_for(dropout_blocks(n, offset), kThreads), kThreads, 0, stream, dy.data<float>(), dx.data<float>(), n, p, dropout_scale(p), seed, offset);
}

void resize_bilinear(const Tensor& x, Tensor& y) {
  const ResizeGeom g{x.size(2), x.size(3), y.size(2), y.size(3),
                     static_cast<float>(x.size(2)) / static_cast<float>(y.size(2)),
                     static_cast<float>(x.size(3)) / static_cast<float>(y.size(3))};
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t stream = current_stream(y.device().index);
  launch(resize_bilinear_kernel, grid_for(n, kThreads), kThreads, 0, stream, x.data<float>(), y.data<float>(), n, g);
}

}  // namespace kiln::cuda

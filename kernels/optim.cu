// CUDA twins of the data and optimizer kernels: uint8 batch normalisation and the fused SGD and
// Adam/AdamW updates (one read and one write of each parameter, gradient and state tensor).
#include <cstdint>

#include "backend/backend.h"
#include "cuda/launch.h"
#include "cuda/runtime.h"
#include "common.cuh"

namespace kiln::cuda {

namespace {

using kiln::cuda::launch;

using kiln::cuda::dev::aligned16;
using kiln::cuda::dev::grid_stride;

struct ChannelAffine {
  float a[4], b[4];  // y = x * a[c] + b[c]
};

// Four pixels per thread (one 4-byte load, one 16-byte store) when a plane's size is a multiple of 4,
// so the four share a channel: MNIST's 28x28 and 224x224 images.
__global__ void normalize_u8_vec4_kernel(const uchar4* __restrict__ x, float4* __restrict__ y, std::int64_t n4,
                                         std::int64_t C, std::int64_t inner4, ChannelAffine f) {
  for (std::int64_t i : grid_stride(n4)) {
    const int c = static_cast<int>((i / inner4) % C);
    const uchar4 v = x[i];
    const float a = f.a[c], b = f.b[c];
    y[i] = make_float4(static_cast<float>(v.x) * a + b, static_cast<float>(v.y) * a + b,
                       static_cast<float>(v.z) * a + b, static_cast<float>(v.w) * a + b);
  }
}

__global__ void normalize_u8_kernel(const std::uint8_t* __restrict__ x, float* __restrict__ y, std::int64_t n,
                                    std::int64_t C, std::int64_t inner, ChannelAffine f) {
  for (std::int64_t i : grid_stride(n)) {
    const int c = static_cast<int>((i / inner) % C);
    y[i] = static_cast<float>(x[i]) * f.a[c] + f.b[c];
  }
}

// The per-element updates, shared by the scalar and the float4 kernels (the same float operations
// in the same order, so both give the same bits). The per-step scalars (lr, bias corrections) are
// filled in by each thread from the device-resident scalars (see optim_advance).
struct SgdStep {
  float lr, momentum, wd;
  bool nesterov, has_buf;
  __device__ __forceinline__ void operator()(float& p, float g, float& buf) const {
    float d = g + wd * p;
    if (has_buf) {
      const float b = momentum * buf + d;
      buf = b;
      d = nesterov ? d + momentum * b : b;
    }
    p -= lr * d;
  }
};

struct AdamStep {
  float lr, b1, b2, eps, wd, bc1, bc2;
  bool decoupled;
  __device__ __forceinline__ void load(const float* scalars) {
    lr = scalars[0];
    bc1 = scalars[1];
    bc2 = scalars[2];
  }
  __device__ __forceinline__ void operator()(float& p, float g, float& m, float& v) const {
    float pi = p, d = g;
    if (decoupled)
      pi *= 1.0f - lr * wd;
    else
      d += wd * pi;
    const float mi = b1 * m + (1.0f - b1) * d;
    const float vi = b2 * v + (1.0f - b2) * d * d;
    m = mi;
    v = vi;
    p = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
};

// Scalar grid-stride loops, for tensors that are not 16-byte aligned.
__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
                           const float* __restrict__ scalars, std::int64_t n, SgdStep f) {
  f.lr = scalars[0];
  for (std::int64_t i : grid_stride(n)) {
    float b = f.has_buf ? buf[i] : 0.0f;
    f(p[i], g[i], b);
    if (f.has_buf) buf[i] = b;
  }
}

// 16-byte loads and stores (every pointer 16-byte aligned), then the scalar tail, in one launch.
__global__ void sgd_vec4_kernel(float4* __restrict__ p, const float4* __restrict__ g, float4* __restrict__ buf,
                                const float* __restrict__ scalars, std::int64_t n, SgdStep f) {
  f.lr = scalars[0];
  const std::int64_t n4 = n / 4;
  for (std::int64_t i : grid_stride(n4)) {
    float4 pv = p[i], b = f.has_buf ? buf[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float4 gv = g[i];
    f(pv.x, gv.x, b.x);
    f(pv.y, gv.y, b.y);
    f(pv.z, gv.z, b.z);
    f(pv.w, gv.w, b.w);
    p[i] = pv;
    if (f.has_buf) buf[i] = b;
  }
  float *ps = reinterpret_cast<float*>(p), *bs = reinterpret_cast<float*>(buf);
  const float* gs = reinterpret_cast<const float*>(g);
  for (std::int64_t i : grid_stride(4 * n4, n)) {  // the tail (n % 4 elements)
    float b = f.has_buf ? bs[i] : 0.0f;
    f(ps[i], gs[i], b);
    if (f.has_buf) bs[i] = b;
  }
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, const float* __restrict__ scalars, std::int64_t n, AdamStep f) {
  f.load(scalars);
  for (std::int64_t i : grid_stride(n)) {
    f(p[i], g[i], m[i], v[i]);
  }
}

__global__ void adam_vec4_kernel(float4* __restrict__ p, const float4* __restrict__ g, float4* __restrict__ m,
                                 float4* __restrict__ v, const float* __restrict__ scalars, std::int64_t n,
                                 AdamStep f) {
  f.load(scalars);
  const std::int64_t n4 = n / 4;
  for (std::int64_t i : grid_stride(n4)) {
    float4 pv = p[i], mv = m[i], vv = v[i];
    const float4 gv = g[i];
    f(pv.x, gv.x, mv.x, vv.x);
    f(pv.y, gv.y, mv.y, vv.y);
    f(pv.z, gv.z, mv.z, vv.z);
    f(pv.w, gv.w, mv.w, vv.w);
    p[i] = pv;
    m[i] = mv;
    v[i] = vv;
  }
  float *ps = reinterpret_cast<float*>(p), *ms = reinterpret_cast<float*>(m), *vs = reinterpret_cast<float*>(v);
  const float* gs = reinterpret_cast<const float*>(g);
  for (std::int64_t i : grid_stride(4 * n4, n)) {  // the tail (n % 4 elements)
    f(ps[i], gs[i], ms[i], vs[i]);
  }
}

// One thread: the scalars every update kernel of this step reads, from the step count on the device.
// The same Schedule::lr_at as on the host, and powers in double like the CPU twin, so both round the
// same bias corrections to float.
__global__ void optim_advance_kernel(std::int64_t* step, float* scalars, optim::Schedule schedule, float beta1,
                                     float beta2) {
  const std::int64_t t = *step;
  scalars[0] = schedule.lr_at(t);
  *step = t + 1;
  scalars[1] = static_cast<float>(1.0 - pow(static_cast<double>(beta1), static_cast<double>(t + 1)));
  scalars[2] = static_cast<float>(1.0 - pow(static_cast<double>(beta2), static_cast<double>(t + 1)));
}

}  // namespace

void normalize_u8(const Tensor& x, const float* mean, const float* std, Tensor& y) {
  const std::int64_t n = x.numel();
  if (n == 0) return;
  const std::int64_t N = x.size(0), C = x.size(1), inner = n / (N * C);
  KILN_CHECK(C >= 1 && C <= 4, "normalize_u8: ", C, " channels (at most 4 supported)");
  ChannelAffine f{};
  for (int c = 0; c < C; ++c) {
    f.a[c] = 1.0f / (255.0f * std[c]);
    f.b[c] = -mean[c] / std[c];
  }
  const std::uint8_t* xp = x.data<std::uint8_t>();
  float* yp = y.data<float>();
  cudaStream_t stream = current_stream(x.device().index);
  if (inner % 4 == 0 && reinterpret_cast<std::uintptr_t>(xp) % 4 == 0 && aligned16(yp)) {
    launch(normalize_u8_vec4_kernel, grid_for(n / 4), 256, 0, stream, reinterpret_cast<const uchar4*>(xp), reinterpret_cast<float4*>(yp), n / 4, C, inner / 4, f);
  } else {
    launch(normalize_u8_kernel, grid_for(n), 256, 0, stream, xp, yp, n, C, inner, f);
  }
}

void optim_advance(Tensor& step, Tensor& scalars, const optim::Schedule& schedule, float beta1, float beta2) {
  launch(optim_advance_kernel, 1, 1, 0, current_stream(step.device().index), step.data<std::int64_t>(),
         scalars.data<float>(), schedule, beta1, beta2);
}

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const Tensor& scalars, float momentum,
                float weight_decay, bool nesterov) {
  const std::int64_t n = param.numel();
  if (n == 0) return;
  const SgdStep f{0.0f, momentum, weight_decay, nesterov, momentum > 0.0f};
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* buf = f.has_buf ? momentum_buf.data<float>() : nullptr;
  const float* s = scalars.data<float>();
  cudaStream_t stream = current_stream(param.device().index);
  if (aligned16(p) && aligned16(g) && (!buf || aligned16(buf))) {
    launch(sgd_vec4_kernel, grid_for((n + 3) / 4), 256, 0, stream, reinterpret_cast<float4*>(p),
           reinterpret_cast<const float4*>(g), reinterpret_cast<float4*>(buf), s, n, f);
  } else {
    launch(sgd_kernel, grid_for(n), 256, 0, stream, p, g, buf, s, n, f);
  }
}

void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const Tensor& scalars, float beta1,
                 float beta2, float eps, float weight_decay, bool decoupled) {
  const std::int64_t n = param.numel();
  if (n == 0) return;
  const AdamStep f{0.0f, beta1, beta2, eps, weight_decay, 1.0f, 1.0f, decoupled};
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float *mp = m.data<float>(), *vp = v.data<float>();
  const float* s = scalars.data<float>();
  cudaStream_t stream = current_stream(param.device().index);
  if (aligned16(p) && aligned16(g) && aligned16(mp) && aligned16(vp)) {
    launch(adam_vec4_kernel, grid_for((n + 3) / 4), 256, 0, stream, reinterpret_cast<float4*>(p),
           reinterpret_cast<const float4*>(g), reinterpret_cast<float4*>(mp), reinterpret_cast<float4*>(vp), s, n, f);
  } else {
    launch(adam_kernel, grid_for(n), 256, 0, stream, p, g, mp, vp, s, n, f);
  }
}

}  // namespace kiln::cuda

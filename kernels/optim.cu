// CUDA twins of the data and optimizer kernels: uint8 batch normalisation and the fused SGD and
// Adam/AdamW updates (one read and one write of each parameter, gradient and state tensor).
#include <cstdint>

#include "backend/backend.h"
#include "cuda/runtime.h"

namespace kiln::cuda {

namespace {

struct ChannelAffine {
  float a[4], b[4];  // y = x * a[c] + b[c]
};

__global__ void normalize_u8_kernel(const std::uint8_t* __restrict__ x, float* __restrict__ y, std::int64_t n,
                                    std::int64_t C, std::int64_t inner, ChannelAffine f) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>((i / inner) % C);
    y[i] = static_cast<float>(x[i]) * f.a[c] + f.b[c];
  }
}

__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
                           std::int64_t n, float lr, float momentum, float wd, bool nesterov) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float d = g[i] + wd * p[i];
    if (buf) {
      const float b = momentum * buf[i] + d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] -= lr * d;
  }
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, std::int64_t n, float lr, float b1, float b2, float eps, float wd,
                            bool decoupled, float bc1, float bc2) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float pi = p[i], d = g[i];
    if (decoupled)
      pi *= 1.0f - lr * wd;
    else
      d += wd * pi;
    const float mi = b1 * m[i] + (1.0f - b1) * d;
    const float vi = b2 * v[i] + (1.0f - b2) * d * d;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
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
  normalize_u8_kernel<<<grid_for(n), 256, 0, current_stream(x.device().index)>>>(
      x.data<std::uint8_t>(), y.data<float>(), n, C, inner, f);
  KILN_CUDA_LAUNCH_CHECK("normalize_u8_kernel");
}

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, float lr, float momentum,
                float weight_decay, bool nesterov) {
  const std::int64_t n = param.numel();
  if (n == 0) return;
  float* buf = momentum > 0.0f ? momentum_buf.data<float>() : nullptr;
  sgd_kernel<<<grid_for(n), 256, 0, current_stream(param.device().index)>>>(
      param.data<float>(), grad.data<float>(), buf, n, lr, momentum, weight_decay, nesterov);
  KILN_CUDA_LAUNCH_CHECK("sgd_kernel");
}

void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1, float beta2,
                 float eps, float weight_decay, bool decoupled, float bc1, float bc2) {
  const std::int64_t n = param.numel();
  if (n == 0) return;
  adam_kernel<<<grid_for(n), 256, 0, current_stream(param.device().index)>>>(
      param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), n, lr, beta1, beta2, eps,
      weight_decay, decoupled, bc1, bc2);
  KILN_CUDA_LAUNCH_CHECK("adam_kernel");
}

}  // namespace kiln::cuda

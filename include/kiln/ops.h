// kiln/ops.h — differentiable operations. Each checks its arguments (shapes, dtypes, devices,
// naming both operands on a mismatch), then dispatches to the CPU or CUDA twin by the inputs'
// device, and records an autograd node when an input requires grad.
//
// All inputs of one op must live on the same device. Float ops take float32.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/tensor.h"

namespace kiln {

// ---- linear algebra ---------------------------------------------------------------------------
// [M, K] x [K, N] -> [M, N]
Tensor matmul(const Tensor& a, const Tensor& b);
// x [N, in], weight [out, in] (PyTorch layout), bias [out] or undefined -> x weight^T + bias: [N, out]
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// Adds bias [C] along dim 1 of x [N, C, ...].
Tensor bias_add(const Tensor& x, const Tensor& bias);

// ---- elementwise ------------------------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);  // same shapes
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);
Tensor relu(const Tensor& x);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator*(const Tensor& a, float s) { return scale(a, s); }
inline Tensor operator*(float s, const Tensor& a) { return scale(a, s); }

// ---- reductions -------------------------------------------------------------------------------
Tensor sum(const Tensor& x);                    // all elements -> scalar (shape [])
Tensor sum(const Tensor& x, std::int64_t axis); // removes `axis` (negative counts from the end)
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, std::int64_t axis);

// ---- classification ---------------------------------------------------------------------------
// Row-wise log-softmax of x [N, C], numerically stable.
Tensor log_softmax(const Tensor& x);
// Mean over the batch of -log softmax(logits)[label]; logits [N, C] float32, labels [N] int32/int64
// in [0, C). Fused and stable (log-sum-exp); backward is (softmax - onehot) / N.
// CPU: a label out of range throws. CUDA: it yields a NaN loss (checking would need a host sync).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
// Index of the largest element of each row of x [N, C] -> int64 [N].
Tensor argmax(const Tensor& x);
// Number of rows whose argmax equals the label -> int64 scalar on the inputs' device (no sync).
Tensor count_correct(const Tensor& logits, const Tensor& labels);
// Adds that number to `count` (one int64 on the same device): a running tally with no host sync.
void count_correct_(const Tensor& logits, const Tensor& labels, Tensor& count);

// ---- convolutional layers -------------------------------------------------------------------------
struct Conv2dParams {
  std::int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
  // Output size along one spatial axis.
  static std::int64_t out_size(std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad,
                               std::int64_t dilation) {
    return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
  }
};
struct Pool2dParams {
  std::int64_t kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
};

// x [N, C, H, W], weight [K, C / groups, R, S], bias [K] or undefined -> [N, K, P, Q].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p = {});
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor adaptive_avg_pool2d(const Tensor& x, std::int64_t out_h, std::int64_t out_w);
// Across channels, PyTorch semantics (AlexNet 2012: size 5, alpha 1e-4, beta 0.75, k 2).
Tensor local_response_norm(const Tensor& x, std::int64_t size, float alpha = 1e-4f, float beta = 0.75f, float k = 1.0f);
// Zeroes each element with probability p and scales the rest by 1 / (1 - p); identity when !training.
// The mask comes from the counter-based RNG, so CPU and GPU drop the same elements for a given seed.
Tensor dropout(const Tensor& x, float p, Generator& gen, bool training);
// Bilinear resize of [N, C, H, W] to [N, C, h, w] (align_corners = false). Not differentiable.
Tensor resize_bilinear(const Tensor& x, std::int64_t h, std::int64_t w);

// ---- data -------------------------------------------------------------------------------------------
// uint8 images [N, C, ...] -> float32 (x / 255 - mean[c]) / std[c], on the images' device (C <= 4;
// mean and std hold one value per channel, or a single value for all).
Tensor normalize_images(const Tensor& images, const std::vector<float>& mean, const std::vector<float>& std);

// ---- in-place updates (no autograd) -----------------------------------------------------------
void fill_(Tensor& x, float value);
void axpy_(float alpha, const Tensor& x, Tensor& y);  // y += alpha * x

}  // namespace kiln

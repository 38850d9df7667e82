// Convolutional-network ops: conv2d, pooling, local response norm, dropout, resize. Same pattern as
// ops.cpp: check, allocate, dispatch to the twins, record the backward closure.
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "kiln/random.h"
#include "ops/dispatch.h"

namespace kiln {

namespace {
using i64 = std::int64_t;
using Grads = std::vector<Tensor>;

void check_nchw(const char* op, const Tensor& x) {
  KILN_CHECK(x.defined(), op, ": input is an undefined tensor");
  KILN_CHECK(x.dtype() == DType::Float32 && x.dim() == 4, op, ": input must be float32 [N, C, H, W], got ", x.str());
}

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  constexpr const char* op = "conv2d";
  check_nchw(op, x);
  KILN_CHECK(weight.defined() && weight.dtype() == DType::Float32 && weight.dim() == 4, op,
             ": weight must be float32 [K, C/groups, R, S], got ", weight.str());
  KILN_CHECK(x.device() == weight.device(), op, ": input ", x.str(), " and weight ", weight.str(),
             " are on different devices");
  KILN_CHECK(p.groups >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 &&
                 p.pad_h >= 0 && p.pad_w >= 0,
             op, ": stride, dilation and groups must be >= 1 and padding >= 0");
  const i64 N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const i64 K = weight.size(0), R = weight.size(2), S = weight.size(3);
  KILN_CHECK(C % p.groups == 0 && K % p.groups == 0 && weight.size(1) == C / p.groups, op, ": weight ",
             shape_str(weight.shape()), " does not fit input ", shape_str(x.shape()), " with ", p.groups,
             " group(s) (need [K, C/groups, R, S] with C and K divisible by groups)");
  KILN_CHECK(R >= 1 && S >= 1, op, ": empty kernel in weight ", shape_str(weight.shape()));
  // (C++ division truncates toward zero, so the output-size formula alone would accept a kernel
  // one stride too large.)
  KILN_CHECK(H + 2 * p.pad_h >= p.dilation_h * (R - 1) + 1 && W + 2 * p.pad_w >= p.dilation_w * (S - 1) + 1, op,
             ": a ", R, "x", S, " kernel (dilation ", p.dilation_h, "x", p.dilation_w, ") does not fit input ",
             shape_str(x.shape()), " padded by ", p.pad_h, "x", p.pad_w);
  const i64 P = Conv2dParams::out_size(H, R, p.stride_h, p.pad_h, p.dilation_h);
  const i64 Q = Conv2dParams::out_size(W, S, p.stride_w, p.pad_w, p.dilation_w);
  const bool has_bias = bias.defined();
  if (has_bias)
    KILN_CHECK(bias.dtype() == DType::Float32 && bias.dim() == 1 && bias.size(0) == K &&
                   bias.device() == x.device(),
               op, ": bias ", bias.str(), " does not fit weight ", shape_str(weight.shape()));
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({N, K, P, Q}, DType::Float32, x.device());
  KILN_DISPATCH(y.device(), conv2d_forward, x, weight, p, y);
  if (has_bias) KILN_DISPATCH(y.device(), bias_add, y, bias, y);
  if (!autograd::needs_grad({&x, &weight, &bias})) return y;
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = has_bias && bias.requires_grad();
  return autograd::record(op, y, {&x, &weight, &bias},
                          [x = x.detach(), w = weight.detach(), K, p, gx, gw, gb](const Tensor& g) {
                            Grads out(3);
                            if (gx) {
                              out[0] = like(x);
                              KILN_DISPATCH(g.device(), conv2d_backward_data, g, w, p, out[0]);
                            }
                            if (gw) {
                              out[1] = like(w);
                              KILN_DISPATCH(g.device(), conv2d_backward_filter, x, g, p, out[1]);
                            }
                            if (gb) {
                              out[2] = Tensor::empty({K}, DType::Float32, g.device());
                              KILN_DISPATCH(g.device(), bias_grad, g, out[2]);
                            }
                            return out;
                          });
}

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  constexpr const char* op = "max_pool2d";
  check_nchw(op, x);
  KILN_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.pad_h >= 0 &&
                 p.pad_w >= 0 && 2 * p.pad_h <= p.kernel_h && 2 * p.pad_w <= p.kernel_w,
             op, ": kernel and stride must be >= 1, padding in [0, kernel/2]");
  KILN_CHECK(x.size(2) + 2 * p.pad_h >= p.kernel_h && x.size(3) + 2 * p.pad_w >= p.kernel_w, op, ": a ",
             p.kernel_h, "x", p.kernel_w, " window does not fit input ", shape_str(x.shape()), " padded by ",
             p.pad_h, "x", p.pad_w);
  const i64 P = Conv2dParams::out_size(x.size(2), p.kernel_h, p.stride_h, p.pad_h, 1);
  const i64 Q = Conv2dParams::out_size(x.size(3), p.kernel_w, p.stride_w, p.pad_w, 1);
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({x.size(0), x.size(1), P, Q}, DType::Float32, x.device());
  Tensor idx = Tensor::empty(y.shape(), DType::Int32, x.device());
  KILN_DISPATCH(y.device(), max_pool2d_forward, x, p, y, idx);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [idx, p, shape = x.shape()](const Tensor& g) {
    Tensor dx = Tensor::empty(shape, DType::Float32, g.device());
    KILN_DISPATCH(g.device(), max_pool2d_backward, g, idx, p, dx);
    return Grads{dx};
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::int64_t out_h, std::int64_t out_w) {
  constexpr const char* op = "adaptive_avg_pool2d";
  check_nchw(op, x);
  KILN_CHECK(out_h >= 1 && out_w >= 1, op, ": output size must be positive, got ", out_h, "x", out_w);
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w}, DType::Float32, x.device());
  KILN_DISPATCH(y.device(), adaptive_avg_pool2d_forward, x, y);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [shape = x.shape()](const Tensor& g) {
    Tensor dx = Tensor::empty(shape, DType::Float32, g.device());
    KILN_DISPATCH(g.device(), adaptive_avg_pool2d_backward, g, dx);
    return Grads{dx};
  });
}

Tensor local_response_norm(const Tensor& x, std::int64_t size, float alpha, float beta, float k) {
  constexpr const char* op = "local_response_norm";
  check_nchw(op, x);
  KILN_CHECK(size >= 1 && k > 0.0f && alpha >= 0.0f && beta >= 0.0f, op,
             ": need size >= 1, k > 0, alpha >= 0, beta >= 0");
  detail::OpScope scope(op);
  Tensor y = like(x), scale = like(x);
  KILN_DISPATCH(y.device(), lrn_forward, x, size, alpha, beta, k, y, scale);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x},
                          [x = x.detach(), y = y.detach(), scale, size, alpha, beta, k](const Tensor& g) {
                            Tensor dx = like(x);
                            KILN_DISPATCH(g.device(), lrn_backward, x, y, scale, g, size, alpha, beta, k, dx);
                            return Grads{dx};
                          });
}

Tensor dropout(const Tensor& x, float p, Generator& gen, bool training) {
  constexpr const char* op = "dropout";
  KILN_CHECK(x.defined() && x.dtype() == DType::Float32, op, ": input must be float32, got ", x.str());
  KILN_CHECK(p >= 0.0f && p < 1.0f, op, ": probability must be in [0, 1), got ", p);
  if (!training || p == 0.0f) return x;
  detail::OpScope scope(op);
  const std::uint64_t seed = gen.seed(), offset = gen.advance(static_cast<std::uint64_t>(x.numel()));
  Tensor y = like(x);
  KILN_DISPATCH(y.device(), dropout_forward, x, p, seed, offset, y);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [p, seed, offset](const Tensor& g) {
    Tensor dx = like(g);
    KILN_DISPATCH(g.device(), dropout_backward, g, p, seed, offset, dx);
    return Grads{dx};
  });
}

Tensor resize_bilinear(const Tensor& x, std::int64_t h, std::int64_t w) {
  constexpr const char* op = "resize_bilinear";
  check_nchw(op, x);
  KILN_CHECK(h >= 1 && w >= 1, op, ": target size must be positive, got ", h, "x", w);
  KILN_CHECK(!autograd::needs_grad({&x}), op, " is not differentiable; use it on inputs only");
  if (x.size(2) == h && x.size(3) == w) return x;
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({x.size(0), x.size(1), h, w}, DType::Float32, x.device());
  KILN_DISPATCH(y.device(), resize_bilinear, x, y);
  return y;
}

}  // namespace kiln

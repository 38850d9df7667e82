// The dispatcher: public ops check their arguments, allocate outputs, call the CPU or CUDA twin by
// device (KILN_DISPATCH), and record the backward closure when an input requires grad.
#include "kiln/ops.h"

#include "kiln/autograd.h"
#include "ops/dispatch.h"

namespace kiln {

namespace {
using i64 = std::int64_t;
using Grads = std::vector<Tensor>;

void check_defined(const char* op, const Tensor& t, const char* what) {
  KILN_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
}

void check_float(const char* op, const Tensor& t, const char* what) {
  check_defined(op, t, what);
  KILN_CHECK(t.dtype() == DType::Float32, op, ": ", what, " must be float32, got ", t.str());
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  KILN_CHECK(a.device() == b.device(), op, ": operands on different devices: ", a.str(), " and ", b.str(),
             " (move one with to())");
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  KILN_CHECK(a.shape() == b.shape(), op, ": shape mismatch: ", shape_str(a.shape()), " vs ", shape_str(b.shape()));
}

void check_labels(const char* op, const Tensor& logits, const Tensor& labels) {
  check_float(op, logits, "logits");
  check_defined(op, labels, "labels");
  KILN_CHECK(logits.dim() == 2, op, ": logits must be [N, C], got ", shape_str(logits.shape()));
  KILN_CHECK(labels.dtype() == DType::Int32 || labels.dtype() == DType::Int64, op,
             ": labels must be int32 or int64, got ", labels.str());
  KILN_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0), op, ": labels ", shape_str(labels.shape()),
             " do not match logits ", shape_str(logits.shape()), " (expected [", logits.size(0), "])");
  check_same_device(op, logits, labels);
}

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

// Elementwise binary op shared checks.
void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_float(op, a, "a");
  check_float(op, b, "b");
  check_same_device(op, a, b);
  check_same_shape(op, a, b);
}

Tensor axpby(const char* op, float alpha, const Tensor& a, float beta, const Tensor& b) {
  check_binary(op, a, b);
  detail::OpScope scope(op);
  Tensor y = like(a);
  KILN_DISPATCH(y.device(), add, alpha, a, beta, b, y);
  if (!autograd::needs_grad({&a, &b})) return y;
  return autograd::record(op, y, {&a, &b}, [alpha, beta](const Tensor& g) {
    return Grads{alpha == 1.0f ? g : scale(g, alpha), beta == 1.0f ? g : scale(g, beta)};
  });
}
}  // namespace

// ---- linear algebra ----------------------------------------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b) {
  constexpr const char* op = "matmul";
  check_float(op, a, "a");
  check_float(op, b, "b");
  check_same_device(op, a, b);
  KILN_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), op, ": cannot multiply ",
             shape_str(a.shape()), " by ", shape_str(b.shape()), " (need [M, K] x [K, N])");
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({a.size(0), b.size(1)}, DType::Float32, a.device());
  KILN_DISPATCH(y.device(), gemm, false, false, 1.0f, a, b, 0.0f, y);
  if (!autograd::needs_grad({&a, &b})) return y;
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return autograd::record(op, y, {&a, &b}, [a = a.detach(), b = b.detach(), ga, gb](const Tensor& g) {
    Grads out(2);
    if (ga) {
      out[0] = like(a);
      KILN_DISPATCH(g.device(), gemm, false, true, 1.0f, g, b, 0.0f, out[0]);  // g b^T
    }
    if (gb) {
      out[1] = like(b);
      KILN_DISPATCH(g.device(), gemm, true, false, 1.0f, a, g, 0.0f, out[1]);  // a^T g
    }
    return out;
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  constexpr const char* op = "linear";
  check_float(op, x, "input");
  check_float(op, weight, "weight");
  check_same_device(op, x, weight);
  KILN_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), op, ": input ",
             shape_str(x.shape()), " does not fit weight ", shape_str(weight.shape()),
             " (need input [N, in] and weight [out, in])");
  const bool has_bias = bias.defined();
  if (has_bias) {
    check_float(op, bias, "bias");
    check_same_device(op, x, bias);
    KILN_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": bias ", shape_str(bias.shape()),
               " does not fit weight ", shape_str(weight.shape()));
  }
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({x.size(0), weight.size(0)}, DType::Float32, x.device());
  KILN_DISPATCH(y.device(), gemm, false, true, 1.0f, x, weight, 0.0f, y);  // x W^T
  if (has_bias) KILN_DISPATCH(y.device(), bias_add, y, bias, y);
  if (!autograd::needs_grad({&x, &weight, &bias})) return y;
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gbias = has_bias && bias.requires_grad();
  return autograd::record(
      op, y, {&x, &weight, &bias},
      [x = x.detach(), w = weight.detach(), b = has_bias ? bias.detach() : Tensor(), gx, gw, gbias](const Tensor& g) {
        Grads out(3);
        if (gx) {
          out[0] = like(x);
          KILN_DISPATCH(g.device(), gemm, false, false, 1.0f, g, w, 0.0f, out[0]);  // g W
        }
        if (gw) {
          out[1] = like(w);
          KILN_DISPATCH(g.device(), gemm, true, false, 1.0f, g, x, 0.0f, out[1]);  // g^T x
        }
        if (gbias) {
          out[2] = like(b);
          KILN_DISPATCH(g.device(), bias_grad, g, out[2]);
        }
        return out;
      });
}

Tensor bias_add(const Tensor& x, const Tensor& bias) {
  constexpr const char* op = "bias_add";
  check_float(op, x, "input");
  check_float(op, bias, "bias");
  check_same_device(op, x, bias);
  KILN_CHECK(x.dim() >= 2 && bias.dim() == 1 && bias.size(0) == x.size(1), op, ": bias ", shape_str(bias.shape()),
             " does not fit input ", shape_str(x.shape()), " (bias has one value per channel, dim 1)");
  detail::OpScope scope(op);
  Tensor y = like(x);
  KILN_DISPATCH(y.device(), bias_add, x, bias, y);
  if (!autograd::needs_grad({&x, &bias})) return y;
  const bool gbias = bias.requires_grad();
  return autograd::record(op, y, {&x, &bias}, [b = bias.detach(), gbias](const Tensor& g) {
    Grads out{g, Tensor()};
    if (gbias) {
      out[1] = like(b);
      KILN_DISPATCH(g.device(), bias_grad, g, out[1]);
    }
    return out;
  });
}

// ---- elementwise -------------------------------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b) { return axpby("add", 1.0f, a, 1.0f, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return axpby("sub", 1.0f, a, -1.0f, b); }

Tensor mul(const Tensor& a, const Tensor& b) {
  constexpr const char* op = "mul";
  check_binary(op, a, b);
  detail::OpScope scope(op);
  Tensor y = like(a);
  KILN_DISPATCH(y.device(), mul, a, b, y);
  if (!autograd::needs_grad({&a, &b})) return y;
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return autograd::record(op, y, {&a, &b}, [a = a.detach(), b = b.detach(), ga, gb](const Tensor& g) {
    return Grads{ga ? mul(g, b) : Tensor(), gb ? mul(g, a) : Tensor()};
  });
}

Tensor scale(const Tensor& x, float s) {
  constexpr const char* op = "scale";
  check_float(op, x, "input");
  detail::OpScope scope(op);
  Tensor y = like(x);
  KILN_DISPATCH(y.device(), scale, x, s, y);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [s](const Tensor& g) { return Grads{scale(g, s)}; });
}

Tensor relu(const Tensor& x) {
  constexpr const char* op = "relu";
  check_float(op, x, "input");
  detail::OpScope scope(op);
  Tensor y = like(x);
  KILN_DISPATCH(y.device(), relu, x, y);
  if (!autograd::needs_grad({&x})) return y;
  // Saves the output (a detached view of y's storage, so no reference cycle through the node).
  return autograd::record(op, y, {&x}, [y = y.detach()](const Tensor& g) {
    Tensor dx = like(g);
    KILN_DISPATCH(g.device(), relu_backward, y, g, dx);
    return Grads{dx};
  });
}

// ---- reductions --------------------------------------------------------------------------------------
Tensor sum(const Tensor& x) {
  constexpr const char* op = "sum";
  check_float(op, x, "input");
  detail::OpScope scope(op);
  Tensor y = Tensor::empty({}, DType::Float32, x.device());
  KILN_DISPATCH(y.device(), sum_all, x, y);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [shape = x.shape()](const Tensor& g) {
    Tensor dx = Tensor::empty(shape, DType::Float32, g.device());
    KILN_DISPATCH(g.device(), broadcast_axis, g, 1.0f, 1, dx.numel(), 1, dx);
    return Grads{dx};
  });
}

Tensor sum(const Tensor& x, std::int64_t axis) {
  constexpr const char* op = "sum(axis)";
  check_float(op, x, "input");
  const i64 d = x.dim();
  const i64 a = axis < 0 ? axis + d : axis;
  KILN_CHECK(a >= 0 && a < d, op, ": axis ", axis, " out of range for ", shape_str(x.shape()));
  i64 outer = 1, inner = 1;
  Shape out_shape;
  for (i64 i = 0; i < d; ++i) {
    const i64 n = x.shape()[static_cast<std::size_t>(i)];
    if (i < a) outer *= n;
    if (i > a) inner *= n;
    if (i != a) out_shape.push_back(n);
  }
  const i64 n = x.size(a);
  detail::OpScope scope(op);
  Tensor y = Tensor::empty(out_shape, DType::Float32, x.device());
  KILN_DISPATCH(y.device(), sum_axis, x, outer, n, inner, y);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [shape = x.shape(), outer, n, inner](const Tensor& g) {
    Tensor dx = Tensor::empty(shape, DType::Float32, g.device());
    KILN_DISPATCH(g.device(), broadcast_axis, g, 1.0f, outer, n, inner, dx);
    return Grads{dx};
  });
}

Tensor mean(const Tensor& x) {
  check_float("mean", x, "input");
  KILN_CHECK(x.numel() > 0, "mean of an empty tensor ", x.str());
  return scale(sum(x), 1.0f / static_cast<float>(x.numel()));
}

Tensor mean(const Tensor& x, std::int64_t axis) {
  check_float("mean(axis)", x, "input");
  const i64 n = x.size(axis);
  KILN_CHECK(n > 0, "mean over an empty axis of ", x.str());
  return scale(sum(x, axis), 1.0f / static_cast<float>(n));
}

// ---- classification ----------------------------------------------------------------------------------
Tensor log_softmax(const Tensor& x) {
  constexpr const char* op = "log_softmax";
  check_float(op, x, "input");
  KILN_CHECK(x.dim() == 2, op, ": input must be [N, C], got ", shape_str(x.shape()));
  detail::OpScope scope(op);
  Tensor y = like(x);
  KILN_DISPATCH(y.device(), log_softmax, x, y);
  if (!autograd::needs_grad({&x})) return y;
  return autograd::record(op, y, {&x}, [y = y.detach()](const Tensor& g) {
    Tensor dx = like(g);
    KILN_DISPATCH(g.device(), log_softmax_backward, y, g, dx);
    return Grads{dx};
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  constexpr const char* op = "cross_entropy";
  check_labels(op, logits, labels);
  const i64 N = logits.size(0);
  KILN_CHECK(N > 0 && logits.size(1) > 0, op, ": empty logits ", shape_str(logits.shape()));
  detail::OpScope scope(op);
  const Device dev = logits.device();
  Tensor losses = Tensor::empty({N}, DType::Float32, dev);
  Tensor lse = Tensor::empty({N}, DType::Float32, dev);
  KILN_DISPATCH(dev, softmax_xent, logits, labels, losses, lse);
  Tensor loss = Tensor::empty({}, DType::Float32, dev);
  KILN_DISPATCH(dev, sum_all, losses, loss);
  const float inv_n = 1.0f / static_cast<float>(N);
  KILN_DISPATCH(dev, scale, loss, inv_n, loss);
  if (!autograd::needs_grad({&logits})) return loss;
  return autograd::record(op, loss, {&logits, nullptr},
                          [x = logits.detach(), labels = labels.detach(), lse, inv_n](const Tensor& g) {
                            Tensor dx = like(x);
                            KILN_DISPATCH(g.device(), softmax_xent_backward, x, labels, lse, g, inv_n, dx);
                            return Grads{dx, Tensor()};
                          });
}

Tensor argmax(const Tensor& x) {
  constexpr const char* op = "argmax";
  check_float(op, x, "input");
  KILN_CHECK(x.dim() == 2 && x.size(1) > 0, op, ": input must be [N, C] with C > 0, got ", shape_str(x.shape()));
  detail::OpScope scope(op);
  Tensor idx = Tensor::empty({x.size(0)}, DType::Int64, x.device());
  KILN_DISPATCH(x.device(), argmax, x, idx);
  return idx;
}

Tensor count_correct(const Tensor& logits, const Tensor& labels) {
  constexpr const char* op = "count_correct";
  check_labels(op, logits, labels);
  KILN_CHECK(logits.size(1) > 0, op, ": logits have no classes: ", shape_str(logits.shape()));
  detail::OpScope scope(op);
  Tensor count = Tensor::zeros({}, DType::Int64, logits.device());
  KILN_DISPATCH(logits.device(), count_correct, logits, labels, count);
  return count;
}

void count_correct_(const Tensor& logits, const Tensor& labels, Tensor& count) {
  constexpr const char* op = "count_correct_";
  check_labels(op, logits, labels);
  KILN_CHECK(count.defined() && count.dtype() == DType::Int64 && count.numel() == 1, op,
             ": the tally must be one int64, got ", count.str());
  check_same_device(op, logits, count);
  detail::OpScope scope(op);
  KILN_DISPATCH(logits.device(), count_correct, logits, labels, count);
}

// ---- data -------------------------------------------------------------------------------------------
Tensor normalize_images(const Tensor& images, const std::vector<float>& mean, const std::vector<float>& std) {
  constexpr const char* op = "normalize_images";
  check_defined(op, images, "images");
  KILN_CHECK(images.dtype() == DType::UInt8 && images.dim() >= 2, op, ": expected uint8 [N, C, ...], got ",
             images.str());
  const i64 C = images.size(1);
  KILN_CHECK(C >= 1 && C <= 4, op, ": ", C, " channels in ", images.str(), " (1 to 4 supported)");
  auto per_channel = [&](const std::vector<float>& v, const char* what) {
    KILN_CHECK(v.size() == 1 || static_cast<i64>(v.size()) == C, op, ": ", v.size(), " ", what,
               " values for ", C, " channels");
    std::vector<float> out(static_cast<std::size_t>(C));
    for (i64 c = 0; c < C; ++c) out[static_cast<std::size_t>(c)] = v[v.size() == 1 ? 0 : static_cast<std::size_t>(c)];
    return out;
  };
  const std::vector<float> m = per_channel(mean, "mean"), s = per_channel(std, "std");
  for (float v : s) KILN_CHECK(v > 0.0f, op, ": std must be positive, got ", v);
  detail::OpScope scope(op);
  Tensor y = Tensor::empty(images.shape(), DType::Float32, images.device());
  KILN_DISPATCH(images.device(), normalize_u8, images, m.data(), s.data(), y);
  return y;
}

// ---- in-place updates --------------------------------------------------------------------------------
void fill_(Tensor& x, float value) {
  check_defined("fill_", x, "tensor");
  detail::OpScope scope("fill_");
  KILN_DISPATCH(x.device(), fill, x, value);
}

void axpy_(float alpha, const Tensor& x, Tensor& y) {
  check_binary("axpy_", x, y);
  detail::OpScope scope("axpy_");
  KILN_DISPATCH(y.device(), axpy, alpha, x, y);
}

}  // namespace kiln

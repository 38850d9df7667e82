// CPU twins of the kernels in backend/twins.inc: the reference for correctness and the fallback
// backend. Reductions accumulate in double; loops over large tensors use OpenMP with static
// scheduling, so results are deterministic for a given thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "backend/backend.h"
#include "cpu/parallel.h"
#include "kiln/random.h"

namespace kiln::cpu {

namespace {
using i64 = std::int64_t;
template <class T>
void fill_typed(Tensor& y, T v) {
  T* p = y.data<T>();
  std::fill(p, p + y.numel(), v);
}

// Calls f(row, label) for every row, for int32 or int64 labels.
template <class F>
void for_labels(const Tensor& labels, F&& f) {
  const i64 n = labels.numel();
  if (labels.dtype() == DType::Int32) {
    const std::int32_t* l = labels.data<std::int32_t>();
    for (i64 i = 0; i < n; ++i) f(i, static_cast<i64>(l[i]));
  } else {
    const std::int64_t* l = labels.data<std::int64_t>();
    for (i64 i = 0; i < n; ++i) f(i, l[i]);
  }
}

double row_logsumexp(const float* x, i64 C) {
  float m = -std::numeric_limits<float>::infinity();
  for (i64 c = 0; c < C; ++c) m = std::max(m, x[c]);
  if (std::isinf(m)) return m;  // all -inf (or +inf present): the sum below would be NaN
  double s = 0.0;
  for (i64 c = 0; c < C; ++c) s += std::exp(static_cast<double>(x[c]) - m);
  return m + std::log(s);
}
}  // namespace


// ---- fill and random ---------------------------------------------------------------------------------
void fill(Tensor& y, float value) {
  switch (y.dtype()) {
    case DType::Float32: fill_typed<float>(y, value); break;
    case DType::Int32: fill_typed<std::int32_t>(y, static_cast<std::int32_t>(value)); break;
    case DType::Int64: fill_typed<std::int64_t>(y, static_cast<std::int64_t>(value)); break;
    case DType::UInt8: fill_typed<std::uint8_t>(y, static_cast<std::uint8_t>(value)); break;
    default: KILN_FAIL("fill: unsupported dtype ", dtype_name(y.dtype()));
  }
}

// Element i is uniform(seed, offset + i) / normal(...); philox::for_elements draws a Philox block
// (four elements) at a time. Threads take contiguous ranges (see for_range).
void uniform(Tensor& y, std::uint64_t seed, std::uint64_t offset, float lo, float hi) {
  float* p = y.data<float>();
  const float span = hi - lo;
  for_range(y.numel(), [=](i64 b, i64 e) {
    philox::for_elements(philox::Uniforms{seed}, offset, static_cast<std::uint64_t>(b),
                         static_cast<std::uint64_t>(e), [=](std::uint64_t i, float u) { p[i] = lo + span * u; });
  });
}

void normal(Tensor& y, std::uint64_t seed, std::uint64_t offset, float mean, float std) {
  float* p = y.data<float>();
  for_range(y.numel(), [=](i64 b, i64 e) {
    philox::for_elements(philox::Normals{seed}, offset, static_cast<std::uint64_t>(b),
                         static_cast<std::uint64_t>(e), [=](std::uint64_t i, float z) { p[i] = mean + std * z; });
  });
}

// ---- elementwise -------------------------------------------------------------------------------------

void add(float alpha, const Tensor& a, float beta, const Tensor& b, Tensor& y) {
  const float* __restrict pa = a.data<float>();
  const float* __restrict pb = b.data<float>();
  float* py = y.data<float>();
  for_range(y.numel(), [=](i64 b0, i64 e) {
    for (i64 i = b0; i < e; ++i) py[i] = alpha * pa[i] + beta * pb[i];
  });
}

void mul(const Tensor& a, const Tensor& b, Tensor& y) {
  const float* __restrict pa = a.data<float>();
  const float* __restrict pb = b.data<float>();
  float* py = y.data<float>();
  for_range(y.numel(), [=](i64 b0, i64 e) {
    for (i64 i = b0; i < e; ++i) py[i] = pa[i] * pb[i];
  });
}

void scale(const Tensor& x, float s, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for_range(y.numel(), [=](i64 b0, i64 e) {
    for (i64 i = b0; i < e; ++i) py[i] = s * px[i];
  });
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for_range(y.numel(), [=](i64 b0, i64 e) {
    for (i64 i = b0; i < e; ++i) py[i] += alpha * px[i];
  });
}

void relu(const Tensor& x, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for_range(y.numel(), [=](i64 b0, i64 e) {
    for (i64 i = b0; i < e; ++i) py[i] = px[i] < 0.0f ? 0.0f : px[i];  // NaN stays NaN (divergence must show)
  });
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const float* py = y.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  for_range(dx.numel(), [=](i64 b0, i64 e) {
    // Load dy unconditionally: the select then vectorises (a conditional load would be a branch,
    // mispredicted half the time on real activations; bench/RESULTS.md has the cost).
    for (i64 i = b0; i < e; ++i) {
      const float g = pdy[i];
      pdx[i] = py[i] > 0.0f ? g : 0.0f;
    }
  });
}

void bias_add(const Tensor& x, const Tensor& bias, Tensor& y) {
  const i64 C = bias.numel(), outer = x.size(0), inner = x.numel() / std::max<i64>(outer * C, 1);
  const float *px = x.data<float>(), *pb = bias.data<float>();
  float* py = y.data<float>();
  if (inner == 1) {  // [rows, C] (a linear layer): add the bias row to every row
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
    for (i64 o = 0; o < outer; ++o) {
      const float* xi = px + o * C;
      float* yi = py + o * C;
      for (i64 c = 0; c < C; ++c) yi[c] = xi[c] + pb[c];
    }
    return;
  }
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
  for (i64 oc = 0; oc < outer * C; ++oc) {
    const float b = pb[oc % C];
    const float* xi = px + oc * inner;
    float* yi = py + oc * inner;
    for (i64 i = 0; i < inner; ++i) yi[i] = xi[i] + b;
  }
}

void bias_grad(const Tensor& dy, Tensor& dbias) {
  const i64 C = dbias.numel(), outer = dy.size(0), inner = dy.numel() / std::max<i64>(outer * C, 1);
  const float* pdy = dy.data<float>();
  float* pdb = dbias.data<float>();
  if (inner == 1) {  // [rows, C]: column sums, walking the rows in order (each column's additions
                     // happen in row order, as in the general loop, but memory is read row by row)
    constexpr i64 kBlock = 256;  // columns per task: one row segment of 1 KiB, accumulators in L1
#pragma omp parallel for schedule(static) if (dy.numel() > kParallelMin)
    for (i64 c0 = 0; c0 < C; c0 += kBlock) {
      const i64 w = std::min(kBlock, C - c0);
      double acc[kBlock] = {};
      for (i64 o = 0; o < outer; ++o) {
        const float* row = pdy + o * C + c0;
        for (i64 j = 0; j < w; ++j) acc[j] += row[j];
      }
      for (i64 j = 0; j < w; ++j) pdb[c0 + j] = static_cast<float>(acc[j]);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (dy.numel() > kParallelMin)
  for (i64 c = 0; c < C; ++c) {
    double s = 0.0;
    for (i64 o = 0; o < outer; ++o) {
      const float* row = pdy + (o * C + c) * inner;
#pragma omp simd reduction(+ : s)
      for (i64 i = 0; i < inner; ++i) s += row[i];
    }
    pdb[c] = static_cast<float>(s);
  }
}

// ---- reductions --------------------------------------------------------------------------------------
void sum_all(const Tensor& x, Tensor& y) {
  const float* px = x.data<float>();
  const i64 n = x.numel();
  // Per-thread partial sums in double (SIMD lanes in a fixed order), combined in thread order.
  double s = 0.0;
#if defined(_OPENMP)
  if (n > kParallelMin) {
    std::vector<double> part(static_cast<std::size_t>(omp_get_max_threads()), 0.0);
#pragma omp parallel
    {
      const i64 t = omp_get_thread_num(), T = omp_get_num_threads();
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (i64 i = n * t / T; i < n * (t + 1) / T; ++i) acc += px[i];
      part[static_cast<std::size_t>(t)] = acc;
    }
    for (double v : part) s += v;
    *y.data<float>() = static_cast<float>(s);
    return;
  }
#endif
#pragma omp simd reduction(+ : s)
  for (i64 i = 0; i < n; ++i) s += px[i];
  *y.data<float>() = static_cast<float>(s);
}

void sum_axis(const Tensor& x, i64 outer, i64 n, i64 inner, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  if (inner == 1) {  // row sums
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
    for (i64 o = 0; o < outer; ++o) {
      const float* row = px + o * n;
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (i64 k = 0; k < n; ++k) s += row[k];
      py[o] = static_cast<float>(s);
    }
    return;
  }
  // Strided: accumulate whole rows of `inner` outputs while walking k, so memory is read in order
  // (each output still adds its n values in k order).
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
  for (i64 o = 0; o < outer; ++o) {
    std::vector<double> acc(static_cast<std::size_t>(inner), 0.0);
    for (i64 k = 0; k < n; ++k) {
      const float* row = px + (o * n + k) * inner;
      for (i64 i = 0; i < inner; ++i) acc[static_cast<std::size_t>(i)] += row[i];
    }
    for (i64 i = 0; i < inner; ++i) py[o * inner + i] = static_cast<float>(acc[static_cast<std::size_t>(i)]);
  }
}

void broadcast_axis(const Tensor& dy, float s, i64 outer, i64 n, i64 inner, Tensor& dx) {
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (dx.numel() > kParallelMin)
  for (i64 o = 0; o < outer; ++o) {
    if (inner == 1) {  // sum over the last axis (or over everything): one value per row
      std::fill(pdx + o * n, pdx + (o + 1) * n, s * pdy[o]);
      continue;
    }
    for (i64 k = 0; k < n; ++k) {
      float* row = pdx + (o * n + k) * inner;
      const float* src = pdy + o * inner;
      for (i64 i = 0; i < inner; ++i) row[i] = s * src[i];
    }
  }
}

// ---- classification ----------------------------------------------------------------------------------
void log_softmax(const Tensor& x, Tensor& y) {
  const i64 N = x.size(0), C = x.size(1);
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > kParallelMin)
  for (i64 r = 0; r < N; ++r) {
    const double lse = row_logsumexp(px + r * C, C);
    for (i64 c = 0; c < C; ++c) py[r * C + c] = static_cast<float>(px[r * C + c] - lse);
  }
}

void log_softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const i64 N = y.size(0), C = y.size(1);
  const float *py = y.data<float>(), *pdy = dy.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() > kParallelMin)
  for (i64 r = 0; r < N; ++r) {
    double s = 0.0;
    for (i64 c = 0; c < C; ++c) s += pdy[r * C + c];
    for (i64 c = 0; c < C; ++c)
      pdx[r * C + c] = static_cast<float>(pdy[r * C + c] - std::exp(static_cast<double>(py[r * C + c])) * s);
  }
}

void softmax_xent(const Tensor& logits, const Tensor& labels, Tensor& losses, Tensor& lse) {
  const i64 C = logits.size(1);
  const float* px = logits.data<float>();
  float *pl = losses.data<float>(), *plse = lse.data<float>();
  for_labels(labels, [&](i64 r, i64 label) {
    KILN_CHECK(label >= 0 && label < C, "cross_entropy: label ", label, " of row ", r, " is outside [0, ", C, ")");
    const double m = row_logsumexp(px + r * C, C);
    plse[r] = static_cast<float>(m);
    pl[r] = static_cast<float>(m - px[r * C + label]);
  });
}

void softmax_xent_backward(const Tensor& logits, const Tensor& labels, const Tensor& lse, const Tensor& dloss,
                           float s, Tensor& dlogits) {
  const i64 C = logits.size(1);
  const float *px = logits.data<float>(), *plse = lse.data<float>();
  float* pd = dlogits.data<float>();
  const double g = static_cast<double>(*dloss.data<float>()) * s;
  for_labels(labels, [&](i64 r, i64 label) {
    for (i64 c = 0; c < C; ++c) {
      const double p = std::exp(static_cast<double>(px[r * C + c]) - plse[r]);
      pd[r * C + c] = static_cast<float>((p - (c == label ? 1.0 : 0.0)) * g);
    }
  });
}

// NaN counts as the largest value; ties go to the lowest index (the CUDA twin agrees).
void argmax(const Tensor& x, Tensor& index) {
  const i64 N = x.size(0), C = x.size(1);
  const float* px = x.data<float>();
  std::int64_t* pi = index.data<std::int64_t>();
  for (i64 r = 0; r < N; ++r) {
    i64 best = 0;
    for (i64 c = 1; c < C; ++c) {
      const float v = px[r * C + c], b = px[r * C + best];
      if (std::isnan(b)) break;
      if (std::isnan(v) || v > b) best = c;
    }
    pi[r] = best;
  }
}

void count_correct(const Tensor& logits, const Tensor& labels, Tensor& count) {
  Tensor index = Tensor::empty({logits.size(0)}, DType::Int64);
  argmax(logits, index);
  const std::int64_t* pi = index.data<std::int64_t>();
  std::int64_t n = 0;
  for_labels(labels, [&](i64 r, i64 label) { n += pi[r] == label ? 1 : 0; });
  *count.data<std::int64_t>() += n;
}

}  // namespace kiln::cpu

namespace kiln::cpu {

// ---- data --------------------------------------------------------------------------------------------
void normalize_u8(const Tensor& x, const float* mean, const float* std, Tensor& y) {
  const std::int64_t N = x.size(0), C = x.size(1), inner = x.numel() / std::max<std::int64_t>(N * C, 1);
  const std::uint8_t* px = x.data<std::uint8_t>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > (1 << 20))
  for (std::int64_t nc = 0; nc < N * C; ++nc) {
    const std::int64_t c = nc % C;
    const float a = 1.0f / (255.0f * std[c]), b = -mean[c] / std[c];
    for (std::int64_t i = 0; i < inner; ++i) py[nc * inner + i] = static_cast<float>(px[nc * inner + i]) * a + b;
  }
}

// ---- optimizers --------------------------------------------------------------------------------------
void optim_advance(Tensor& step, Tensor& scalars, const optim::Schedule& schedule, float beta1, float beta2) {
  std::int64_t& t = step.data<std::int64_t>()[0];
  float* s = scalars.data<float>();
  s[0] = schedule.lr_at(t);
  ++t;
  s[1] = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t)));
  s[2] = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t)));
}

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const Tensor& scalars, float momentum,
                float weight_decay, bool nesterov) {
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* buf = momentum > 0.0f ? momentum_buf.data<float>() : nullptr;
  const float lr = scalars.data<float>()[0];
  // One branch-free loop per variant, so each vectorises.
  for_range(param.numel(), [=](i64 b0, i64 e) {
    if (!buf) {
      for (i64 i = b0; i < e; ++i) p[i] -= lr * (g[i] + weight_decay * p[i]);
    } else if (nesterov) {
      for (i64 i = b0; i < e; ++i) {
        const float d = g[i] + weight_decay * p[i];
        buf[i] = momentum * buf[i] + d;
        p[i] -= lr * (d + momentum * buf[i]);
      }
    } else {
      for (i64 i = b0; i < e; ++i) {
        buf[i] = momentum * buf[i] + (g[i] + weight_decay * p[i]);
        p[i] -= lr * buf[i];
      }
    }
  });
}

void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const Tensor& scalars, float beta1,
                 float beta2, float eps, float weight_decay, bool decoupled) {
  // Distinct tensors (__restrict), the element in locals and -fno-math-errno: the loop vectorises
  // (speed-up in bench/RESULTS.md).
  float* __restrict p = param.data<float>();
  float* __restrict pm = m.data<float>();
  float* __restrict pv = v.data<float>();
  const float* __restrict g = grad.data<float>();
  const float* s = scalars.data<float>();
  const float lr = s[0], bc1 = s[1], bc2 = s[2];
  const std::int64_t n = param.numel();
  const float decay = decoupled ? 1.0f - lr * weight_decay : 1.0f, wd = decoupled ? 0.0f : weight_decay;
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (std::int64_t i = 0; i < n; ++i) {
    float pi = p[i], d = g[i];
    if (decoupled)
      pi *= decay;
    else
      d += wd * pi;
    const float mi = beta1 * pm[i] + (1.0f - beta1) * d;
    const float vi = beta2 * pv[i] + (1.0f - beta2) * d * d;
    pm[i] = mi;
    pv[i] = vi;
    p[i] = pi - lr * (mi / bc1) / (std::sqrt(vi / bc2) + eps);
  }
}

}  // namespace kiln::cpu

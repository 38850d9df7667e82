// CPU twins of the CNN helper kernels: max pooling, adaptive average pooling, local response norm
// (across channels), dropout and bilinear resize. Reference quality: sums accumulate in double,
// every formula is written the obvious way (PyTorch semantics, see twins.inc). Loops run over the
// (n, c) planes, split across OpenMP threads only above kParallelMin elements of work.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "cpu/parallel.h"
#include "kiln/random.h"

namespace kiln::cpu {

namespace {
using i64 = std::int64_t;

// Rows [start, end) of adaptive pooling cell i when `in` rows are pooled into `out` cells.
i64 adaptive_start(i64 i, i64 in, i64 out) { return (i * in) / out; }
i64 adaptive_end(i64 i, i64 in, i64 out) { return ((i + 1) * in + out - 1) / out; }

// For every input row h, the cells [lo[h], hi[h]] whose ranges contain it (contiguous, because
// start and end grow with the cell index). Found by scanning the cells: the CUDA twin uses a closed
// form, so the two implementations check each other.
void covering_cells(i64 in, i64 out, std::vector<i64>& lo, std::vector<i64>& hi) {
  lo.assign(static_cast<std::size_t>(in), out);
  hi.assign(static_cast<std::size_t>(in), -1);
  for (i64 i = 0; i < out; ++i)
    for (i64 h = adaptive_start(i, in, out); h < adaptive_end(i, in, out); ++h) {
      lo[h] = std::min(lo[h], i);
      hi[h] = std::max(hi[h], i);
    }
}

// One axis of a bilinear resize (PyTorch, align_corners = false): source rows i0, i1 and their
// weights. The source coordinate is computed in float exactly like PyTorch (and the CUDA twin).
struct Tap {
  i64 i0, i1;
  float w0, w1;
};
std::vector<Tap> bilinear_taps(i64 in, i64 out) {
  std::vector<Tap> taps(static_cast<std::size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (i64 d = 0; d < out; ++d) {
    float src = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    const i64 i0 = std::min(static_cast<i64>(src), in - 1);
    const float l1 = src - static_cast<float>(i0);
    taps[d] = Tap{i0, i0 < in - 1 ? i0 + 1 : i0, 1.0f - l1, l1};
  }
  return taps;
}

float dropout_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }
}  // namespace

// ---- max pooling -----------------------------------------------------------------------------------
void max_pool2d_forward(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& argmax) {
  const i64 planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), P = y.size(2), Q = y.size(3);
  KILN_CHECK(H * W <= std::numeric_limits<std::int32_t>::max(), "max_pool2d: plane ", H, "x", W,
             " too large for int32 argmax indices");
  const float* px = x.data<float>();
  float* py = y.data<float>();
  std::int32_t* pi = argmax.data<std::int32_t>();
#pragma omp parallel for schedule(static) if (y.numel() * p.kernel_h * p.kernel_w > kParallelMin)
  for (i64 pl = 0; pl < planes; ++pl) {
    const float* xp = px + pl * H * W;
    for (i64 i = 0; i < P; ++i) {
      const i64 h0 = i * p.stride_h - p.pad_h;
      const i64 hs = std::max<i64>(h0, 0), he = std::min(h0 + p.kernel_h, H);
      for (i64 j = 0; j < Q; ++j) {
        const i64 w0 = j * p.stride_w - p.pad_w;
        const i64 ws = std::max<i64>(w0, 0), we = std::min(w0 + p.kernel_w, W);
        float best = -std::numeric_limits<float>::infinity();
        i64 bi = hs * W + ws;  // a window always holds a real element (padding <= kernel / 2)
        for (i64 h = hs; h < he; ++h)
          for (i64 w = ws; w < we; ++w) {
            const float v = xp[h * W + w];
            // first maximum wins; the first NaN wins and then stays
            if (v > best || (std::isnan(v) && !std::isnan(best))) {
              best = v;
              bi = h * W + w;
            }
          }
        py[(pl * P + i) * Q + j] = best;
        pi[(pl * P + i) * Q + j] = static_cast<std::int32_t>(bi);
      }
    }
  }
}

// Scatter-add in output order (row-major), so where windows overlap each input's gradient is the
// sum of its winners' dy in increasing output index.
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Pool2dParams&, Tensor& dx) {
  const i64 planes = dx.size(0) * dx.size(1), HW = dx.size(2) * dx.size(3), PQ = dy.size(2) * dy.size(3);
  const float* pdy = dy.data<float>();
  const std::int32_t* pi = argmax.data<std::int32_t>();
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (dx.numel() + dy.numel() > kParallelMin)
  for (i64 pl = 0; pl < planes; ++pl) {
    float* d = pdx + pl * HW;
    std::fill(d, d + HW, 0.0f);
    for (i64 o = pl * PQ; o < (pl + 1) * PQ; ++o) d[pi[o]] += pdy[o];
  }
}

// ---- adaptive average pooling ------------------------------------------------------------------------
void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) {
  const i64 planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), P = y.size(2), Q = y.size(3);
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() + y.numel() > kParallelMin)
  for (i64 pl = 0; pl < planes; ++pl) {
    const float* xp = px + pl * H * W;
    for (i64 i = 0; i < P; ++i) {
      const i64 hs = adaptive_start(i, H, P), he = adaptive_end(i, H, P);
      for (i64 j = 0; j < Q; ++j) {
        const i64 ws = adaptive_start(j, W, Q), we = adaptive_end(j, W, Q);
        double s = 0.0;
        for (i64 h = hs; h < he; ++h)
          for (i64 w = ws; w < we; ++w) s += xp[h * W + w];
        py[(pl * P + i) * Q + j] = static_cast<float>(s / static_cast<double>((he - hs) * (we - ws)));
      }
    }
  }
}

// Gather: each input element sums dy / count over the cells that contain it.
void adaptive_avg_pool2d_backward(const Tensor& dy, Tensor& dx) {
  const i64 planes = dx.size(0) * dx.size(1), H = dx.size(2), W = dx.size(3), P = dy.size(2), Q = dy.size(3);
  std::vector<i64> rlo, rhi, clo, chi;
  covering_cells(H, P, rlo, rhi);
  covering_cells(W, Q, clo, chi);
  std::vector<double> inv_count(static_cast<std::size_t>(P * Q));
  for (i64 i = 0; i < P; ++i)
    for (i64 j = 0; j < Q; ++j)
      inv_count[i * Q + j] = 1.0 / static_cast<double>((adaptive_end(i, H, P) - adaptive_start(i, H, P)) *
                                                       (adaptive_end(j, W, Q) - adaptive_start(j, W, Q)));
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (dx.numel() + dy.numel() > kParallelMin)
  for (i64 pl = 0; pl < planes; ++pl) {
    const float* g = pdy + pl * P * Q;
    float* d = pdx + pl * H * W;
    for (i64 h = 0; h < H; ++h)
      for (i64 w = 0; w < W; ++w) {
        double s = 0.0;
        for (i64 i = rlo[h]; i <= rhi[h]; ++i)
          for (i64 j = clo[w]; j <= chi[w]; ++j) s += g[i * Q + j] * inv_count[i * Q + j];
        d[h * W + w] = static_cast<float>(s);
      }
  }
}

// ---- local response norm -------------------------------------------------------------------------------
// scale[c] = k + alpha/size * sum_{c' in [c - size/2, c + (size-1)/2] ∩ [0, C)} x[c']^2; y = x scale^-beta.
void lrn_forward(const Tensor& x, std::int64_t size, float alpha, float beta, float k, Tensor& y, Tensor& scale) {
  const i64 N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const float* px = x.data<float>();
  float *py = y.data<float>(), *ps = scale.data<float>();
  const double a = static_cast<double>(alpha) / static_cast<double>(size);
#pragma omp parallel for schedule(static) if (x.numel() * size > kParallelMin)
  for (i64 nc = 0; nc < N * C; ++nc) {
    const i64 n = nc / C, c = nc % C;
    const i64 lo = std::max<i64>(c - size / 2, 0), hi = std::min<i64>(c + (size - 1) / 2, C - 1);
    for (i64 s = 0; s < HW; ++s) {
      double sq = 0.0;
      for (i64 cc = lo; cc <= hi; ++cc) {
        const double v = px[(n * C + cc) * HW + s];
        sq += v * v;
      }
      const double sc = static_cast<double>(k) + a * sq;
      ps[nc * HW + s] = static_cast<float>(sc);
      py[nc * HW + s] = static_cast<float>(px[nc * HW + s] * std::pow(sc, -static_cast<double>(beta)));
    }
  }
}

// dx[c] = dy[c] scale[c]^-beta - 2 alpha beta / size * x[c] * sum_{c' : c in window(c')} dy[c'] y[c'] / scale[c'],
// where c is in window(c') exactly when c' is in [c - (size-1)/2, c + size/2].
void lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, std::int64_t size,
                  float alpha, float beta, float k, Tensor& dx) {
  const i64 N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const float *px = x.data<float>(), *py = y.data<float>(), *ps = scale.data<float>(), *pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const double coef = 2.0 * static_cast<double>(alpha) * static_cast<double>(beta) / static_cast<double>(size);
#pragma omp parallel for schedule(static) if (x.numel() * size > kParallelMin)
  for (i64 nc = 0; nc < N * C; ++nc) {
    const i64 n = nc / C, c = nc % C;
    const i64 lo = std::max<i64>(c - (size - 1) / 2, 0), hi = std::min<i64>(c + size / 2, C - 1);
    for (i64 s = 0; s < HW; ++s) {
      double acc = 0.0;
      for (i64 cc = lo; cc <= hi; ++cc) {
        const i64 e = (n * C + cc) * HW + s;
        acc += static_cast<double>(pdy[e]) * py[e] / ps[e];
      }
      const i64 e = nc * HW + s;
      pdx[e] = static_cast<float>(pdy[e] * std::pow(static_cast<double>(ps[e]), -static_cast<double>(beta)) -
                                  coef * px[e] * acc);
    }
  }
}

// ---- dropout -------------------------------------------------------------------------------------------
// keep i  <=>  philox::uniform(seed, offset + i) >= p; kept elements are multiplied by the float
// 1 / (1 - p) (one rounded multiply, bit-identical to the CUDA twin).
void dropout_forward(const Tensor& x, float p, std::uint64_t seed, std::uint64_t offset, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const float s = dropout_scale(p);
  for_range(x.numel(), [=](i64 b, i64 e) {  // one Philox block (four elements) at a time
    philox::for_elements(philox::Uniforms{seed}, offset, static_cast<std::uint64_t>(b),
                         static_cast<std::uint64_t>(e), [=](std::uint64_t i, float u) {
                           const float v = px[i];  // loaded unconditionally: a select, not a branch
                           py[i] = u >= p ? v * s : 0.0f;
                         });
  });
}

void dropout_backward(const Tensor& dy, float p, std::uint64_t seed, std::uint64_t offset, Tensor& dx) {
  dropout_forward(dy, p, seed, offset, dx);  // the same mask and scale
}

// ---- bilinear resize -------------------------------------------------------------------------------------
void resize_bilinear(const Tensor& x, Tensor& y) {
  const i64 planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), OH = y.size(2), OW = y.size(3);
  const std::vector<Tap> th = bilinear_taps(H, OH), tw = bilinear_taps(W, OW);
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() > kParallelMin)
  for (i64 pl = 0; pl < planes; ++pl) {
    const float* xp = px + pl * H * W;
    float* yp = py + pl * OH * OW;
    for (i64 oh = 0; oh < OH; ++oh) {
      const Tap& a = th[oh];
      const float* r0 = xp + a.i0 * W;
      const float* r1 = xp + a.i1 * W;
      for (i64 ow = 0; ow < OW; ++ow) {
        const Tap& b = tw[ow];
        const double top = static_cast<double>(b.w0) * r0[b.i0] + static_cast<double>(b.w1) * r0[b.i1];
        const double bot = static_cast<double>(b.w0) * r1[b.i0] + static_cast<double>(b.w1) * r1[b.i1];
        yp[oh * OW + ow] = static_cast<float>(a.w0 * top + a.w1 * bot);
      }
    }
  }
}

}  // namespace kiln::cpu

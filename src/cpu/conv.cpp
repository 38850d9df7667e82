// CPU twins of 2-D convolution (NCHW, weights [K, C/groups, R, S]): im2col + GEMM.
//
// Per group g (Cg = C/groups input and Kg = K/groups output channels, CRS = Cg*R*S) and per chunk
// of nb images, the input patches are unrolled into one column matrix col [CRS, nb*P*Q] whose
// column (j, p, q) holds the receptive field of output pixel (p, q) of image j, zero where it
// overlaps the padding. Then, with Wg = rows [g*Kg, (g+1)*Kg) of w viewed as [K, CRS]:
//   forward          yg  [Kg, nb*PQ] = Wg col                 (scattered into y's NCHW layout)
//   backward_data    col [CRS, nb*PQ] = Wg^T dyg, then col2im: dx += each column's patch
//   backward_filter  dWg [Kg, CRS]  (+)= dyg col^T           (the batch is the GEMM's reduction)
// One GEMM per group covers a whole chunk of images, so the GEMM (OpenBLAS, or the built-in
// kernel) gets large operands and does the threading itself; OpenMP is used only for the
// unrolling loops, outside any GEMM call, so the two thread pools never nest. Chunks keep the
// scratch (col plus the [Kg, nb*PQ] staging buffer) under a fixed limit (256 MiB); a single image
// that needs more still runs, as one chunk. 1x1 stride-1 unpadded convolutions skip im2col: an
// image's channels of a group already are col.
//
// Results are deterministic: the chunking depends only on the shapes, col2im gives every (n, c)
// plane to one thread that accumulates in a fixed order, and dW sums the chunks in order.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/backend.h"

namespace kiln::cpu {

namespace detail {
// Upper bound on the scratch memory of one convolution call, in bytes. A variable (not a
// constant) so that the tests can shrink it and exercise batch chunking on small inputs.
std::atomic<std::size_t> conv_scratch_limit{std::size_t{256} << 20};
}  // namespace detail

namespace {

using i64 = std::int64_t;

// Unrolling loops run on OpenMP threads only when there is enough work to pay for the fork/join.
constexpr i64 kParallelMin = i64{1} << 15;

struct Geom {
  i64 N, C, H, W;   // input
  i64 K, R, S;      // filter
  i64 P, Q;         // output
  i64 G, Cg, Kg;    // groups and channels per group
  i64 sh, sw, ph, pw, dh, dw;
  i64 HW() const { return H * W; }
  i64 PQ() const { return P * Q; }
  i64 CRS() const { return Cg * R * S; }
  // 1x1, stride 1, no padding: the input planes of an image are its col matrix.
  bool direct() const { return R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// x: [N, C, H, W]; w: [K, C/groups, R, S]; y: [N, K, P, Q] (shapes checked by the dispatcher).
Geom geometry(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  Geom g{};
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.K = w.size(0), g.R = w.size(2), g.S = w.size(3);
  g.P = y.size(2), g.Q = y.size(3);
  g.G = p.groups, g.Cg = g.C / p.groups, g.Kg = g.K / p.groups;
  g.sh = p.stride_h, g.sw = p.stride_w, g.ph = p.pad_h, g.pw = p.pad_w, g.dh = p.dilation_h, g.dw = p.dilation_w;
  return g;
}

// Images per chunk: the most whose scratch fits the limit (at least one), balanced over chunks.
i64 batch_chunk(const Geom& g) {
  if (g.direct() || g.N <= 1) return 1;  // direct: no col buffer, one GEMM per image on x / y
  const std::size_t per_image = static_cast<std::size_t>((g.CRS() + g.Kg) * g.PQ()) * sizeof(float);
  const std::size_t limit = detail::conv_scratch_limit.load(std::memory_order_relaxed);
  const i64 fit = std::max<i64>(1, static_cast<i64>(limit / std::max<std::size_t>(per_image, 1)));
  const i64 nb = std::min(g.N, fit);
  const i64 chunks = (g.N + nb - 1) / nb;
  return (g.N + chunks - 1) / chunks;
}

// A 2-D row-block view of a contiguous buffer: rows [row0, row0 + nrows) of t viewed as [rows, cols].
// (Detached first: twins receive the caller's tensors, which may require grad.)
Tensor rows_of(const Tensor& t, i64 rows, i64 cols, i64 row0, i64 nrows) {
  return t.detach().reshape({rows, cols}).narrow0(row0, nrows);
}

// The first rows*cols elements of a scratch buffer as a [rows, cols] matrix (the last chunk of a
// batch uses only part of the buffers sized for a full chunk).
Tensor prefix(const Tensor& buf, i64 rows, i64 cols) {
  return buf.detach().reshape({buf.numel()}).narrow0(0, rows * cols).reshape({rows, cols});
}

// The output columns q in [q0, q1) whose input column q*sw + off lies inside [0, W); the others
// read padding.
void valid_range(i64 off, i64 stride, i64 W, i64 Q, i64& q0, i64& q1) {
  q0 = off >= 0 ? 0 : (-off + stride - 1) / stride;
  q1 = (W - 1 - off) < 0 ? 0 : std::min(Q, (W - 1 - off) / stride + 1);
  q0 = std::min(q0, Q);
  if (q0 > q1) q0 = q1;
}

// col[(c*R + r)*S + s][(j*P + p)*Q + q] = x[n0 + j, grp*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw]
// (0 outside the input), for j < nb and c < Cg.
void im2col(const float* x, const Geom& g, i64 n0, i64 nb, i64 grp, float* col) {
  const i64 rows = g.CRS(), L = nb * g.PQ(), P = g.P, Q = g.Q;
#pragma omp parallel for collapse(2) schedule(static) if (rows * L >= kParallelMin)
  for (i64 row = 0; row < rows; ++row)
    for (i64 j = 0; j < nb; ++j) {
      const i64 c = row / (g.R * g.S), r = (row / g.S) % g.R, s = row % g.S;
      const float* plane = x + ((n0 + j) * g.C + grp * g.Cg + c) * g.HW();
      float* out = col + row * L + j * g.PQ();
      const i64 off = s * g.dw - g.pw;  // input column of output column q is q*sw + off
      i64 q0, q1;
      valid_range(off, g.sw, g.W, Q, q0, q1);
      for (i64 p = 0; p < P; ++p) {
        float* o = out + p * Q;
        const i64 h = p * g.sh - g.ph + r * g.dh;
        if (h < 0 || h >= g.H) {
          std::fill(o, o + Q, 0.0f);
          continue;
        }
        const float* in = plane + h * g.W;
        std::fill(o, o + q0, 0.0f);
        if (g.sw == 1) {
          if (q1 > q0) std::memcpy(o + q0, in + q0 + off, static_cast<std::size_t>(q1 - q0) * sizeof(float));
        } else {
          for (i64 q = q0; q < q1; ++q) o[q] = in[q * g.sw + off];
        }
        std::fill(o + q1, o + Q, 0.0f);
      }
    }
}

// The adjoint of im2col: dx[n0 + j, grp*Cg + c] = sum of col's entries that im2col read from each
// element (the planes are overwritten). One thread owns each (j, c) plane, so the accumulation
// order is fixed.
void col2im(const float* col, const Geom& g, i64 n0, i64 nb, i64 grp, float* dx) {
  const i64 L = nb * g.PQ(), P = g.P, Q = g.Q;
#pragma omp parallel for collapse(2) schedule(static) if (g.CRS() * L >= kParallelMin)
  for (i64 j = 0; j < nb; ++j)
    for (i64 c = 0; c < g.Cg; ++c) {
      float* plane = dx + ((n0 + j) * g.C + grp * g.Cg + c) * g.HW();
      std::fill(plane, plane + g.HW(), 0.0f);
      for (i64 r = 0; r < g.R; ++r)
        for (i64 s = 0; s < g.S; ++s) {
          const float* in = col + ((c * g.R + r) * g.S + s) * L + j * g.PQ();
          const i64 off = s * g.dw - g.pw;
          i64 q0, q1;
          valid_range(off, g.sw, g.W, Q, q0, q1);
          for (i64 p = 0; p < P; ++p) {
            const i64 h = p * g.sh - g.ph + r * g.dh;
            if (h < 0 || h >= g.H) continue;
            float* o = plane + h * g.W + off;
            const float* iv = in + p * Q;
            for (i64 q = q0; q < q1; ++q) o[q * g.sw] += iv[q];
          }
        }
    }
}

// Between a group's GEMM layout stage [Kg, nb*PQ] (column block j = image n0 + j) and the NCHW
// tensor t [N, K, P, Q]: scatter writes stage into t, gather reads t into stage.
template <bool kScatter>
void stage_copy(const Geom& g, i64 n0, i64 nb, i64 grp, std::conditional_t<kScatter, const float*, float*> stage,
                std::conditional_t<kScatter, float*, const float*> t) {
  const i64 PQ = g.PQ();
  const std::size_t bytes = static_cast<std::size_t>(PQ) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static) if (g.Kg * nb * PQ >= kParallelMin)
  for (i64 k = 0; k < g.Kg; ++k)
    for (i64 j = 0; j < nb; ++j) {
      const i64 si = (k * nb + j) * PQ, ti = ((n0 + j) * g.K + grp * g.Kg + k) * PQ;
      if constexpr (kScatter)
        std::memcpy(t + ti, stage + si, bytes);
      else
        std::memcpy(stage + si, t + ti, bytes);
    }
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Conv2dParams& p, Tensor& y) {
  const Geom g = geometry(x, w, y, p);
  if (y.numel() == 0) return;
  const i64 nb_max = batch_chunk(g), PQ = g.PQ(), CRS = g.CRS();
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  Tensor col, stage;
  if (!g.direct()) col = Tensor::empty({CRS, nb_max * PQ});
  if (nb_max > 1) stage = Tensor::empty({g.Kg, nb_max * PQ});
  for (i64 n0 = 0; n0 < g.N; n0 += nb_max) {
    const i64 nb = std::min(nb_max, g.N - n0);
    for (i64 grp = 0; grp < g.G; ++grp) {
      const Tensor wg = rows_of(w, g.K, CRS, grp * g.Kg, g.Kg);
      Tensor cg;
      if (g.direct()) {
        cg = rows_of(x, g.N * g.C, g.HW(), n0 * g.C + grp * g.Cg, g.Cg);
      } else {
        cg = prefix(col, CRS, nb * PQ);
        im2col(xd, g, n0, nb, grp, cg.data<float>());
      }
      if (nb == 1) {
        Tensor yg = rows_of(y, g.N * g.K, PQ, n0 * g.K + grp * g.Kg, g.Kg);
        gemm(false, false, 1.0f, wg, cg, 0.0f, yg);
      } else {
        Tensor sg = prefix(stage, g.Kg, nb * PQ);
        gemm(false, false, 1.0f, wg, cg, 0.0f, sg);
        stage_copy<true>(g, n0, nb, grp, sg.data<float>(), yd);
      }
    }
  }
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Conv2dParams& p, Tensor& dx) {
  const Geom g = geometry(dx, w, dy, p);
  if (dx.numel() == 0) return;
  const i64 nb_max = batch_chunk(g), PQ = g.PQ(), CRS = g.CRS();
  const float* dyd = dy.data<float>();
  float* dxd = dx.data<float>();
  if (dy.numel() == 0 || w.numel() == 0) {
    std::fill(dxd, dxd + dx.numel(), 0.0f);
    return;
  }
  Tensor col, stage;
  if (!g.direct()) col = Tensor::empty({CRS, nb_max * PQ});
  if (nb_max > 1) stage = Tensor::empty({g.Kg, nb_max * PQ});
  for (i64 n0 = 0; n0 < g.N; n0 += nb_max) {
    const i64 nb = std::min(nb_max, g.N - n0);
    for (i64 grp = 0; grp < g.G; ++grp) {
      const Tensor wg = rows_of(w, g.K, CRS, grp * g.Kg, g.Kg);
      Tensor dyg;
      if (nb == 1) {
        dyg = rows_of(dy, g.N * g.K, PQ, n0 * g.K + grp * g.Kg, g.Kg);
      } else {
        dyg = prefix(stage, g.Kg, nb * PQ);
        stage_copy<false>(g, n0, nb, grp, dyg.data<float>(), dyd);
      }
      if (g.direct()) {  // dx planes of this image and group are col: write them directly
        Tensor dxg = rows_of(dx, g.N * g.C, g.HW(), n0 * g.C + grp * g.Cg, g.Cg);
        gemm(true, false, 1.0f, wg, dyg, 0.0f, dxg);
      } else {
        Tensor cg = prefix(col, CRS, nb * PQ);
        gemm(true, false, 1.0f, wg, dyg, 0.0f, cg);
        col2im(cg.data<float>(), g, n0, nb, grp, dxd);
      }
    }
  }
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Conv2dParams& p, Tensor& dw) {
  const Geom g = geometry(x, dw, dy, p);
  if (dw.numel() == 0) return;
  const i64 nb_max = batch_chunk(g), PQ = g.PQ(), CRS = g.CRS();
  const float* xd = x.data<float>();
  const float* dyd = dy.data<float>();
  if (dy.numel() == 0) {  // an empty batch: the gradient is an empty sum
    float* d = dw.data<float>();
    std::fill(d, d + dw.numel(), 0.0f);
    return;
  }
  Tensor col, stage;
  if (!g.direct()) col = Tensor::empty({CRS, nb_max * PQ});
  if (nb_max > 1) stage = Tensor::empty({g.Kg, nb_max * PQ});
  for (i64 n0 = 0; n0 < g.N; n0 += nb_max) {
    const i64 nb = std::min(nb_max, g.N - n0);
    const float beta = n0 == 0 ? 0.0f : 1.0f;  // the first chunk overwrites dw, later ones add
    for (i64 grp = 0; grp < g.G; ++grp) {
      Tensor dwg = rows_of(dw, g.K, CRS, grp * g.Kg, g.Kg);
      Tensor dyg, cg;
      if (nb == 1) {
        dyg = rows_of(dy, g.N * g.K, PQ, n0 * g.K + grp * g.Kg, g.Kg);
      } else {
        dyg = prefix(stage, g.Kg, nb * PQ);
        stage_copy<false>(g, n0, nb, grp, dyg.data<float>(), dyd);
      }
      if (g.direct()) {
        cg = rows_of(x, g.N * g.C, g.HW(), n0 * g.C + grp * g.Cg, g.Cg);
      } else {
        cg = prefix(col, CRS, nb * PQ);
        im2col(xd, g, n0, nb, grp, cg.data<float>());
      }
      gemm(false, true, 1.0f, dyg, cg, beta, dwg);
    }
  }
}

}  // namespace kiln::cpu

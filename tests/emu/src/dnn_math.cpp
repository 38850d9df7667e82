// The arithmetic of the emulated cuBLAS and cuDNN (see dnn_math.h for the conventions).
//
// Index names follow cuDNN's documentation: x[n][c][h][w], w[k][c][r][s], y[n][k][p][q]. Within a
// group g, input channel c is g * Cg + c and output channel k is g * Kg + k. Output pixel (p, q)
// sees input row p * stride_h - pad_h + r' * dil_h for filter row r, where r' = r for
// cross-correlation and r' = R - 1 - r for convolution (the flipped filter); likewise for columns.
#include "dnn_math.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace kiln_emu::dnn {

namespace {

using std::size_t;

// out = alpha * v + beta * out, never reading out when beta == 0.
inline void blend(float& out, float v, float alpha, float beta) {
  out = beta == 0.0f ? alpha * v : alpha * v + beta * out;
}

// Scales `count` consecutive values by beta (zeroing them without reading when beta == 0): the
// result of an empty sum.
void scale_only(float* out, size_t count, float beta) {
  for (size_t i = 0; i < count; ++i) out[i] = beta == 0.0f ? 0.0f : beta * out[i];
}

// The input offset seen by filter tap r (see the file comment).
inline int tap(int r, int R, bool flip) { return flip ? R - 1 - r : r; }

size_t crs(const ConvShape& s) { return size_t(s.Cg()) * s.R * s.S; }
size_t pq(const ConvShape& s) { return size_t(s.P) * s.Q; }
size_t hw(const ConvShape& s) { return size_t(s.H) * s.W; }

// Writes the im2col matrix of one image and group: row (c * R + r) * S + s, column p * Q + q holds
// the input value that filter tap (c, r, s) multiplies for output pixel (p, q), or 0 in the
// padding. Rows are `ld` floats apart (ld = P * Q for one image, N * P * Q for a batch).
void im2col(const ConvShape& s, const float* xg, float* col, size_t ld) {
  for (int c = 0; c < s.Cg(); ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t) {
        float* dst = col + ((size_t(c) * s.R + r) * s.S + t) * ld;
        const int h0 = tap(r, s.R, s.flip) * s.dil_h - s.pad_h;
        const int w0 = tap(t, s.S, s.flip) * s.dil_w - s.pad_w;
        for (int p = 0; p < s.P; ++p) {
          const int hi = p * s.stride_h + h0;
          for (int q = 0; q < s.Q; ++q) {
            const int wi = q * s.stride_w + w0;
            const bool inside = hi >= 0 && hi < s.H && wi >= 0 && wi < s.W;
            dst[size_t(p) * s.Q + q] = inside ? xg[(size_t(c) * s.H + hi) * s.W + wi] : 0.0f;
          }
        }
      }
}

// The inverse mapping of im2col as a gather: dx element (c, h, w) of one image and group is the
// sum of the col entries that im2col would have read from it, in (r, s) order.
void col2im_blend(const ConvShape& s, const float* col, float alpha, float beta, float* dxg) {
  for (int c = 0; c < s.Cg(); ++c)
    for (int h = 0; h < s.H; ++h)
      for (int wi = 0; wi < s.W; ++wi) {
        float acc = 0.0f;
        for (int r = 0; r < s.R; ++r) {
          const int hp = h + s.pad_h - tap(r, s.R, s.flip) * s.dil_h;  // = p * stride_h
          if (hp < 0 || hp % s.stride_h != 0 || hp / s.stride_h >= s.P) continue;
          const int p = hp / s.stride_h;
          for (int t = 0; t < s.S; ++t) {
            const int wq = wi + s.pad_w - tap(t, s.S, s.flip) * s.dil_w;
            if (wq < 0 || wq % s.stride_w != 0 || wq / s.stride_w >= s.Q) continue;
            const int q = wq / s.stride_w;
            acc += col[((size_t(c) * s.R + r) * s.S + t) * pq(s) + size_t(p) * s.Q + q];
          }
        }
        blend(dxg[(size_t(c) * s.H + h) * s.W + wi], acc, alpha, beta);
      }
}

// A permutation of 0..n-1 drawn from seed (the identity for seed 0).
std::vector<int> order(int n, std::uint64_t seed) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  if (seed != 0) {
    std::mt19937_64 rng(seed);
    std::shuffle(v.begin(), v.end(), rng);
  }
  return v;
}

}  // namespace

// ---- GEMM --------------------------------------------------------------------------------------

// Each C element is accumulated in float over l = 0..k-1 in order. The loops run "axpy" style
// (acc[:, j] += op(A)[:, l] * op(B)[l, j]) so that the innermost loop walks contiguous memory and
// vectorises without reassociating any sum. op(A) columns are contiguous in A itself when A is
// not transposed; otherwise a panel of them is packed first. The accumulator is a separate
// buffer so that C is read only in the final blend (and not at all when beta == 0).
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {  // BLAS: op(A) op(B) is not computed; A and B are not read
    for (int j = 0; j < n; ++j) scale_only(C + size_t(j) * ldc, size_t(m), beta);
    return;
  }
  const size_t M = size_t(m);
  std::vector<float> acc(M * size_t(n), 0.0f);
  const int kc = std::max(1, std::min(k, static_cast<int>(65536 / M)));  // panel of ~256 KiB
  std::vector<float> panel(trans_a ? M * size_t(kc) : 0);
  for (int l0 = 0; l0 < k; l0 += kc) {
    const int l1 = std::min(k, l0 + kc);
    if (trans_a)  // op(A)(i, l) = A[l + i * lda]
      for (int l = l0; l < l1; ++l)
        for (size_t i = 0; i < M; ++i) panel[size_t(l - l0) * M + i] = A[size_t(l) + i * size_t(lda)];
    for (int j = 0; j < n; ++j) {
      float* accj = acc.data() + size_t(j) * M;
      for (int l = l0; l < l1; ++l) {
        const float b = trans_b ? B[size_t(j) + size_t(l) * ldb] : B[size_t(l) + size_t(j) * ldb];
        const float* a = trans_a ? panel.data() + size_t(l - l0) * M : A + size_t(l) * lda;
        for (size_t i = 0; i < M; ++i) accj[i] += a[i] * b;
      }
    }
  }
  for (int j = 0; j < n; ++j)
    for (size_t i = 0; i < M; ++i) blend(C[i + size_t(j) * ldc], acc[size_t(j) * M + i], alpha, beta);
}

// ---- geometry ----------------------------------------------------------------------------------

int conv_out_dim(int in, int pad, int k, int dil, int stride) {
  const long long span = (static_cast<long long>(k) - 1) * dil + 1;  // the dilated filter's extent
  const long long room = static_cast<long long>(in) + 2LL * pad - span;
  if (room < 0 || stride <= 0) return 0;
  return static_cast<int>(room / stride + 1);
}

// ---- forward -----------------------------------------------------------------------------------

void conv_fwd_direct(const ConvShape& s, const float* x, const float* w, float alpha, float beta, float* y) {
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k) {
      const int g = k / s.Kg();
      const float* xg = x + (size_t(n) * s.C + size_t(g) * s.Cg()) * hw(s);
      const float* wk = w + size_t(k) * crs(s);
      float* yk = y + (size_t(n) * s.K + k) * pq(s);
      for (int p = 0; p < s.P; ++p)
        for (int q = 0; q < s.Q; ++q) {
          float acc = 0.0f;
          for (int c = 0; c < s.Cg(); ++c)
            for (int r = 0; r < s.R; ++r) {
              const int hi = p * s.stride_h - s.pad_h + tap(r, s.R, s.flip) * s.dil_h;
              if (hi < 0 || hi >= s.H) continue;
              for (int t = 0; t < s.S; ++t) {
                const int wi = q * s.stride_w - s.pad_w + tap(t, s.S, s.flip) * s.dil_w;
                if (wi < 0 || wi >= s.W) continue;
                acc += wk[(size_t(c) * s.R + r) * s.S + t] * xg[(size_t(c) * s.H + hi) * s.W + wi];
              }
            }
          blend(yk[size_t(p) * s.Q + q], acc, alpha, beta);
        }
    }
}

std::size_t conv_fwd_im2col_ws(const ConvShape& s) { return crs(s) * pq(s) * sizeof(float); }

// Per image and group, column-major: y_g^T (PQ x Kg) = col^T (PQ x CRS) * W_g^T (CRS x Kg), where
// col is stored row-major CRS x PQ and W_g row-major Kg x CRS, i.e. both already column-major.
void conv_fwd_im2col(const ConvShape& s, const float* x, const float* w, float alpha, float beta, float* y,
                     void* ws) {
  float* col = static_cast<float*>(ws);
  const int m = static_cast<int>(pq(s)), kk = static_cast<int>(crs(s));
  for (int n = 0; n < s.N; ++n)
    for (int g = 0; g < s.groups; ++g) {
      im2col(s, x + (size_t(n) * s.C + size_t(g) * s.Cg()) * hw(s), col, pq(s));
      sgemm(false, false, m, s.Kg(), kk, alpha, col, m, w + size_t(g) * s.Kg() * crs(s), kk, beta,
            y + (size_t(n) * s.K + size_t(g) * s.Kg()) * pq(s), m);
    }
}

std::size_t conv_batched_ws(const ConvShape& s) {
  return (crs(s) + size_t(s.Kg())) * size_t(s.N) * pq(s) * sizeof(float);
}

// Per group: out (NPQ x Kg, column-major) = col^T (NPQ x CRS) * W_g^T, then blended into y (whose
// image stride K * P * Q is not a single leading dimension, hence the staging buffer).
void conv_fwd_batched(const ConvShape& s, const float* x, const float* w, float alpha, float beta, float* y,
                      void* ws) {
  const size_t npq = size_t(s.N) * pq(s);
  float* col = static_cast<float*>(ws);
  float* out = col + crs(s) * npq;
  for (int g = 0; g < s.groups; ++g) {
    for (int n = 0; n < s.N; ++n) im2col(s, x + (size_t(n) * s.C + size_t(g) * s.Cg()) * hw(s), col + n * pq(s), npq);
    sgemm(false, false, static_cast<int>(npq), s.Kg(), static_cast<int>(crs(s)), 1.0f, col, static_cast<int>(npq),
          w + size_t(g) * s.Kg() * crs(s), static_cast<int>(crs(s)), 0.0f, out, static_cast<int>(npq));
    for (int n = 0; n < s.N; ++n)
      for (int k = 0; k < s.Kg(); ++k) {
        float* yk = y + (size_t(n) * s.K + size_t(g) * s.Kg() + k) * pq(s);
        const float* ok = out + size_t(k) * npq + size_t(n) * pq(s);
        for (size_t i = 0; i < pq(s); ++i) blend(yk[i], ok[i], alpha, beta);
      }
  }
}

// ---- backward data -----------------------------------------------------------------------------

void conv_bwd_data_direct(const ConvShape& s, const float* w, const float* dy, float alpha, float beta, float* dx,
                          std::uint64_t seed) {
  // The (k, r, s) terms of one group, in the order they are summed.
  const std::vector<int> terms = order(s.Kg() * s.R * s.S, seed);
  for (int n = 0; n < s.N; ++n)
    for (int g = 0; g < s.groups; ++g)
      for (int c = 0; c < s.Cg(); ++c)
        for (int h = 0; h < s.H; ++h)
          for (int wi = 0; wi < s.W; ++wi) {
            float acc = 0.0f;
            for (int term : terms) {
              const int k = term / (s.R * s.S), r = term / s.S % s.R, t = term % s.S;
              const int hp = h + s.pad_h - tap(r, s.R, s.flip) * s.dil_h;  // = p * stride_h
              const int wq = wi + s.pad_w - tap(t, s.S, s.flip) * s.dil_w;
              if (hp < 0 || wq < 0 || hp % s.stride_h != 0 || wq % s.stride_w != 0) continue;
              const int p = hp / s.stride_h, q = wq / s.stride_w;
              if (p >= s.P || q >= s.Q) continue;
              const size_t kk = size_t(g) * s.Kg() + k;
              acc += w[((kk * s.Cg() + c) * s.R + r) * s.S + t] *
                     dy[((size_t(n) * s.K + kk) * s.P + p) * s.Q + q];
            }
            blend(dx[((size_t(n) * s.C + size_t(g) * s.Cg() + c) * s.H + h) * s.W + wi], acc, alpha, beta);
          }
}

std::size_t conv_bwd_data_im2col_ws(const ConvShape& s) { return crs(s) * pq(s) * sizeof(float); }

// Per image and group, column-major: col^T (PQ x CRS) = dy_g^T (PQ x Kg) * W_g (Kg x CRS), W_g
// being the transpose of the column-major CRS x Kg matrix that its row-major storage is.
void conv_bwd_data_im2col(const ConvShape& s, const float* w, const float* dy, float alpha, float beta, float* dx,
                          void* ws) {
  float* col = static_cast<float*>(ws);
  const int m = static_cast<int>(pq(s)), nn = static_cast<int>(crs(s));
  for (int n = 0; n < s.N; ++n)
    for (int g = 0; g < s.groups; ++g) {
      sgemm(false, true, m, nn, s.Kg(), 1.0f, dy + (size_t(n) * s.K + size_t(g) * s.Kg()) * pq(s), m,
            w + size_t(g) * s.Kg() * crs(s), nn, 0.0f, col, m);
      col2im_blend(s, col, alpha, beta, dx + (size_t(n) * s.C + size_t(g) * s.Cg()) * hw(s));
    }
}

bool conv_bwd_data_dual_ok(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 && s.pad_h <= s.R - 1 &&
         s.pad_w <= s.S - 1;
}

std::size_t conv_bwd_data_dual_ws(const ConvShape& s) { return s.w_elems() * sizeof(float); }

// dx[c][h][w] = sum_{k, r, s} w[k][c][r][s] dy[k][h + pad_h - r'][w + pad_w - s'] is a forward
// cross-correlation of dy, padded by R - 1 - pad_h (S - 1 - pad_w), with the filter
// w'[c][k][r][s] = w[k][c][R-1-r][S-1-s] (not rotated for CUDNN_CONVOLUTION, whose r' is already
// R - 1 - r); the groups keep their meaning with the roles of C and K swapped.
void conv_bwd_data_dual(const ConvShape& s, const float* w, const float* dy, float alpha, float beta, float* dx,
                        void* ws) {
  float* wt = static_cast<float*>(ws);  // [C, Kg, R, S]
  for (int g = 0; g < s.groups; ++g)
    for (int c = 0; c < s.Cg(); ++c)
      for (int k = 0; k < s.Kg(); ++k)
        for (int r = 0; r < s.R; ++r)
          for (int t = 0; t < s.S; ++t) {
            const int rr = s.flip ? r : s.R - 1 - r, tt = s.flip ? t : s.S - 1 - t;
            const size_t kk = size_t(g) * s.Kg() + k, cc = size_t(g) * s.Cg() + c;
            wt[((cc * s.Kg() + k) * s.R + r) * s.S + t] = w[((kk * s.Cg() + c) * s.R + rr) * s.S + tt];
          }
  ConvShape d;
  d.N = s.N;
  d.C = s.K;
  d.H = s.P;
  d.W = s.Q;
  d.K = s.C;
  d.R = s.R;
  d.S = s.S;
  d.P = s.H;
  d.Q = s.W;
  d.pad_h = s.R - 1 - s.pad_h;
  d.pad_w = s.S - 1 - s.pad_w;
  d.groups = s.groups;
  conv_fwd_direct(d, dy, wt, alpha, beta, dx);
}

// ---- backward filter ---------------------------------------------------------------------------

void conv_bwd_filter_direct(const ConvShape& s, const float* x, const float* dy, float alpha, float beta, float* dw,
                            std::uint64_t seed) {
  const std::vector<int> images = order(s.N, seed);
  for (int k = 0; k < s.K; ++k) {
    const int g = k / s.Kg();
    for (int c = 0; c < s.Cg(); ++c)
      for (int r = 0; r < s.R; ++r)
        for (int t = 0; t < s.S; ++t) {
          float acc = 0.0f;
          for (int n : images) {
            const float* xc = x + (size_t(n) * s.C + size_t(g) * s.Cg() + c) * hw(s);
            const float* dyk = dy + (size_t(n) * s.K + k) * pq(s);
            for (int p = 0; p < s.P; ++p) {
              const int hi = p * s.stride_h - s.pad_h + tap(r, s.R, s.flip) * s.dil_h;
              if (hi < 0 || hi >= s.H) continue;
              for (int q = 0; q < s.Q; ++q) {
                const int wi = q * s.stride_w - s.pad_w + tap(t, s.S, s.flip) * s.dil_w;
                if (wi < 0 || wi >= s.W) continue;
                acc += dyk[size_t(p) * s.Q + q] * xc[size_t(hi) * s.W + wi];
              }
            }
          }
          blend(dw[((size_t(k) * s.Cg() + c) * s.R + r) * s.S + t], acc, alpha, beta);
        }
  }
}

std::size_t conv_bwd_filter_im2col_ws(const ConvShape& s) { return crs(s) * pq(s) * sizeof(float); }

// Per group, column-major: dW_g^T (CRS x Kg) = sum over images of col (CRS x PQ) * dy_g^T (PQ x Kg);
// the first image applies beta, the later ones add (beta = 1).
void conv_bwd_filter_im2col(const ConvShape& s, const float* x, const float* dy, float alpha, float beta, float* dw,
                            void* ws) {
  if (s.N == 0) return scale_only(dw, s.w_elems(), beta);
  float* col = static_cast<float*>(ws);
  const int m = static_cast<int>(crs(s)), kk = static_cast<int>(pq(s));
  for (int g = 0; g < s.groups; ++g)
    for (int n = 0; n < s.N; ++n) {
      im2col(s, x + (size_t(n) * s.C + size_t(g) * s.Cg()) * hw(s), col, pq(s));
      sgemm(true, false, m, s.Kg(), kk, alpha, col, kk, dy + (size_t(n) * s.K + size_t(g) * s.Kg()) * pq(s), kk,
            n == 0 ? beta : 1.0f, dw + size_t(g) * s.Kg() * crs(s), m);
    }
}

// Per group: dW_g^T = col (CRS x NPQ) * dyg (NPQ x Kg), with dy_g gathered into the workspace.
void conv_bwd_filter_batched(const ConvShape& s, const float* x, const float* dy, float alpha, float beta, float* dw,
                             void* ws) {
  const size_t npq = size_t(s.N) * pq(s);
  float* col = static_cast<float*>(ws);
  float* dyg = col + crs(s) * npq;
  for (int g = 0; g < s.groups; ++g) {
    for (int n = 0; n < s.N; ++n) {
      im2col(s, x + (size_t(n) * s.C + size_t(g) * s.Cg()) * hw(s), col + n * pq(s), npq);
      for (int k = 0; k < s.Kg(); ++k) {
        const float* src = dy + (size_t(n) * s.K + size_t(g) * s.Kg() + k) * pq(s);
        std::copy(src, src + pq(s), dyg + size_t(k) * npq + size_t(n) * pq(s));
      }
    }
    sgemm(true, false, static_cast<int>(crs(s)), s.Kg(), static_cast<int>(npq), alpha, col, static_cast<int>(npq),
          dyg, static_cast<int>(npq), beta, dw + size_t(g) * s.Kg() * crs(s), static_cast<int>(crs(s)));
  }
}

}  // namespace kiln_emu::dnn

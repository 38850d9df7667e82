// The arithmetic behind the emulated cuBLAS and cuDNN: plain host loops, no CUDA calls, so they can
// be tested on their own. They are written from the documented definitions (BLAS SGEMM, cuDNN's
// convolution formulas), not from kiln's CPU twins, so that tests comparing kiln's CUDA path with
// its CPU path do not compare kiln with itself.
//
// Conventions shared by every routine here:
// - Accumulation is in float, as on the GPU (kiln's CPU twins accumulate in double).
// - Output blending is out = alpha * result + beta * out; with beta == 0 the output is never read,
//   so NaN or Inf already there does not survive (BLAS and cuDNN both document this).
// - Tensors are fully packed NCHW; filters are [K, C / groups, R, S].
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln_emu::dnn {

// ---- GEMM --------------------------------------------------------------------------------------

// Column-major C = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n, C m x n (BLAS SGEMM).
// Arguments are assumed valid (the cuBLAS layer checks them).
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);

// ---- convolution geometry ----------------------------------------------------------------------

// One 2-D convolution: x [N, C, H, W], w [K, C / groups, R, S], y [N, K, P, Q].
struct ConvShape {
  int N = 0, C = 0, H = 0, W = 0;
  int K = 0, R = 0, S = 0;
  int P = 0, Q = 0;
  int pad_h = 0, pad_w = 0;
  int stride_h = 1, stride_w = 1;
  int dil_h = 1, dil_w = 1;
  int groups = 1;
  bool flip = false;  // true: CUDNN_CONVOLUTION (filter rotated by 180 degrees); false: cross-correlation

  int Cg() const { return C / groups; }  // input channels per group
  int Kg() const { return K / groups; }  // output channels per group
  std::size_t x_elems() const { return std::size_t(N) * C * H * W; }
  std::size_t w_elems() const { return std::size_t(K) * Cg() * R * S; }
  std::size_t y_elems() const { return std::size_t(N) * K * P * Q; }
};

// cuDNN's output size: (in + 2 pad - ((k - 1) dil + 1)) / stride + 1 (may be <= 0 for bad input).
int conv_out_dim(int in, int pad, int k, int dil, int stride);

// ---- forward: y = alpha conv(x, w) + beta y -------------------------------------------------------

// Direct loops; no workspace.
void conv_fwd_direct(const ConvShape& s, const float* x, const float* w, float alpha, float beta, float* y);

// im2col of one image and group into the workspace, then one GEMM per image and group.
std::size_t conv_fwd_im2col_ws(const ConvShape& s);  // bytes
void conv_fwd_im2col(const ConvShape& s, const float* x, const float* w, float alpha, float beta, float* y,
                     void* ws);

// im2col of the whole batch of one group, one GEMM per group into the workspace, then a blend
// into y: a different summation blocking and a much larger workspace.
std::size_t conv_batched_ws(const ConvShape& s);  // bytes (forward and backward filter)
void conv_fwd_batched(const ConvShape& s, const float* x, const float* w, float alpha, float beta, float* y,
                      void* ws);

// ---- backward data: dx = alpha conv^T(w, dy) + beta dx ------------------------------------------

// Gather over the (k, r, s) terms of each dx element. seed == 0: natural order; otherwise the
// term order is a permutation drawn from the seed (models cuDNN's atomics: the result's rounding
// depends on the order in which contributions arrive).
void conv_bwd_data_direct(const ConvShape& s, const float* w, const float* dy, float alpha, float beta, float* dx,
                          std::uint64_t seed);

// One GEMM per image and group (col = W_g^T dy_g in the workspace), then col2im as a gather.
std::size_t conv_bwd_data_im2col_ws(const ConvShape& s);  // bytes
void conv_bwd_data_im2col(const ConvShape& s, const float* w, const float* dy, float alpha, float beta, float* dx,
                          void* ws);

// With stride 1 and dilation 1, dx is a forward convolution of dy (padded by R - 1 - pad) with the
// rotated, channel-transposed filter, which goes to the workspace. Needs pad_h <= R - 1 and
// pad_w <= S - 1 (see conv_bwd_data_dual_ok).
bool conv_bwd_data_dual_ok(const ConvShape& s);
std::size_t conv_bwd_data_dual_ws(const ConvShape& s);  // bytes
void conv_bwd_data_dual(const ConvShape& s, const float* w, const float* dy, float alpha, float beta, float* dx,
                        void* ws);

// ---- backward filter: dw = alpha conv^T(x, dy) + beta dw ----------------------------------------

// Gather over (n, p, q) for each dw element. seed == 0: images in order; otherwise the order of
// the images is a permutation drawn from the seed (models cuDNN's atomics-based ALGO_0).
void conv_bwd_filter_direct(const ConvShape& s, const float* x, const float* dy, float alpha, float beta, float* dw,
                            std::uint64_t seed);

// im2col of one image and group into the workspace; dw_g accumulates one GEMM per image.
std::size_t conv_bwd_filter_im2col_ws(const ConvShape& s);  // bytes
void conv_bwd_filter_im2col(const ConvShape& s, const float* x, const float* dy, float alpha, float beta, float* dw,
                            void* ws);

// im2col of the whole batch and a copy of dy_g into the workspace; one GEMM per group
// (workspace: conv_batched_ws).
void conv_bwd_filter_batched(const ConvShape& s, const float* x, const float* dy, float alpha, float beta, float* dw,
                             void* ws);

}  // namespace kiln_emu::dnn

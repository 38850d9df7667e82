// CPU GEMM twin: OpenBLAS's cblas_sgemm when kiln was configured with it, else a cache-blocked,
// OpenMP-parallel kernel (correct everywhere, a few times slower than a tuned BLAS).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/backend.h"

#if defined(KILN_WITH_BLAS)
#include <cblas.h>
#endif

namespace kiln::cpu {

namespace {

#if !defined(KILN_WITH_BLAS)
// c[M,N] = alpha * op(a) op(b) + beta * c; op(b) is first packed into a row-major [K, N] panel so the
// inner loop streams contiguous memory for either transpose.
void blocked_gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* a,
                  const float* b, float beta, float* c) {
  const std::int64_t lda = ta ? M : K, ldb = tb ? K : N;
  std::vector<float> bp(static_cast<std::size_t>(K * N));
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t j = 0; j < N; ++j) bp[static_cast<std::size_t>(k * N + j)] = tb ? b[j * ldb + k] : b[k * ldb + j];
  constexpr std::int64_t KB = 256, NB = 512;
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < M; ++i) {
    float* ci = c + i * N;
    if (beta == 0.0f)
      std::fill(ci, ci + N, 0.0f);
    else if (beta != 1.0f)
      for (std::int64_t j = 0; j < N; ++j) ci[j] *= beta;
    for (std::int64_t k0 = 0; k0 < K; k0 += KB)
      for (std::int64_t j0 = 0; j0 < N; j0 += NB) {
        const std::int64_t k1 = std::min(K, k0 + KB), j1 = std::min(N, j0 + NB);
        for (std::int64_t k = k0; k < k1; ++k) {
          const float aik = alpha * (ta ? a[k * lda + i] : a[i * lda + k]);
          const float* bk = bp.data() + k * N;
          for (std::int64_t j = j0; j < j1; ++j) ci[j] += aik * bk[j];
        }
      }
  }
}
#endif

}  // namespace

void gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta, Tensor& c) {
  const std::int64_t M = c.size(0), N = c.size(1);
  const std::int64_t K = trans_a ? a.size(0) : a.size(1);
  if (M == 0 || N == 0) return;
  float* cp = c.data<float>();
  if (K == 0) {
    for (std::int64_t i = 0; i < M * N; ++i) cp[i] = beta == 0.0f ? 0.0f : beta * cp[i];
    return;
  }
#if defined(KILN_WITH_BLAS)
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, a.data<float>(),
              static_cast<int>(a.size(1)), b.data<float>(), static_cast<int>(b.size(1)), beta, cp,
              static_cast<int>(N));
#else
  blocked_gemm(trans_a, trans_b, M, N, K, alpha, a.data<float>(), b.data<float>(), beta, cp);
#endif
}

}  // namespace kiln::cpu

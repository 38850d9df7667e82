// CUDA twin of gemm: row-major SGEMM through cuBLAS (column-major). A row-major matrix is its
// transpose in column-major, so c = op(a) op(b) is computed as c^T = op(b)^T op(a)^T: cuBLAS gets
// b first, then a, with m = N and n = M.
#include <climits>
#include <cstdint>

#include "backend/backend.h"
#include "cuda/runtime.h"

namespace kiln::cuda {

void gemm(bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta, Tensor& c) {
  KILN_CHECK(a.dim() == 2 && b.dim() == 2 && c.dim() == 2, "gemm: expected 2-D tensors, got ", a.str(), ", ",
             b.str(), ", ", c.str());
  const std::int64_t M = c.size(0);
  const std::int64_t N = c.size(1);
  const std::int64_t K = trans_a ? a.size(0) : a.size(1);
  KILN_CHECK((trans_a ? a.size(1) : a.size(0)) == M && (trans_b ? b.size(1) : b.size(0)) == K &&
                 (trans_b ? b.size(0) : b.size(1)) == N,
             "gemm: shapes do not agree: ", a.str(), (trans_a ? "^T" : ""), " x ", b.str(), (trans_b ? "^T" : ""),
             " -> ", c.str());
  KILN_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "gemm: dimensions exceed the cuBLAS int range");
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // op(a) op(b) is an empty sum: c = beta c. With beta == 0, c is overwritten without being read
    // (BLAS semantics: NaN or Inf already in c must not survive).
    if (beta == 0.0f) {
      kiln::cuda::fill(c, 0.0f);
    } else {
      kiln::cuda::scale(c, beta, c);
    }
    return;
  }

  const int m = static_cast<int>(N);  // rows of the column-major result c^T
  const int n = static_cast<int>(M);
  const int k = static_cast<int>(K);
  // Leading dimensions are the row lengths of the row-major storage.
  const int ldb = static_cast<int>(trans_b ? K : N);  // b is [N, K] when trans_b, else [K, N]
  const int lda = static_cast<int>(trans_a ? M : K);  // a is [K, M] when trans_a, else [M, K]
  const int ldc = static_cast<int>(N);

  cublasHandle_t handle = cublas(c.device().index);  // already bound to the current stream
  // Full FP32 math. TF32 tensor cores (CUBLAS_TF32_TENSOR_OP_MATH) are much faster on sm_80+ but
  // round the inputs to 10 mantissa bits; they are left off until there is a precision option.
  KILN_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  KILN_CUBLAS_CHECK(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST));  // alpha, beta are host floats
  KILN_CUBLAS_CHECK(cublasSgemm(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, m,
                                n, k, &alpha, b.data<float>(), ldb, a.data<float>(), lda, &beta, c.data<float>(),
                                ldc));
}

}  // namespace kiln::cuda

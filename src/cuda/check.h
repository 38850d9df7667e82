// One check macro per CUDA library. Each evaluates the call once and, on failure, throws a
// kiln::Error naming the call, file:line, the current device and the library's own error string.
// The _WARN variants only print: for destructors, which must not throw.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace kiln::cuda::detail {
[[noreturn]] void fail_cuda(const char* call, const char* file, int line, cudaError_t e);
[[noreturn]] void fail_cublas(const char* call, const char* file, int line, cublasStatus_t s);
[[noreturn]] void fail_cudnn(const char* call, const char* file, int line, cudnnStatus_t s);
void warn_cuda(const char* call, const char* file, int line, cudaError_t e);
}  // namespace kiln::cuda::detail

#define KILN_CUDA_CHECK(call)                                                          \
  do {                                                                                 \
    cudaError_t kiln_e_ = (call);                                                      \
    if (kiln_e_ != cudaSuccess) ::kiln::cuda::detail::fail_cuda(#call, __FILE__, __LINE__, kiln_e_); \
  } while (0)

#define KILN_CUDA_WARN(call)                                                           \
  do {                                                                                 \
    cudaError_t kiln_e_ = (call);                                                      \
    if (kiln_e_ != cudaSuccess) ::kiln::cuda::detail::warn_cuda(#call, __FILE__, __LINE__, kiln_e_); \
  } while (0)

#define KILN_CUBLAS_CHECK(call)                                                        \
  do {                                                                                 \
    cublasStatus_t kiln_s_ = (call);                                                   \
    if (kiln_s_ != CUBLAS_STATUS_SUCCESS) ::kiln::cuda::detail::fail_cublas(#call, __FILE__, __LINE__, kiln_s_); \
  } while (0)

#define KILN_CUDNN_CHECK(call)                                                         \
  do {                                                                                 \
    cudnnStatus_t kiln_s_ = (call);                                                    \
    if (kiln_s_ != CUDNN_STATUS_SUCCESS) ::kiln::cuda::detail::fail_cudnn(#call, __FILE__, __LINE__, kiln_s_); \
  } while (0)

// The emulated cuBLAS v2: the subset kiln calls (handles, stream, math and pointer modes, SGEMM,
// version and status queries). cublas_v2.h maps the v2 names (cublasCreate -> cublasCreate_v2 ...)
// and declares them extern "C", so the definitions below take the header's names and linkage.
//
// Arguments are checked as NVIDIA documents them (CUBLAS_STATUS_INVALID_VALUE), and the device
// pointers are checked against the emulator's allocations: a host pointer or a range that runs
// past its allocation is reported (kiln_emu::report) instead of being read, since on a GPU it
// would fault or silently read another buffer. The arithmetic runs in stream order on the
// handle's stream, like a kernel launch: the call returns before C is written.
#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "dnn_math.h"
#include "internal.h"

// The object behind cublasHandle_t.
struct cublasContext {
  cudaStream_t stream = nullptr;  // nullptr: the legacy default stream (cuBLAS's default)
  cublasMath_t math_mode = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace {

// The handles that exist, so that a destroyed or made-up handle is an error, not undefined
// behaviour.
std::mutex& handles_mutex() {
  static std::mutex* m = new std::mutex();  // never destroyed: handles may be destroyed at exit
  return *m;
}
std::set<const cublasContext*>& handles() {
  static auto* s = new std::set<const cublasContext*>();
  return *s;
}

bool live(const cublasContext* h) {
  if (!h) return false;
  std::lock_guard<std::mutex> lock(handles_mutex());
  return handles().count(h) != 0;
}

// Checks the handle of `call`: cuBLAS answers NOT_INITIALIZED for one that was never created.
cublasStatus_t check_handle(const cublasContext* h, const char* call) {
  if (live(h)) return CUBLAS_STATUS_SUCCESS;
  if (h) kiln_emu::report(std::string(call) + ": the handle was destroyed or never created by cublasCreate");
  return CUBLAS_STATUS_NOT_INITIALIZED;
}

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// Bytes spanned by a column-major rows x cols matrix with leading dimension ld (0 when empty).
std::size_t matrix_bytes(std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return static_cast<std::size_t>((cols - 1) * ld + rows) * sizeof(float);
}

// Whether `p` holds the `bytes` the call touches in device memory; reports it if not.
bool device_arg(const void* p, std::size_t bytes, const char* call, const char* arg) {
  if (bytes == 0 || kiln_emu::device_range(p, bytes)) return true;
  kiln_emu::report(std::string(call) + ": " + arg + " (" + hex(p) + ") is not device memory holding the " +
                   std::to_string(bytes) + " bytes the call accesses");
  return false;
}

bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

// Validates SGEMM's sizes, as cuBLAS documents them.
bool sgemm_sizes_ok(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
  if (!valid_op(ta) || !valid_op(tb) || m < 0 || n < 0 || k < 0) return false;
  const int a_rows = ta == CUBLAS_OP_N ? m : k;
  const int b_rows = tb == CUBLAS_OP_N ? k : n;
  return lda >= std::max(1, a_rows) && ldb >= std::max(1, b_rows) && ldc >= std::max(1, m);
}

// Checks alpha and beta for the pointer mode: host memory (read now) or device memory (read by
// the queued work).
bool scalar_ok(const float* p, cublasPointerMode_t mode, const char* arg) {
  if (!p) return false;
  const bool on_device = kiln_emu::device_range(p, sizeof(float));
  if (mode == CUBLAS_POINTER_MODE_DEVICE && !on_device) {
    kiln_emu::report(std::string("cublasSgemm: ") + arg + " (" + hex(p) +
                     ") is not device memory, but the pointer mode is CUBLAS_POINTER_MODE_DEVICE");
    return false;
  }
  if (mode == CUBLAS_POINTER_MODE_HOST && on_device) {
    kiln_emu::report(std::string("cublasSgemm: ") + arg + " (" + hex(p) +
                     ") is device memory, but the pointer mode is CUBLAS_POINTER_MODE_HOST");
    return false;
  }
  return true;
}

bool valid_math_mode(int mode) {
  const int base = mode & ~static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  return base == CUBLAS_DEFAULT_MATH || base == CUBLAS_TENSOR_OP_MATH || base == CUBLAS_PEDANTIC_MATH ||
         base == CUBLAS_TF32_TENSOR_OP_MATH || base == CUBLAS_FP32_EMULATED_BF16X9_MATH ||
         base == CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH;
}

}  // namespace

// ---- handles -----------------------------------------------------------------------------------

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  auto* h = new cublasContext();
  std::lock_guard<std::mutex> lock(handles_mutex());
  handles().insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

// Work already queued holds copies of what it needs, never the handle, so the handle can go at once.
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (const cublasStatus_t s = check_handle(handle, "cublasDestroy"); s != CUBLAS_STATUS_SUCCESS) return s;
  {
    std::lock_guard<std::mutex> lock(handles_mutex());
    handles().erase(handle);
  }
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (const cublasStatus_t s = check_handle(handle, "cublasSetStream"); s != CUBLAS_STATUS_SUCCESS) return s;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (const cublasStatus_t s = check_handle(handle, "cublasGetStream"); s != CUBLAS_STATUS_SUCCESS) return s;
  if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

// The mode is recorded but the arithmetic is always plain FP32 (no TF32 or BF16x9 rounding).
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (const cublasStatus_t s = check_handle(handle, "cublasSetMathMode"); s != CUBLAS_STATUS_SUCCESS) return s;
  if (!valid_math_mode(static_cast<int>(mode))) return CUBLAS_STATUS_INVALID_VALUE;
  handle->math_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (const cublasStatus_t s = check_handle(handle, "cublasGetMathMode"); s != CUBLAS_STATUS_SUCCESS) return s;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math_mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (const cublasStatus_t s = check_handle(handle, "cublasSetPointerMode"); s != CUBLAS_STATUS_SUCCESS) return s;
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t* mode) {
  if (const cublasStatus_t s = check_handle(handle, "cublasGetPointerMode"); s != CUBLAS_STATUS_SUCCESS) return s;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->pointer_mode;
  return CUBLAS_STATUS_SUCCESS;
}

// ---- versions and status strings ---------------------------------------------------------------

cublasStatus_t cublasGetVersion(cublasHandle_t handle, int* version) {
  if (const cublasStatus_t s = check_handle(handle, "cublasGetVersion"); s != CUBLAS_STATUS_SUCCESS) return s;
  if (!version) return CUBLAS_STATUS_INVALID_VALUE;
  *version = CUBLAS_VERSION;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
  if (!value) return CUBLAS_STATUS_INVALID_VALUE;
  switch (type) {
    case MAJOR_VERSION: *value = CUBLAS_VER_MAJOR; return CUBLAS_STATUS_SUCCESS;
    case MINOR_VERSION: *value = CUBLAS_VER_MINOR; return CUBLAS_STATUS_SUCCESS;
    case PATCH_LEVEL: *value = CUBLAS_VER_PATCH; return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
  }
  return "unknown error";
}

// ---- SGEMM -------------------------------------------------------------------------------------

// Column-major C = alpha op(A) op(B) + beta C. CUBLAS_OP_C is CUBLAS_OP_T for real matrices.
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                           const float* beta, float* C, int ldc) {
  static const char* call = "cublasSgemm";
  if (const cublasStatus_t s = check_handle(handle, call); s != CUBLAS_STATUS_SUCCESS) return s;
  if (!sgemm_sizes_ok(transa, transb, m, n, k, lda, ldb, ldc)) return CUBLAS_STATUS_INVALID_VALUE;
  const cublasPointerMode_t mode = handle->pointer_mode;
  if (!scalar_ok(alpha, mode, "alpha") || !scalar_ok(beta, mode, "beta")) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;  // nothing to compute

  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  // op(A) is m x k: A is stored m x k (no transpose) or k x m; likewise B.
  const std::size_t a_bytes = ta ? matrix_bytes(k, m, lda) : matrix_bytes(m, k, lda);
  const std::size_t b_bytes = tb ? matrix_bytes(n, k, ldb) : matrix_bytes(k, n, ldb);
  if (!device_arg(A, a_bytes, call, "A") || !device_arg(B, b_bytes, call, "B") ||
      !device_arg(C, matrix_bytes(m, n, ldc), call, "C"))
    return CUBLAS_STATUS_INVALID_VALUE;

  std::function<void()> work;
  if (mode == CUBLAS_POINTER_MODE_HOST) {  // the scalars are read now; the caller may reuse them
    const float a = *alpha, b = *beta;
    work = [=] { kiln_emu::dnn::sgemm(ta, tb, m, n, k, a, A, lda, B, ldb, b, C, ldc); };
  } else {  // device scalars are read when the work runs, after earlier work on the stream
    work = [=] { kiln_emu::dnn::sgemm(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc); };
  }
  if (kiln_emu::enqueue(handle->stream, std::move(work)) != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  return CUBLAS_STATUS_SUCCESS;
}

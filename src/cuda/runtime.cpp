// CUDA runtime services: error reporting, per-device streams and library handles, pinned host
// memory, copies, and the facts `kiln info` prints.
#include "cuda/runtime.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "core/op_scope.h"
#include "kiln/cuda.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {
constexpr int kMaxDevices = 64;

std::string where(const char* call, const char* file, int line) {
  int dev = -1;
  // cudaGetDevice does not fail on a healthy runtime; if it does we simply report "?".
  const bool ok = cudaGetDevice(&dev) == cudaSuccess;
  return kiln::detail::str(call, " failed at ", file, ":", line, " on ", ok ? "cuda:" + std::to_string(dev) : "cuda:?",
                     " (op '", kiln::detail::current_op(), "')");
}

bool is_sticky(cudaError_t e) {
  return e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorIllegalInstruction ||
         e == cudaErrorMisalignedAddress || e == cudaErrorAssert || e == cudaErrorHardwareStackError ||
         e == cudaErrorInvalidPc || e == cudaErrorECCUncorrectable;
}

void check_index(int device) {
  KILN_CHECK(device >= 0 && device < kMaxDevices, "CUDA device index ", device, " out of range");
}

std::mutex g_stream_mutex;
std::array<std::atomic<cudaStream_t>, kMaxDevices> g_compute_streams{};  // created once, then read lock-free
thread_local std::array<cudaStream_t, kMaxDevices> t_stream_override{};
thread_local std::array<cublasHandle_t, kMaxDevices> t_cublas{};
thread_local std::array<cudnnHandle_t, kMaxDevices> t_cudnn{};
}  // namespace

namespace detail {
void fail_cuda(const char* call, const char* file, int line, cudaError_t e) {
  std::string msg = "CUDA error: " + where(call, file, line) + ": " + cudaGetErrorString(e) + " (" +
                    cudaGetErrorName(e) + ")";
  if (is_sticky(e)) msg += "; the CUDA context is now unusable, restart the process";
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
    msg += "; run on the CPU with --device cpu";
  cudaGetLastError();  // clear a non-sticky error so it is not reported again by a later check
  if (e == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
  throw Error(msg);
}

void fail_cublas(const char* call, const char* file, int line, cublasStatus_t s) {
  throw Error("cuBLAS error: " + where(call, file, line) + ": " + cublasGetStatusString(s) + " (" +
              cublasGetStatusName(s) + ")");
}

void fail_cudnn(const char* call, const char* file, int line, cudnnStatus_t s) {
  throw Error("cuDNN error: " + where(call, file, line) + ": " + cudnnGetErrorString(s));
}

void fail_launch(const char* file, int line, cudaError_t e) { fail_cuda("kernel launch", file, line, e); }

void warn_cuda(const char* call, const char* file, int line, cudaError_t e) {
  std::fprintf(stderr, "kiln: warning: CUDA error: %s failed at %s:%d: %s\n", call, file, line, cudaGetErrorString(e));
  cudaGetLastError();
}
}  // namespace detail

void set_device(int device) {
  check_index(device);
  int current = -1;
  KILN_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) KILN_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) {
  check_index(device);
  KILN_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) KILN_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_ && previous_ >= 0)
    KILN_CUDA_WARN(cudaSetDevice(previous_));
}

cudaStream_t current_stream(int device) {
  check_index(device);
  if (cudaStream_t s = t_stream_override[static_cast<std::size_t>(device)]) return s;
  auto& slot = g_compute_streams[static_cast<std::size_t>(device)];
  if (cudaStream_t s = slot.load(std::memory_order_acquire)) return s;  // every call after the first
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  cudaStream_t s = slot.load(std::memory_order_relaxed);
  if (!s) {
    DeviceGuard guard(device);
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    slot.store(s, std::memory_order_release);
  }
  return s;
}

StreamGuard::StreamGuard(int device, cudaStream_t stream) : device_(device) {
  check_index(device);
  previous_ = t_stream_override[static_cast<std::size_t>(device)];
  t_stream_override[static_cast<std::size_t>(device)] = stream;
}

StreamGuard::~StreamGuard() { t_stream_override[static_cast<std::size_t>(device_)] = previous_; }

// Handles are per thread (cuBLAS and cuDNN handles are not safe to share across threads) and are
// deliberately never destroyed: destroying them at exit races the CUDA context's own teardown.
cublasHandle_t cublas(int device) {
  check_index(device);
  cublasHandle_t& h = t_cublas[static_cast<std::size_t>(device)];
  if (!h) {
    DeviceGuard guard(device);
    KILN_CUBLAS_CHECK(cublasCreate(&h));
  }
  KILN_CUBLAS_CHECK(cublasSetStream(h, current_stream(device)));
  return h;
}

cudnnHandle_t cudnn(int device) {
  check_index(device);
  cudnnHandle_t& h = t_cudnn[static_cast<std::size_t>(device)];
  if (!h) {
    DeviceGuard guard(device);
    KILN_CUDNN_CHECK(cudnnCreate(&h));
  }
  KILN_CUDNN_CHECK(cudnnSetStream(h, current_stream(device)));
  return h;
}

void* pinned_alloc(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw OutOfMemoryError(kiln::detail::str("cannot allocate ", bytes, " bytes of pinned host memory: ",
                                             cudaGetErrorString(e), "; try fewer --workers or a smaller batch"));
  }
  return p;
}

void pinned_free(void* p) { KILN_CUDA_WARN(cudaFreeHost(p)); }

void copy(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes, bool sync) {
  if (bytes == 0) return;
  const int dev = dst_dev.is_cuda() ? dst_dev.index : src_dev.index;
  DeviceGuard guard(dev);
  if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index) {
    // Peer copy: order it after the source device's pending work, and finish before returning.
    KILN_CUDA_CHECK(cudaStreamSynchronize(current_stream(src_dev.index)));
    sync = true;
  }
  cudaStream_t stream = current_stream(dev);
  KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  if (sync) KILN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// ---- public facts (kiln/cuda.h) ---------------------------------------------------------------------
void synchronize(int device) {
  set_device(device);
  KILN_CUDA_CHECK(cudaDeviceSynchronize());
}

namespace {
std::string dotted(int v) {  // 12040 -> "12.4"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

Versions versions() {
  Versions v;
  int rt = 0, drv = 0;
  v.runtime = cudaRuntimeGetVersion(&rt) == cudaSuccess ? dotted(rt) : "unknown";
  if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
    v.driver = dotted(drv);
  else
    v.driver = "no driver";
  cudaGetLastError();
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    v.cublas = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  else
    v.cublas = "unknown";
  const std::size_t dnn = cudnnGetVersion();  // e.g. 91900 for 9.19.0
  v.cudnn = std::to_string(dnn / 10000) + "." + std::to_string((dnn % 10000) / 100) + "." + std::to_string(dnn % 100);
#if defined(KILN_CUDA_EMULATED)
  // The emulator implements these APIs itself (tests/emu); no NVIDIA library or driver is used.
  v.runtime += " (emulated)";
  v.driver = "none (emulated)";
  v.cublas += " (emulated)";
  v.cudnn += " (emulated)";
#endif
  return v;
}

std::string describe_devices() {
  const int n = cuda_device_count();
  if (n == 0) return "no CUDA device (" + cuda_unavailable_reason() + ")\n";
  std::string out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    KILN_CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    char line[512];
    std::snprintf(line, sizeof line, "cuda:%d %s, sm_%d%d, %d SMs, %.1f GiB\n", i, p.name, p.major, p.minor,
                  p.multiProcessorCount, static_cast<double>(p.totalGlobalMem) / (1ull << 30));
    out += line;
  }
#if defined(KILN_CUDA_EMULATED)
  out += "(KILN_CUDA=EMULATE: cuda:0 is the CPU emulating a GPU, for running and debugging kiln's CUDA code; its "
         "timings mean nothing)\n";
#endif
  return out;
}

}  // namespace kiln::cuda

// Shared helpers of the kernel lab (bench/kernel_lab): error checks, device buffers, deterministic
// inputs, the L2 flush, event timing (median of N runs), result validation against a CPU
// reference, the device's ceilings measured in the same run (device-to-device copy bandwidth,
// cuBLAS FP32 SGEMM throughput), argument parsing and the result table.
//
// Each lab program is one translation unit that includes this header once; everything here is
// `inline` so that the header could also be shared by a program made of several files.
//
// Timing protocol (as in llm.c's dev/cuda):
//   1. every variant is first run once on poisoned (NaN-filled) outputs and checked against the
//      CPU reference; a variant that fails is not timed;
//   2. one untimed warm-up launch;
//   3. R timed launches, each preceded by a write of a buffer twice the size of L2 (so the inputs
//      come from DRAM, not from the cache the previous launch left warm), each bracketed by CUDA
//      events; the reported time is the median.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

// ---- error checks ---------------------------------------------------------------------------------
// A standalone bench tool: any CUDA or cuBLAS error prints where it happened and exits with 1.
#define CUDA_CHECK(call)                                                                                \
  do {                                                                                                  \
    const cudaError_t klab_err_ = (call);                                                               \
    if (klab_err_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "CUDA error %s (%s)\n  at %s:%d: %s\n", cudaGetErrorName(klab_err_),         \
                   cudaGetErrorString(klab_err_), __FILE__, __LINE__, #call);                           \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

#define CUBLAS_CHECK(call)                                                                              \
  do {                                                                                                  \
    const cublasStatus_t klab_st_ = (call);                                                             \
    if (klab_st_ != CUBLAS_STATUS_SUCCESS) {                                                            \
      std::fprintf(stderr, "cuBLAS error %s (%d)\n  at %s:%d: %s\n", cublasGetStatusString(klab_st_),   \
                   static_cast<int>(klab_st_), __FILE__, __LINE__, #call);                              \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

// After a kernel launch: catches bad launch configurations at once (execution errors surface at
// the next synchronising call, which is also checked).
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

namespace klab {

[[noreturn]] inline void die(const char* fmt, ...) {
  std::va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "error: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::exit(1);
}

inline long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// ---- device buffers -------------------------------------------------------------------------------
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0) CUDA_CHECK(cudaMalloc(&ptr_, n_ * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);  // no check: may run during exit
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) {
    o.ptr_ = nullptr;
    o.n_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    return *this;
  }

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

  void upload(const std::vector<T>& h) {
    if (h.size() != n_) die("upload: %zu host elements for a buffer of %zu", h.size(), n_);
    if (n_ > 0) CUDA_CHECK(cudaMemcpy(ptr_, h.data(), bytes(), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_ > 0) CUDA_CHECK(cudaMemcpy(h.data(), ptr_, bytes(), cudaMemcpyDeviceToHost));
    return h;
  }
  // Fills every byte with 0xFF: for float buffers that is a NaN pattern, for int buffers -1. Run
  // before each correctness launch, so a kernel that skips elements (or a stale result of the
  // previous variant) cannot pass the check.
  void poison() {
    if (n_ > 0) CUDA_CHECK(cudaMemset(ptr_, 0xFF, bytes()));
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// ---- deterministic inputs -------------------------------------------------------------------------
// splitmix64: fast, seedable, identical on every platform (unlike std::uniform_real_distribution).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi): 24 random bits, so every value is an exact float.
  float uniform(float lo, float hi) {
    const float u = static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * u;
  }
  // Uniform integer in [0, n).
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t s_;
};

inline std::vector<float> random_uniform(size_t n, float lo, float hi, uint64_t seed) {
  std::vector<float> v(n);
  Rng rng(seed);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

// ---- device properties ----------------------------------------------------------------------------
inline int current_device() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

inline int device_attribute(cudaDeviceAttr attr, int dev = -1) {
  if (dev < 0) dev = current_device();
  int v = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  return v;
}

inline int sm_count() { return device_attribute(cudaDevAttrMultiProcessorCount); }

// One line describing the GPU: name, compute capability, SMs, L2, memory and the theoretical DRAM
// bandwidth from the reported memory clock and bus width (2 transfers per clock; informational
// only: the lab's ceiling is the copy bandwidth it measures).
inline void print_device_info() {
  const int dev = current_device();
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  const int mem_clock_khz = device_attribute(cudaDevAttrMemoryClockRate, dev);
  const int bus_bits = device_attribute(cudaDevAttrGlobalMemoryBusWidth, dev);
  const int l2 = device_attribute(cudaDevAttrL2CacheSize, dev);
  int rt = 0, drv = 0;
  CUDA_CHECK(cudaRuntimeGetVersion(&rt));
  CUDA_CHECK(cudaDriverGetVersion(&drv));
  const double theo_gbs = 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  std::printf("device %d: %s, sm_%d%d, %d SMs, L2 %.1f MiB, %.1f GiB, %d-bit bus @ %d MHz (%.0f GB/s theoretical), "
              "CUDA runtime %d.%d, driver %d.%d\n",
              dev, prop.name, prop.major, prop.minor, prop.multiProcessorCount, l2 / 1048576.0,
              prop.totalGlobalMem / 1073741824.0, bus_bits, mem_clock_khz / 1000, theo_gbs, rt / 1000,
              (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10);
}

// ---- L2 flush -------------------------------------------------------------------------------------
// Writes a buffer of twice the L2 size (at least 64 MiB) before each timed launch: afterwards L2
// holds (dirty) lines of the flush buffer, none of the kernel's inputs.
class L2Flush {
 public:
  L2Flush() {
    const size_t l2 = static_cast<size_t>(device_attribute(cudaDevAttrL2CacheSize));
    bytes_ = std::max<size_t>(2 * l2, size_t{64} << 20);
    CUDA_CHECK(cudaMalloc(&buf_, bytes_));
  }
  ~L2Flush() {
    if (buf_ != nullptr) cudaFree(buf_);
  }
  L2Flush(const L2Flush&) = delete;
  L2Flush& operator=(const L2Flush&) = delete;

  void run(cudaStream_t stream = nullptr) {
    CUDA_CHECK(cudaMemsetAsync(buf_, static_cast<int>(++count_ & 0xFF), bytes_, stream));
  }
  size_t bytes() const { return bytes_; }

 private:
  void* buf_ = nullptr;
  size_t bytes_ = 0;
  unsigned count_ = 0;
};

// ---- timing ---------------------------------------------------------------------------------------
// Median time in ms of `repeat` launches of `launch()` (which enqueues one or more kernels on
// `stream`), each after an L2 flush. One untimed warm-up launch first. The flush also hides the
// host's launch latency: the kernel is queued long before the flush finishes, so the events
// bracket GPU time only.
template <class Launch>
double time_median_ms(Launch&& launch, int repeat, L2Flush& flush, cudaStream_t stream = nullptr) {
  if (repeat < 1) repeat = 1;
  launch();
  LAUNCH_CHECK();
  CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(static_cast<size_t>(repeat));
  for (int i = 0; i < repeat; ++i) {
    flush.run(stream);
    CUDA_CHECK(cudaEventRecord(start, stream));
    launch();
    LAUNCH_CHECK();
    CUDA_CHECK(cudaEventRecord(stop, stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms[static_cast<size_t>(i)], start, stop));
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return n % 2 == 1 ? ms[n / 2] : 0.5 * (static_cast<double>(ms[n / 2 - 1]) + ms[n / 2]);
}

inline double gb_per_s(double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; }
inline double tflop_per_s(double flops, double ms) { return flops / (ms * 1e-3) / 1e12; }

// ---- ceilings -------------------------------------------------------------------------------------
// Device-to-device cudaMemcpy of a buffer much larger than L2 (at least 512 MiB and 8x L2); the
// bandwidth counts the bytes read plus the bytes written, as the lab's kernels do. A well-written
// streaming kernel can come within a few percent of it and sometimes beat it slightly.
inline double measure_copy_bandwidth_gbs(int repeat, L2Flush& flush) {
  const size_t l2 = static_cast<size_t>(device_attribute(cudaDevAttrL2CacheSize));
  size_t bytes = std::max<size_t>(size_t{512} << 20, 8 * l2);
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  while (bytes > (size_t{16} << 20) && 2 * bytes > free_b / 2) bytes /= 2;  // leave room for the lab
  void* src = nullptr;
  void* dst = nullptr;
  CUDA_CHECK(cudaMalloc(&src, bytes));
  CUDA_CHECK(cudaMalloc(&dst, bytes));
  CUDA_CHECK(cudaMemset(src, 1, bytes));
  const double ms = time_median_ms(
      [&] { CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr)); }, repeat, flush);
  CUDA_CHECK(cudaFree(src));
  CUDA_CHECK(cudaFree(dst));
  return gb_per_s(2.0 * static_cast<double>(bytes), ms);
}

// cuBLAS handle for FP32 GEMM: CUBLAS_DEFAULT_MATH, i.e. no TF32 tensor cores for cublasSgemm
// (the same setting kiln's src/cuda/blas.cpp uses). Warns when NVIDIA_TF32_OVERRIDE is set in the
// environment, since it changes what the library may do.
inline cublasHandle_t make_fp32_cublas() {
  cublasHandle_t h = nullptr;
  CUBLAS_CHECK(cublasCreate(&h));
  CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  CUBLAS_CHECK(cublasSetStream(h, nullptr));
  if (const char* e = std::getenv("NVIDIA_TF32_OVERRIDE")) {
    std::printf("note: NVIDIA_TF32_OVERRIDE=%s is set in the environment\n", e);
  }
  return h;
}

// Row-major C[M,N] = A[M,K] B[K,N] through column-major cuBLAS: C^T = B^T A^T, i.e. the
// column-major product of B (as an N x K matrix with ld N) and A (K x M, ld K).
inline void cublas_sgemm_rowmajor(cublasHandle_t h, int M, int N, int K, const float* A, const float* B, float* C) {
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, N, A, K, &beta, C, N));
}

// cuBLAS SGEMM (FP32, no TF32) throughput in TFLOP/s for an M x N x K problem on its own random
// matrices. (lab_sgemm times cuBLAS on its own inputs instead, and reuses its output as reference.)
inline double measure_cublas_sgemm_tflops(cublasHandle_t h, int M, int N, int K, int repeat, L2Flush& flush) {
  DeviceBuffer<float> A(static_cast<size_t>(M) * K), B(static_cast<size_t>(K) * N), C(static_cast<size_t>(M) * N);
  A.upload(random_uniform(A.size(), -1.0f, 1.0f, 101));
  B.upload(random_uniform(B.size(), -1.0f, 1.0f, 202));
  const double ms =
      time_median_ms([&] { cublas_sgemm_rowmajor(h, M, N, K, A.get(), B.get(), C.get()); }, repeat, flush);
  return tflop_per_s(2.0 * M * N * static_cast<double>(K), ms);
}

// ---- validation -----------------------------------------------------------------------------------
// Element i passes when gpu[i] == ref[i] (this covers equal infinities) or
// |gpu[i] - ref[i]| <= atol + rtol * |ref[i]|. NaN never passes (every comparison with it is
// false). On failure prints how many elements failed and the worst one: the element with the
// largest |diff| / allowed (a NaN counts as worst), as [row, col] when `cols` > 0.
template <class Ref>
bool validate_result(const float* gpu, const Ref* ref, size_t n, double rtol, double atol, const char* what = "output",
                     size_t cols = 0) {
  size_t bad = 0, worst = 0;
  double worst_score = -1.0;
  for (size_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(gpu[i]);
    const double r = static_cast<double>(ref[i]);
    const double diff = std::fabs(g - r);
    const double allowed = atol + rtol * std::fabs(r);
    const bool ok = (g == r) || (diff <= allowed);
    double score;
    if (g == r) score = 0.0;
    else if (std::isnan(diff)) score = INFINITY;
    else score = allowed > 0.0 ? diff / allowed : INFINITY;
    if (!ok) ++bad;
    if (score > worst_score) {
      worst_score = score;
      worst = i;
    }
  }
  if (bad == 0) return true;
  const double g = gpu[worst], r = static_cast<double>(ref[worst]);
  char where[64];
  if (cols > 0) std::snprintf(where, sizeof where, "[%zu, %zu]", worst / cols, worst % cols);
  else std::snprintf(where, sizeof where, "[%zu]", worst);
  std::printf("    FAIL %s: %zu of %zu elements outside |gpu - ref| <= %.3g + %.3g * |ref|\n"
              "         worst at %s: gpu = %.9g, ref = %.9g, |diff| = %.3g, allowed %.3g\n",
              what, bad, n, atol, rtol, where, g, r, std::fabs(g - r), atol + rtol * std::fabs(r));
  return false;
}

// Exact comparison for integer outputs (argmax indices); prints the first mismatch.
template <class T>
bool validate_equal(const T* gpu, const T* ref, size_t n, const char* what = "indices") {
  size_t bad = 0, first = n;
  for (size_t i = 0; i < n; ++i) {
    if (gpu[i] != ref[i]) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return true;
  std::printf("    FAIL %s: %zu of %zu elements differ; first at [%zu]: gpu = %lld, ref = %lld\n", what, bad, n, first,
              static_cast<long long>(gpu[first]), static_cast<long long>(ref[first]));
  return false;
}

// ---- arguments ------------------------------------------------------------------------------------
// --variant N|all   (default all)      --repeat R (default 20)
// --size S          (repeatable; program-specific meaning, e.g. 4096x1000)
// plus the program's own "--key value" options named in `extra`. Both "--key value" and
// "--key=value" are accepted.
struct Args {
  int variant = 0;  // 0: all
  int repeat = 20;
  std::vector<std::string> sizes;
  std::map<std::string, std::string> extra;
};

inline int parse_int(const std::string& s, const char* flag) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < 0 || v > 1000000000L)
    die("%s: expected a non-negative integer, got '%s'", flag, s.c_str());
  return static_cast<int>(v);
}

inline Args parse_args(int argc, char** argv, const char* usage, const std::vector<std::string>& extra = {}) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i], value;
    const bool has_eq = key.rfind("--", 0) == 0 && key.find('=') != std::string::npos;
    if (has_eq) {
      value = key.substr(key.find('=') + 1);
      key = key.substr(0, key.find('='));
    }
    if (key == "-h" || key == "--help") {
      std::printf("%s", usage);
      std::exit(0);
    }
    const bool known = key == "--variant" || key == "--repeat" || key == "--size" ||
                       std::find(extra.begin(), extra.end(), key) != extra.end();
    if (!known) {
      std::fprintf(stderr, "unknown argument '%s'\n%s", argv[i], usage);
      std::exit(2);
    }
    if (!has_eq) {
      if (i + 1 >= argc) die("%s needs a value", key.c_str());
      value = argv[++i];
    }
    if (key == "--variant") a.variant = value == "all" ? 0 : parse_int(value, "--variant");
    else if (key == "--repeat") a.repeat = std::max(1, parse_int(value, "--repeat"));
    else if (key == "--size") a.sizes.push_back(value);
    else a.extra[key] = value;
  }
  return a;
}

// "4096x1000" -> {4096, 1000}; exits unless it has `count` positive parts (count 0: any number).
inline std::vector<long long> parse_dims(const std::string& s, size_t count, const char* what) {
  std::vector<long long> d;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t x = s.find_first_of("xX,", pos);
    const std::string part = s.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
    char* end = nullptr;
    const long long v = std::strtoll(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || v <= 0) die("%s: bad size '%s'", what, s.c_str());
    d.push_back(v);
    if (x == std::string::npos) break;
    pos = x + 1;
  }
  if (count != 0 && d.size() != count) die("%s: expected %zu dimensions in '%s'", what, count, s.c_str());
  return d;
}

// ---- result table ---------------------------------------------------------------------------------
// variant | name | check | time ms | GB/s or TFLOP/s | % of ceiling
inline void print_table_header(const char* metric, const char* ceiling_name) {
  std::printf("  %-7s %-40s %-5s %10s %10s %10s\n", "variant", "name", "check", "time_ms", metric, ceiling_name);
}

// status: "ok", "FAIL" or "skip"; the numbers are printed only for timed rows (ms > 0).
inline void print_table_row(const std::string& id, const std::string& name, const char* status, double ms,
                            double metric, double pct) {
  if (ms > 0.0) {
    std::printf("  %-7s %-40s %-5s %10.4f %10.2f %9.1f%%\n", id.c_str(), name.c_str(), status, ms, metric, pct);
  } else {
    std::printf("  %-7s %-40s %-5s %10s %10s %10s\n", id.c_str(), name.c_str(), status, "-", "-", "-");
  }
  std::fflush(stdout);
}

}  // namespace klab

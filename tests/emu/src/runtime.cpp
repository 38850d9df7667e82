// The emulated device itself: one CUDA device that says it is emulated, the current device per
// thread, last and sticky errors, error strings, versions, diagnostics and the schedule setting.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "internal.h"
#include "kiln_emu/control.h"
#include "schedule.h"

namespace kiln_emu {

namespace {

thread_local cudaError_t t_last_error = cudaSuccess;
thread_local int t_device = 0;
std::atomic<cudaError_t> g_sticky{cudaSuccess};

struct Diagnostics {
  std::mutex mutex;
  std::string last;
};
Diagnostics& diagnostics() {
  static Diagnostics* d = new Diagnostics();
  return *d;
}

Schedule parse_schedule(const std::string& spec) {
  if (spec.empty() || spec == "forward") return {Schedule::Forward, 0};
  if (spec == "reverse") return {Schedule::Reverse, 0};
  if (spec.rfind("random:", 0) == 0 && spec.size() > 7) {
    char* end = nullptr;
    const unsigned long long seed = std::strtoull(spec.c_str() + 7, &end, 10);
    if (end && *end == '\0') return {Schedule::Random, seed};
  }
  throw std::invalid_argument("KILN_EMU_SCHEDULE '" + spec + "': expected forward, reverse or random:SEED");
}

Schedule& schedule_setting() {
  static Schedule s = [] {
    const char* env = std::getenv("KILN_EMU_SCHEDULE");
    try {
      return parse_schedule(env ? env : "");
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "kiln-emu: %s\n", e.what());
      std::exit(2);
    }
  }();
  return s;
}
std::mutex g_schedule_mutex;

// Most calls start by reporting a failed context, as CUDA's do.
cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}

}  // namespace

Schedule current_schedule() {
  std::lock_guard<std::mutex> lock(g_schedule_mutex);
  return schedule_setting();
}

std::string schedule_name(const Schedule& s) {
  switch (s.kind) {
    case Schedule::Forward: return "forward";
    case Schedule::Reverse: return "reverse";
    case Schedule::Random: return "random:" + std::to_string(s.seed);
  }
  return "?";
}

void set_schedule(const std::string& spec) {
  const Schedule s = parse_schedule(spec);
  std::lock_guard<std::mutex> lock(g_schedule_mutex);
  schedule_setting() = s;
}
std::string schedule() { return schedule_name(current_schedule()); }

void report(const std::string& msg) {
  std::fprintf(stderr, "kiln-emu: %s\n", msg.c_str());
  std::lock_guard<std::mutex> lock(diagnostics().mutex);
  diagnostics().last = msg;
}

std::string last_diagnostic() {
  std::lock_guard<std::mutex> lock(diagnostics().mutex);
  return diagnostics().last;
}
void clear_diagnostics() {
  std::lock_guard<std::mutex> lock(diagnostics().mutex);
  diagnostics().last.clear();
}

void fail_context(cudaError_t e, const std::string& msg) {
  report(msg);
  cudaError_t expected = cudaSuccess;
  g_sticky.compare_exchange_strong(expected, e);
}

void fault(const std::string& msg) { fail_context(cudaErrorIllegalAddress, msg); }

cudaError_t sticky_error() { return g_sticky.load(std::memory_order_relaxed); }
void set_last_error(cudaError_t e) { record(e); }

void reset_device() {
  synchronize_all();
  g_sticky = cudaSuccess;
  t_last_error = cudaSuccess;
}

}  // namespace kiln_emu

using kiln_emu::record;
using kiln_emu::sticky_error;

extern "C" {

cudaError_t cudaGetLastError(void) {
  if (cudaError_t e = sticky_error()) return e;
  const cudaError_t e = kiln_emu::t_last_error;
  kiln_emu::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  if (cudaError_t e = sticky_error()) return e;
  return kiln_emu::t_last_error;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define KILN_EMU_ERROR(name) \
  case name: return #name;
#include "error_names.inc"
#undef KILN_EMU_ERROR
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return cudaGetErrorName(error);
  }
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return record(cudaErrorInvalidValue);
  *device = kiln_emu::t_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return record(cudaErrorInvalidDevice);
  kiln_emu::t_device = device;
  return sticky_error();
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "kiln emulated CUDA device (runs on the CPU, not a GPU)");
  std::size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  prop->totalGlobalMem = total_b;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 9;  // reports the newest architecture kiln builds for
  prop->minor = 0;
  prop->multiProcessorCount = static_cast<int>(std::thread::hardware_concurrency());
  prop->unifiedAddressing = 1;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->asyncEngineCount = 1;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (!version) return record(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  if (!version) return record(cudaErrorInvalidValue);
  *version = CUDART_VERSION;  // the emulator is its own driver
  return cudaSuccess;
}

}  // extern "C"

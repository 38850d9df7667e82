// Device and pinned memory: a registry of every allocation, so that copies are classified
// (cudaMemcpyDefault) and checked, and kernels given a host pointer are caught. Device memory is
// ordinary heap memory: under AddressSanitizer each allocation has redzones, so a kernel that runs
// past one is reported at the kernel's line. New device memory is filled with 0xFF bytes (NaN as
// float), so a kernel that reads what nobody wrote shows it. Fault injection and a memory cap let
// tests drive kiln's out-of-memory paths.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "internal.h"
#include "kiln_emu/control.h"

namespace kiln_emu {

namespace {

enum class Kind { Device, Pinned };
struct Allocation {
  std::size_t bytes;
  Kind kind;
};

std::size_t env_memory_limit() {
  const char* s = std::getenv("KILN_EMU_MEMORY_MB");
  if (s && *s) return static_cast<std::size_t>(std::strtoull(s, nullptr, 10)) << 20;
  return std::size_t{8} << 30;  // 8 GiB: a small GPU
}
std::uint64_t env_count(const char* name) {
  const char* s = std::getenv(name);
  return s && *s ? std::strtoull(s, nullptr, 10) : 0;
}

struct Registry {
  std::mutex mutex;
  std::map<std::uintptr_t, Allocation> allocations;  // by start address
  std::size_t device_bytes = 0;
  std::size_t limit = env_memory_limit();
  std::uint64_t malloc_calls = 0, fail_malloc_at = env_count("KILN_EMU_FAIL_MALLOC");
  std::uint64_t host_calls = 0, fail_host_at = env_count("KILN_EMU_FAIL_HOST_ALLOC");
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: storages are freed during static destruction
  return *r;
}

// The allocation containing p (the caller holds the mutex), or null.
const std::pair<const std::uintptr_t, Allocation>* find(Registry& r, const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = r.allocations.upper_bound(a);
  if (it == r.allocations.begin()) return nullptr;
  --it;
  return a < it->first + it->second.bytes ? &*it : nullptr;
}

bool inside(Kind kind, const void* p, std::size_t bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto* a = find(r, p);
  return a && a->second.kind == kind &&
         reinterpret_cast<std::uintptr_t>(p) + bytes <= a->first + a->second.bytes;
}

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

cudaError_t allocate(void** out, std::size_t bytes, Kind kind) {
  if (!out) return cudaErrorInvalidValue;
  if (cudaError_t e = sticky_error()) return e;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const bool device = kind == Kind::Device;
  const std::uint64_t call = device ? ++r.malloc_calls : ++r.host_calls;
  const std::uint64_t fail_at = device ? r.fail_malloc_at : r.fail_host_at;
  if (fail_at != 0 && call == fail_at) {
    report(std::string(device ? "cudaMalloc" : "cudaHostAlloc") + " of " + std::to_string(bytes) +
           " bytes fails as injected");
    *out = nullptr;
    return cudaErrorMemoryAllocation;
  }
  if (device && (bytes > r.limit || r.device_bytes > r.limit - bytes)) {
    *out = nullptr;
    return cudaErrorMemoryAllocation;
  }
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes == 0 ? 1 : bytes) != 0) return cudaErrorMemoryAllocation;
  if (device) {
    std::memset(p, 0xFF, bytes);
    r.device_bytes += bytes;
  }
  r.allocations[reinterpret_cast<std::uintptr_t>(p)] = {bytes == 0 ? 1 : bytes, kind};
  *out = p;
  return cudaSuccess;
}

cudaError_t deallocate(void* p, Kind kind, const char* call) {
  if (!p) return cudaSuccess;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.allocations.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == r.allocations.end() || it->second.kind != kind) {
    report(std::string(call) + "(" + hex(p) + "): not the start of a live " +
           (kind == Kind::Device ? "cudaMalloc" : "cudaHostAlloc") + " allocation");
    return cudaErrorInvalidValue;
  }
  if (kind == Kind::Device) r.device_bytes -= it->second.bytes;
  r.allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}

// Where one side of a copy lives; `bytes` must fit inside a device allocation it starts in.
enum class Side { Device, Pinned, Pageable, Bad };
Side classify(const void* p, std::size_t bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto* a = find(r, p);
  if (!a) return Side::Pageable;
  const bool fits = reinterpret_cast<std::uintptr_t>(p) + bytes <= a->first + a->second.bytes;
  if (a->second.kind == Kind::Pinned) return fits ? Side::Pinned : Side::Bad;
  return fits ? Side::Device : Side::Bad;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost: return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice: return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost: return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice: return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault: return "cudaMemcpyDefault";
  }
  return "an invalid cudaMemcpyKind";
}

// Checks a copy's pointers against its kind; reports and returns false when they disagree.
bool check_copy(const char* call, void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, Side d,
                Side s) {
  const auto is_dev = [](Side x) { return x == Side::Device; };
  std::string why;
  if (d == Side::Bad || s == Side::Bad)
    why = std::string(d == Side::Bad ? "the destination " : "the source ") + "runs past the end of its allocation";
  else if ((kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) && !is_dev(d))
    why = "the destination is host memory";
  else if ((kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) && !is_dev(s))
    why = "the source is host memory";
  else if ((kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost) && is_dev(s))
    why = "the source is device memory";
  else if ((kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost) && is_dev(d))
    why = "the destination is device memory";
  else if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    why = "the kind is invalid";
  if (why.empty()) return true;
  report(std::string(call) + "(dst " + hex(dst) + ", src " + hex(src) + ", " + std::to_string(bytes) + " bytes, " +
         kind_name(kind) + "): " + why);
  return false;
}

// Runs a copy in stream order with CUDA's host-side semantics: pinned host memory is fully
// asynchronous; pageable memory is staged at the call (host to device) or waited for (to host).
cudaError_t copy(const char* call, void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                 cudaStream_t stream, bool sync) {
  if (bytes == 0) return sticky_error();
  if (!dst || !src) return cudaErrorInvalidValue;
  const Side d = classify(dst, bytes), s = classify(src, bytes);
  if (!check_copy(call, dst, src, bytes, kind, d, s)) return cudaErrorInvalidValue;
  cudaError_t e;
  if (s == Side::Pageable && d == Side::Device) {
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + bytes);
    e = enqueue(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    e = enqueue(stream, [dst, src, bytes] { std::memmove(dst, src, bytes); });
    sync = sync || d == Side::Pageable;
  }
  if (e == cudaSuccess && sync) e = cudaStreamSynchronize(stream);
  return e;
}

cudaError_t set(const char* call, void* p, int value, std::size_t bytes, cudaStream_t stream, bool sync) {
  if (bytes == 0) return sticky_error();
  if (!inside(Kind::Device, p, bytes)) {
    report(std::string(call) + "(" + hex(p) + ", " + std::to_string(bytes) +
           " bytes): not inside one device allocation");
    return cudaErrorInvalidValue;
  }
  cudaError_t e = enqueue(stream, [p, value, bytes] { std::memset(p, value, bytes); });
  if (e == cudaSuccess && sync) e = cudaStreamSynchronize(stream);
  return e;
}

}  // namespace

bool device_range(const void* p, std::size_t bytes) { return inside(Kind::Device, p, bytes); }

bool kernel_accessible(const void* p) {
  if (!p) return true;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (find(r, p)) return true;
  const void* before = static_cast<const char*>(p) - 1;  // one past the end of an allocation
  return find(r, before) != nullptr;
}

void fail_malloc_after(std::uint64_t n) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.fail_malloc_at = n ? r.malloc_calls + n : 0;
}
void fail_host_alloc_after(std::uint64_t n) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.fail_host_at = n ? r.host_calls + n : 0;
}
void set_memory_limit(std::size_t bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.limit = bytes ? bytes : env_memory_limit();
}
std::size_t device_bytes_in_use() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.device_bytes;
}

}  // namespace kiln_emu

using kiln_emu::sticky_error;

extern "C" {

cudaError_t cudaMalloc(void** p, std::size_t bytes) { return kiln_emu::allocate(p, bytes, kiln_emu::Kind::Device); }

cudaError_t cudaFree(void* p) {
  if (!p) return sticky_error();
  kiln_emu::synchronize_all();  // cudaFree waits for the device, as CUDA's does
  return kiln_emu::deallocate(p, kiln_emu::Kind::Device, "cudaFree");
}

cudaError_t cudaHostAlloc(void** p, std::size_t bytes, unsigned int flags) {
  if (flags & ~(cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined)) return cudaErrorInvalidValue;
  return kiln_emu::allocate(p, bytes, kiln_emu::Kind::Pinned);
}

cudaError_t cudaMallocHost(void** p, std::size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* p) { return kiln_emu::deallocate(p, kiln_emu::Kind::Pinned, "cudaFreeHost"); }

cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return cudaErrorInvalidValue;
  kiln_emu::Registry& r = kiln_emu::registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  *total_bytes = r.limit;
  *free_bytes = r.limit - r.device_bytes;
  return sticky_error();
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  return kiln_emu::copy("cudaMemcpy", dst, src, bytes, kind, nullptr, true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  return kiln_emu::copy("cudaMemcpyAsync", dst, src, bytes, kind, stream, false);
}

cudaError_t cudaMemset(void* p, int value, std::size_t bytes) {
  return kiln_emu::set("cudaMemset", p, value, bytes, nullptr, true);
}

cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t stream) {
  return kiln_emu::set("cudaMemsetAsync", p, value, bytes, stream, false);
}

}  // extern "C"

// The caching device allocator. Freed blocks go back to a free list of their device and stream,
// keyed by size, and are handed out again to the next request that fits; cudaMalloc is called only
// on a miss and cudaFree only when the cache is emptied (on demand, or to retry after an
// out-of-memory). In a steady training loop the same sizes recur, so after the first step every
// request is a cache hit. Reuse is stream-ordered: a block freed by the host while kernels on its
// stream still read it is safe to hand to the next kernel on the same stream.
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/op_scope.h"
#include "cuda/poison.h"
#include "cuda/runtime.h"
#include "kiln/cuda.h"
#include "kiln/error.h"

namespace kiln::cuda {

struct Block {
  void* ptr = nullptr;
  std::size_t size = 0;  // rounded size actually allocated
  int device = 0;
  cudaStream_t stream = nullptr;
  std::size_t requested = 0;  // bytes the current user asked for (EMULATE builds check the rest)
};

namespace {
constexpr std::size_t kSmallLimit = 1 << 20;  // below 1 MiB: 512-byte granularity
constexpr std::size_t kSmallRound = 512;
constexpr std::size_t kLargeRound = 2 << 20;  // above: 2 MiB granularity

std::size_t round_size(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  const std::size_t r = bytes < kSmallLimit ? kSmallRound : kLargeRound;
  return (bytes + r - 1) / r * r;
}

std::string human(std::size_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1ull << 30));
  else if (b >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1ull << 20));
  else
    std::snprintf(buf, sizeof buf, "%zu bytes", bytes);
  return buf;
}

struct DeviceCache {
  std::mutex mutex;
  // Free blocks ordered by (stream, size): lower_bound finds the smallest block that fits on a stream.
  std::multimap<std::pair<cudaStream_t, std::size_t>, Block*> free_blocks;
  AllocatorStats stats;
};

DeviceCache& cache(int device) {
  // Never destroyed: tensors released during static destruction must still find their cache.
  static DeviceCache* caches = new DeviceCache[64];
  KILN_CHECK(device >= 0 && device < 64, "CUDA device index ", device, " out of range");
  return caches[device];
}

// Frees every cached block of the device; the caller holds the mutex.
void flush(DeviceCache& c, int device) {
  if (c.free_blocks.empty()) return;
  DeviceGuard guard(device);
  KILN_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [key, b] : c.free_blocks) {
    unpoison(b->ptr, b->size);
    KILN_CUDA_WARN(cudaFree(b->ptr));
    c.stats.bytes_reserved -= b->size;
    ++c.stats.free_calls;
    delete b;
  }
  c.free_blocks.clear();
}
}  // namespace

Block* allocate(std::size_t bytes, int device, cudaStream_t stream) {
  const std::size_t size = round_size(bytes);
  DeviceCache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);

  // Best fit on the same stream, accepting at most 25% slack so large blocks are not wasted.
  auto it = c.free_blocks.lower_bound({stream, size});
  if (it != c.free_blocks.end() && it->first.first == stream && it->first.second <= size + size / 4) {
    Block* b = it->second;
    c.free_blocks.erase(it);
    ++c.stats.cache_hits;
    ++c.stats.allocations;
    c.stats.bytes_in_use += b->size;
    c.stats.peak_bytes_in_use = std::max(c.stats.peak_bytes_in_use, c.stats.bytes_in_use);
    b->requested = bytes;
    poison_on_allocate(b->ptr, b->size, bytes, stream);
    return b;
  }

  DeviceGuard guard(device);
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, size);
  const std::size_t cached = c.stats.bytes_reserved - c.stats.bytes_in_use;
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    flush(c, device);  // give the cached blocks back and try once more
    e = cudaMalloc(&ptr, size);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    const std::string msg = kiln::detail::str(
        "CUDA out of memory on cuda:", device, " in op '", kiln::detail::current_op(), "': tried to allocate ",
        human(size), "; ", human(free_b), " free of ", human(total_b), ", ", human(c.stats.bytes_in_use),
        " held by kiln tensors, ", human(cached), " cached by kiln's allocator (returned to the driver before a retry) (",
        cudaGetErrorString(e), "). Try a smaller batch size (--batch-size).");
    if (e == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
    throw Error(msg);
  }
  auto* b = new Block{ptr, size, device, stream, bytes};
  poison_on_allocate(ptr, size, bytes, stream);
  ++c.stats.malloc_calls;
  ++c.stats.allocations;
  c.stats.bytes_reserved += size;
  c.stats.bytes_in_use += size;
  c.stats.peak_bytes_in_use = std::max(c.stats.peak_bytes_in_use, c.stats.bytes_in_use);
  return b;
}

void* block_ptr(const Block* b) { return b->ptr; }

void release(Block* b) {
  if (!b) return;
  DeviceCache& c = cache(b->device);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.bytes_in_use -= b->size;
  poison_on_release(b->ptr, b->size, b->requested, b->stream, kiln::detail::current_op());
  c.free_blocks.emplace(std::make_pair(b->stream, b->size), b);
}

AllocatorStats allocator_stats(int device) {
  DeviceCache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void empty_cache(int device) {
  DeviceCache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  flush(c, device);
}

}  // namespace kiln::cuda

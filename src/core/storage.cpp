// Storage: host memory (64-byte aligned, optionally pinned) or a block from the CUDA caching allocator.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/host_memory.h"
#include "core/op_scope.h"
#include "core/tensor_impl.h"
#include "kiln/error.h"

#if defined(KILN_WITH_CUDA)
#include "cuda/runtime.h"
#endif

namespace kiln {

namespace {
constexpr std::size_t kHostAlign = 64;

// Host memory cache: like the device allocator, freed blocks wait in size-keyed free lists for the
// next request of the same rounded size, so a steady training loop on the CPU does no malloc/free
// (large blocks would otherwise be mmap'ed and page-faulted in afresh on every step).
class HostCache {
 public:
  static std::size_t round(std::size_t bytes) {
    const std::size_t r = bytes < (1u << 20) ? kHostAlign : (64u << 10);
    return bytes == 0 ? kHostAlign : (bytes + r - 1) / r * r;
  }
  void* get(std::size_t size) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        return p;
      }
    }
    if (!fits(size)) trim();
    if (!fits(size)) refuse(size, "would exceed");
    void* p = std::aligned_alloc(kHostAlign, size);
    if (!p) {
      trim();
      p = std::aligned_alloc(kHostAlign, size);
    }
    if (!p) refuse(size, "failed with");
    held_ += size;
    return p;
  }
  void put(void* p, std::size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_[size].push_back(p);
  }
  void trim() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, v] : free_)
      for (void* p : v) std::free(p), held_ -= size;
    free_.clear();
  }

 private:
  bool fits(std::size_t size) const {
    const std::size_t limit = detail::host_memory_limit();
    return size <= limit && held_.load() <= limit - size;
  }
  [[noreturn]] void refuse(std::size_t size, const char* what) const {
    const std::string op = detail::current_op();
    throw OutOfMemoryError(detail::str(
        "out of host memory", op == "(no op)" ? "" : " in op '" + op + "'", ": allocating ",
        detail::format_bytes(size), " more, with ", detail::format_bytes(held_.load()), " in use, ", what, " the ",
        detail::format_bytes(detail::host_memory_limit()),
        " limit (the machine's memory, its cgroup's limit, or KILN_HOST_MEMORY_LIMIT). Try a smaller batch size "
        "(--batch-size)."));
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::atomic<std::size_t> held_{0};  // bytes malloc'ed: in use plus waiting in the free lists
};

HostCache& host_cache() {
  static HostCache* cache = new HostCache();  // never destroyed: storages may outlive static teardown
  return *cache;
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(std::size_t bytes, Device device, bool pinned) {
  std::shared_ptr<Storage> s(new Storage());
  s->bytes_ = bytes;
  s->device_ = device;
  if (device.is_cpu()) {
#if defined(KILN_WITH_CUDA)
    if (pinned && cuda_available()) {
      s->data_ = cuda::pinned_alloc(HostCache::round(bytes));
      s->pinned_ = true;
      return s;
    }
#endif
    // Pinned memory is an optimisation for transfers: without a CUDA device, plain memory serves.
    s->data_ = host_cache().get(HostCache::round(bytes));
    return s;
  }
#if defined(KILN_WITH_CUDA)
  check_device_usable(device);
  auto* block = cuda::allocate(bytes, device.index, cuda::current_stream(device.index));
  s->block_ = block;
  s->data_ = cuda::block_ptr(block);
  return s;
#else
  (void)pinned;
  KILN_FAIL("cannot allocate on ", device.str(), ": kiln was built without CUDA");
#endif
}

Storage::~Storage() {
  if (!data_) return;
  if (device_.is_cpu()) {
#if defined(KILN_WITH_CUDA)
    if (pinned_) {
      cuda::pinned_free(data_);
      return;
    }
#endif
    host_cache().put(data_, HostCache::round(bytes_));
    return;
  }
#if defined(KILN_WITH_CUDA)
  cuda::release(static_cast<cuda::Block*>(block_));
#endif
}

}  // namespace kiln

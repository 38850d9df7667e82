// Storage: host memory (64-byte aligned, optionally pinned) or a block from the CUDA caching allocator.
#include <cstdlib>
#include <cstring>

#include "kiln/error.h"
#include "kiln/tensor.h"

#if defined(KILN_WITH_CUDA)
#include "cuda/runtime.h"
#endif

namespace kiln {

namespace {
constexpr std::size_t kHostAlign = 64;
}

std::shared_ptr<Storage> Storage::allocate(std::size_t bytes, Device device, bool pinned) {
  std::shared_ptr<Storage> s(new Storage());
  s->bytes_ = bytes;
  s->device_ = device;
  const std::size_t rounded = (bytes + kHostAlign - 1) / kHostAlign * kHostAlign;
  if (device.is_cpu()) {
#if defined(KILN_WITH_CUDA)
    if (pinned && cuda_available()) {
      s->data_ = cuda::pinned_alloc(rounded == 0 ? kHostAlign : rounded);
      s->pinned_ = true;
      return s;
    }
#endif
    // Pinned memory is an optimisation for transfers: without a CUDA device, plain memory serves.
    s->data_ = std::aligned_alloc(kHostAlign, rounded == 0 ? kHostAlign : rounded);
    if (!s->data_)
      throw OutOfMemoryError(detail::str("out of host memory allocating ", bytes, " bytes"));
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
    std::free(data_);
    return;
  }
#if defined(KILN_WITH_CUDA)
  cuda::release(static_cast<cuda::Block*>(block_));
#endif
}

}  // namespace kiln

// See poison.h. Compiled in KILN_CUDA=EMULATE builds only.
#include "cuda/poison.h"

#include <cstdint>
#include <cstring>
#include <string>

#include "cuda/check.h"
#include "kiln_emu/control.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KILN_ASAN 1
#endif
#if defined(KILN_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace kiln::cuda {

namespace {

constexpr unsigned char kCanary = 0xA5;
constexpr unsigned char kNaN = 0xFF;  // 0xFFFFFFFF is a NaN as float

struct Region {
  unsigned char* ptr;
  std::size_t size, requested;
  std::string op;  // the op that released the block
};

void queue(cudaStream_t stream, void (*fn)(void*), Region* r) { KILN_CUDA_WARN(cudaLaunchHostFunc(stream, fn, r)); }

void on_allocate(void* p) {
  auto* r = static_cast<Region*>(p);
#if defined(KILN_ASAN)
  ASAN_POISON_MEMORY_REGION(r->ptr, r->size);
  ASAN_UNPOISON_MEMORY_REGION(r->ptr, r->requested);
#else
  std::memset(r->ptr + r->requested, kCanary, r->size - r->requested);
#endif
  delete r;
}

void on_release(void* p) {
  auto* r = static_cast<Region*>(p);
#if defined(KILN_ASAN)
  ASAN_POISON_MEMORY_REGION(r->ptr, r->size);
#else
  for (std::size_t i = r->requested; i < r->size; ++i)
    if (r->ptr[i] != kCanary) {
      kiln_emu::fault("a kernel wrote past the end of a " + std::to_string(r->requested) +
                      "-byte device tensor (byte " + std::to_string(i) + " of its " + std::to_string(r->size) +
                      "-byte block changed); the tensor was released in op '" + r->op + "'");
      break;
    }
  std::memset(r->ptr, kNaN, r->size);
#endif
  delete r;
}

}  // namespace

void poison_on_allocate(void* ptr, std::size_t size, std::size_t requested, cudaStream_t stream) {
  queue(stream, &on_allocate, new Region{static_cast<unsigned char*>(ptr), size, requested, {}});
}

void poison_on_release(void* ptr, std::size_t size, std::size_t requested, cudaStream_t stream, const char* op) {
  queue(stream, &on_release, new Region{static_cast<unsigned char*>(ptr), size, requested, op ? op : ""});
}

void unpoison(void* ptr, std::size_t size) {
#if defined(KILN_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(ptr, size);
#else
  (void)ptr, (void)size;
#endif
}

}  // namespace kiln::cuda

// Guards for the caching allocator's blocks in KILN_CUDA=EMULATE builds, so that the emulated
// device catches what compute-sanitizer catches on a GPU: a kernel that writes past the end of its
// tensor into the block's rounding slack, or that uses a block after it went back to the cache.
//  - Under AddressSanitizer the slack and every cached block are poisoned, so the access is
//    reported at the kernel's line.
//  - Otherwise the slack holds a canary that is checked when the block is released, and a cached
//    block is filled with NaN, so a stale read shows as NaN.
// Both happen in stream order (a host function queued on the block's stream), since the host frees
// a block while kernels on that stream may still use it. In normal builds these are no-ops.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace kiln::cuda {

#if defined(KILN_CUDA_EMULATED)
void poison_on_allocate(void* ptr, std::size_t size, std::size_t requested, cudaStream_t stream);
void poison_on_release(void* ptr, std::size_t size, std::size_t requested, cudaStream_t stream, const char* op);
void unpoison(void* ptr, std::size_t size);
#else
inline void poison_on_allocate(void*, std::size_t, std::size_t, cudaStream_t) {}
inline void poison_on_release(void*, std::size_t, std::size_t, cudaStream_t, const char*) {}
inline void unpoison(void*, std::size_t) {}
#endif

}  // namespace kiln::cuda

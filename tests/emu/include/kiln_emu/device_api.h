// The emulated device's calls behind the builtins of kiln_emu/device.h (threadIdx, __syncthreads,
// warp shuffles, atomics), without the macros, so the emulator's own code can include it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace kiln_emu {

// The special registers of the running CUDA thread.
struct ThreadRegs {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern __thread const ThreadRegs* t_regs;

enum class WarpOp : std::uint8_t { ShflIdx, ShflUp, ShflDown, ShflXor, Sync, Ballot, Any, All };

// Blocks the calling fiber until every thread of its block reaches a barrier (reports divergence).
void syncthreads(const char* file, int line);
// A warp collective: blocks until every lane of `mask` arrives, returns this lane's result.
std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int param, int width, const char* file,
                              int line);

template <class T>
T shuffle(WarpOp op, unsigned mask, T var, int param, int width, const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_collective(op, mask, bits, param, width, file, line);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

template <class T>
T atomic_add(T* address, T value) {
  if constexpr (std::is_integral<T>::value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
  } else {  // float / double: a compare-and-swap loop on the bits, like hardware that lacks the op
    T old, desired;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
      desired = old + value;
    } while (!__atomic_compare_exchange(address, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
  }
}

}  // namespace kiln_emu

// The device side of the emulated CUDA device: what a kernel sees when kernels/*.cu is compiled as
// C++ by the host compiler (KILN_CUDA=EMULATE). CMake force-includes this header into every .cu
// file, so the kernels themselves are unchanged.
//
// Each CUDA thread runs on its own fiber (tests/emu/src/fiber.h); threads switch only where CUDA
// threads must meet: __syncthreads() and the warp collectives. __shared__ variables are
// thread_local statics: all the fibers of a block run on one OS thread, one block at a time, so
// they see one copy per block, as on a GPU.
#pragma once

// The toolkit's own headers first: in host mode they declare threadIdx & co. and the device
// intrinsics (with C linkage), which the macros and definitions below then replace.
#define __shared__ static thread_local
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kiln_emu/device_api.h"
#include "kiln_emu/launch.h"

using std::isfinite;
using std::isinf;
using std::isnan;

#define threadIdx (::kiln_emu::t_regs->thread_idx)
#define blockIdx (::kiln_emu::t_regs->block_idx)
#define blockDim (::kiln_emu::t_regs->block_dim)
#define gridDim (::kiln_emu::t_regs->grid_dim)
#define warpSize 32

#define __syncthreads() ::kiln_emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::kiln_emu::syncwarp_at(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(mask, var, lane, ...) \
  ::kiln_emu::shuffle(::kiln_emu::WarpOp::ShflIdx, mask, var, lane, ::kiln_emu::width_or_32(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_up_sync(mask, var, delta, ...) \
  ::kiln_emu::shuffle(::kiln_emu::WarpOp::ShflUp, mask, var, delta, ::kiln_emu::width_or_32(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_down_sync(mask, var, delta, ...) \
  ::kiln_emu::shuffle(::kiln_emu::WarpOp::ShflDown, mask, var, delta, ::kiln_emu::width_or_32(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_xor_sync(mask, var, lane_mask, ...) \
  ::kiln_emu::shuffle(::kiln_emu::WarpOp::ShflXor, mask, var, lane_mask, ::kiln_emu::width_or_32(__VA_ARGS__), __FILE__, __LINE__)
#define __ballot_sync(mask, pred) \
  static_cast<unsigned>(::kiln_emu::warp_collective(::kiln_emu::WarpOp::Ballot, mask, (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, pred) \
  static_cast<int>(::kiln_emu::warp_collective(::kiln_emu::WarpOp::Any, mask, (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, pred) \
  static_cast<int>(::kiln_emu::warp_collective(::kiln_emu::WarpOp::All, mask, (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))

namespace kiln_emu {
inline int width_or_32() { return 32; }
inline int width_or_32(int width) { return width; }
inline void syncwarp_at(const char* file, int line, unsigned mask = 0xffffffffu) {
  warp_collective(WarpOp::Sync, mask, 0, 0, 32, file, line);
}
}  // namespace kiln_emu

// Atomics: real ones (blocks of a grid run on several OS threads at once).
#define atomicAdd(address, value) ::kiln_emu::atomic_add(address, value)

// Intrinsics with CUDA's rounding. The host build has no FMA contraction (-ffp-contract=off), so a
// plain operation is the correctly rounded one.
extern "C" inline float __fmul_rn(float x, float y) { return x * y; }
extern "C" inline float __fadd_rn(float x, float y) { return x + y; }
extern "C" inline float __int_as_float(int x) {
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}
extern "C" inline int __float_as_int(float x) {
  int i;
  std::memcpy(&i, &x, sizeof i);
  return i;
}

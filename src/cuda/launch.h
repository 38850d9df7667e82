// Every kernel launch goes through kiln::cuda::launch: a <<<>>> launch followed by the launch check
// under nvcc, the emulated device (tests/emu) under the host compiler in KILN_CUDA=EMULATE builds.
// A failed launch throws a kiln::Error naming the launch site (file:line), the op and the reason.
//
//   launch(fill_kernel<T>, grid_for(n), kThreads, 0, stream, y, n, value);
//
// Device code only (kernels/*.cu): the header is included where the kernels are compiled.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda/check.h"

#if defined(KILN_CUDA_EMULATED)
#include "kiln_emu/launch.h"
#endif

namespace kiln::cuda {

// The grid of a launch, remembering where the launch was written (the default arguments are
// evaluated at the call site).
struct GridAt {
  GridAt(dim3 g, const char* f = __builtin_FILE(), int l = __builtin_LINE()) : dim(g), file(f), line(l) {}
  GridAt(unsigned g, const char* f = __builtin_FILE(), int l = __builtin_LINE()) : dim(g), file(f), line(l) {}
  dim3 dim;
  const char* file;
  int line;
};

namespace detail {
[[noreturn]] void fail_launch(const char* file, int line, cudaError_t e);

#if defined(KILN_CUDA_EMULATED)
// The kernel's pointer arguments, which the emulator checks point at device memory.
template <class T>
void collect_pointer(const void** out, std::size_t& n, const T& arg) {
  if constexpr (std::is_pointer<T>::value) out[n++] = static_cast<const void*>(arg);
}
#endif
}  // namespace detail

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), GridAt grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch: the kernel takes a different number of arguments");
#if defined(KILN_CUDA_EMULATED)
  // Each CUDA thread gets its own copy of the arguments, as from a GPU's parameter space.
  const std::tuple<std::decay_t<Params>...> params(static_cast<Params>(std::forward<Args>(args))...);
  const void* pointers[sizeof...(Params) + 1];
  std::size_t n = 0;
  std::apply([&](const auto&... p) { (detail::collect_pointer(pointers, n, p), ...); }, params);
  auto body = [kernel, params] { std::apply(kernel, params); };
  const cudaError_t e = kiln_emu::launch({grid.file, grid.line}, grid.dim, block, shared_bytes, stream, pointers, n,
                                         std::move(body));
#else
  kernel<<<grid.dim, block, shared_bytes, stream>>>(static_cast<Params>(std::forward<Args>(args))...);
  const cudaError_t e = cudaGetLastError();
#endif
  if (e != cudaSuccess) detail::fail_launch(grid.file, grid.line, e);
}

}  // namespace kiln::cuda

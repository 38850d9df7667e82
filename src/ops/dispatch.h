// KILN_DISPATCH(device, fn, args...): calls kiln::cpu::fn(args...) or kiln::cuda::fn(args...) by
// device — the one place where the CPU/CUDA choice is made. In a CPU-only build a CUDA tensor
// cannot exist, but the branch still reports clearly instead of silently doing nothing.
#pragma once

#include "backend/backend.h"
#include "core/op_scope.h"
#include "kiln/error.h"

#if defined(KILN_WITH_CUDA)
#include "cuda/runtime.h"
#define KILN_DISPATCH(device, fn, ...)                                                     \
  ((device).is_cpu() ? ::kiln::cpu::fn(__VA_ARGS__)                                        \
                     : (::kiln::cuda::set_device((device).index), ::kiln::cuda::fn(__VA_ARGS__)))
#else
#define KILN_DISPATCH(device, fn, ...) \
  ((device).is_cpu() ? ::kiln::cpu::fn(__VA_ARGS__) : KILN_FAIL(#fn ": kiln was built without CUDA"))
#endif

// The CPU and CUDA twins of every kernel, declared from one list (twins.inc). See ARCHITECTURE.md.
#pragma once

#include <cstdint>

#include "kiln/ops.h"
#include "kiln/schedule.h"
#include "kiln/tensor.h"

#define KILN_TWIN(name, bench, params) void name params;

namespace kiln::cpu {
#include "backend/twins.inc"
}  // namespace kiln::cpu

#if defined(KILN_WITH_CUDA)
namespace kiln::cuda {
#include "backend/twins.inc"
}  // namespace kiln::cuda
#endif

#undef KILN_TWIN

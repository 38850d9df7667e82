// Thread splitting shared by the CPU twins (src/cpu/ops.cpp, src/cpu/cnn.cpp).
#pragma once

#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace kiln::cpu {

// Below this many elements a loop runs on one thread: memory-bound loops gain little from a second
// thread, and OpenMP threads spinning beside OpenBLAS's own pool cost far more (a much lower threshold
// made MLP epochs several times slower; the figure is in bench/RESULTS.md).
constexpr std::int64_t kParallelMin = 1 << 20;

// Calls f(begin, end) over [0, n): once, or on contiguous ranges, one per OpenMP thread, when n is
// above kParallelMin. The loop bodies are plain functions over [begin, end) that the compiler
// vectorises.
template <class F>
void for_range(std::int64_t n, F&& f) {
#if defined(_OPENMP)
  if (n > kParallelMin) {
#pragma omp parallel
    {
      const std::int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
      f(n * t / T, n * (t + 1) / T);
    }
    return;
  }
#endif
  f(0, n);
}

}  // namespace kiln::cpu

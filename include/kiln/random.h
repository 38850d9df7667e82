// kiln/random.h — the counter-based RNG (Philox4x32-10) shared by the CPU and CUDA backends.
//
// Element i of a draw with (seed, offset) is a pure function of (seed, offset + i), so the same
// seed gives the same numbers on the CPU and the GPU, whatever the thread layout (uniform draws and
// dropout masks bit for bit; normal draws to within a rare last-bit difference, see normal()).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD inline
#endif

namespace kiln {
namespace philox {

struct U4 {
  std::uint32_t x, y, z, w;
};

KILN_HD std::uint32_t mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t* hi) {
  std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  *hi = static_cast<std::uint32_t>(p >> 32);
  return static_cast<std::uint32_t>(p);
}

// Philox4x32 with 10 rounds (Salmon et al., SC'11), the generator cuRAND and PyTorch use.
KILN_HD U4 philox4x32(std::uint64_t counter, std::uint64_t key) {
  U4 c{static_cast<std::uint32_t>(counter), static_cast<std::uint32_t>(counter >> 32), 0u, 0u};
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    std::uint32_t hi0, hi1;
    std::uint32_t lo0 = mulhilo(0xD2511F53u, c.x, &hi0);
    std::uint32_t lo1 = mulhilo(0xCD9E8D57u, c.z, &hi1);
    c = U4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float32).
KILN_HD float to_unit(std::uint32_t v) { return static_cast<float>(v >> 8) * (1.0f / 16777216.0f); }

KILN_HD float uniform(std::uint64_t seed, std::uint64_t index) {
  return to_unit(philox4x32(index, seed).x);
}

// Standard normal by Box-Muller on two uniforms of the same counter, computed in double. The CPU
// (glibc) and GPU (CUDA's 1-2 ulp double log/cos) results agree after rounding to float except, rarely
// (about 2^-28 per element), in the last bit; uniform() is bit-identical everywhere.
KILN_HD float normal(std::uint64_t seed, std::uint64_t index) {
  U4 r = philox4x32(index, seed);
  double u1 = (static_cast<double>(r.x >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]
  double u2 = static_cast<double>(r.y >> 8) * (1.0 / 16777216.0);
  return static_cast<float>(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

}  // namespace philox

// A seed plus a running offset: each draw consumes numel counters, so a sequence of draws is
// reproducible on any device and can be saved and restored (checkpoint RNG state).
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : seed_(seed) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t offset() const { return offset_; }
  void set_state(std::uint64_t seed, std::uint64_t offset) { seed_ = seed; offset_ = offset; }
  // Reserves n counters and returns the first.
  std::uint64_t advance(std::uint64_t n) { std::uint64_t o = offset_; offset_ += n; return o; }

 private:
  std::uint64_t seed_;
  std::uint64_t offset_ = 0;
};

}  // namespace kiln

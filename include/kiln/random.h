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

KILN_HD std::uint32_t word(const U4& r, unsigned k) { return k == 0 ? r.x : k == 1 ? r.y : k == 2 ? r.z : r.w; }

// Streams. Element `index` of a stream is word index % 4 of the Philox block index / 4, so one
// Philox call serves four consecutive elements (the fills and dropout draw a block at a time) and
// every 32-bit word belongs to exactly one element: draws at disjoint offsets never share a word.
KILN_HD float uniform(std::uint64_t seed, std::uint64_t index) {
  return to_unit(word(philox4x32(index >> 2, seed), static_cast<unsigned>(index & 3)));
}

// Standard normal by Box-Muller on two words: the element's word of the uniform stream's block and
// of the same block under a second key, computed in double. The CPU (glibc) and GPU (CUDA's 1-2 ulp
// double log/cos) results agree after rounding to float except, rarely (about 2^-28 per element), in
// the last bit; uniform() is bit-identical everywhere.
constexpr std::uint64_t kNormalKey = 0x9E3779B97F4A7C15ull;
KILN_HD float box_muller(std::uint32_t a, std::uint32_t b) {
  double u1 = (static_cast<double>(a >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]
  double u2 = static_cast<double>(b >> 8) * (1.0 / 16777216.0);
  return static_cast<float>(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
KILN_HD float normal(std::uint64_t seed, std::uint64_t index) {
  const unsigned k = static_cast<unsigned>(index & 3);
  return box_muller(word(philox4x32(index >> 2, seed), k), word(philox4x32(index >> 2, seed ^ kNormalKey), k));
}

// A draw of n elements at `offset` covers Philox blocks [first_block, first_block + block_count).
KILN_HD std::uint64_t first_block(std::uint64_t offset) { return offset >> 2; }
KILN_HD std::uint64_t block_count(std::uint64_t offset, std::uint64_t n) {
  return n == 0 ? 0 : ((offset + n - 1) >> 2) - (offset >> 2) + 1;
}
// Calls f(i, u) for each element i in [0, n) of the draw at `offset` that lies in `block`, with its
// uniform u (equal to uniform(seed, offset + i)): one Philox call for up to four elements.
template <class F>
KILN_HD void for_uniforms_in_block(std::uint64_t seed, std::uint64_t offset, std::uint64_t n, std::uint64_t block,
                                   F&& f) {
  const U4 r = philox4x32(block, seed);
  for (unsigned k = 0; k < 4; ++k) {
    const std::uint64_t g = block * 4 + k;
    if (g >= offset && g - offset < n) f(g - offset, to_unit(word(r, k)));
  }
}
// The same for normal(seed, offset + i): two Philox calls for up to four elements.
template <class F>
KILN_HD void for_normals_in_block(std::uint64_t seed, std::uint64_t offset, std::uint64_t n, std::uint64_t block,
                                  F&& f) {
  const U4 a = philox4x32(block, seed), b = philox4x32(block, seed ^ kNormalKey);
  for (unsigned k = 0; k < 4; ++k) {
    const std::uint64_t g = block * 4 + k;
    if (g >= offset && g - offset < n) f(g - offset, box_muller(word(a, k), word(b, k)));
  }
}

// Host loops over elements [begin, end) of the draw at `offset`: f(i, value) with value equal to
// uniform/normal(seed, offset + i). Whole blocks in the middle take one Philox call per four elements
// in a plain loop the compiler vectorises; the partial blocks at either end go element by element.
template <class F>
inline void for_uniforms(std::uint64_t seed, std::uint64_t offset, std::uint64_t begin, std::uint64_t end, F&& f) {
  std::uint64_t i = begin;
  for (; i < end && ((offset + i) & 3) != 0; ++i) f(i, uniform(seed, offset + i));
  const std::uint64_t full = (end - i) / 4, b0 = (offset + i) >> 2, i0 = i;
  for (std::uint64_t j = 0; j < full; ++j) {
    const U4 r = philox4x32(b0 + j, seed);
    const std::uint64_t e = i0 + 4 * j;
    f(e, to_unit(r.x));
    f(e + 1, to_unit(r.y));
    f(e + 2, to_unit(r.z));
    f(e + 3, to_unit(r.w));
  }
  for (i = i0 + 4 * full; i < end; ++i) f(i, uniform(seed, offset + i));
}
template <class F>
inline void for_normals(std::uint64_t seed, std::uint64_t offset, std::uint64_t begin, std::uint64_t end, F&& f) {
  std::uint64_t i = begin;
  for (; i < end && ((offset + i) & 3) != 0; ++i) f(i, normal(seed, offset + i));
  const std::uint64_t full = (end - i) / 4, b0 = (offset + i) >> 2, i0 = i;
  for (std::uint64_t j = 0; j < full; ++j) {
    const U4 a = philox4x32(b0 + j, seed), b = philox4x32(b0 + j, seed ^ kNormalKey);
    const std::uint64_t e = i0 + 4 * j;
    f(e, box_muller(a.x, b.x));
    f(e + 1, box_muller(a.y, b.y));
    f(e + 2, box_muller(a.z, b.z));
    f(e + 3, box_muller(a.w, b.w));
  }
  for (i = i0 + 4 * full; i < end; ++i) f(i, normal(seed, offset + i));
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

// kiln/random.h — the counter-based RNG (Philox4x32-10) shared by the CPU and CUDA backends.
//
// Element i of a draw with (seed, offset) is a pure function of (seed, offset + i), so the same
// seed gives the same numbers on the CPU and the GPU, whatever the thread layout (uniform draws and
// dropout masks bit for bit; normal draws to within a rare last-bit difference, see normal()).
#pragma once

#include <cmath>
#include <cstdint>

#include "kiln/host_device.h"

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

// The two streams, a Philox block (four consecutive elements) at a time.
struct Uniforms {
  std::uint64_t seed;
  KILN_HD float one(std::uint64_t index) const { return uniform(seed, index); }
  KILN_HD void block(std::uint64_t b, float v[4]) const {  // one Philox call
    const U4 r = philox4x32(b, seed);
    v[0] = to_unit(r.x), v[1] = to_unit(r.y), v[2] = to_unit(r.z), v[3] = to_unit(r.w);
  }
};
struct Normals {
  std::uint64_t seed;
  KILN_HD float one(std::uint64_t index) const { return normal(seed, index); }
  KILN_HD void block(std::uint64_t b, float v[4]) const {  // two Philox calls
    const U4 r = philox4x32(b, seed), q = philox4x32(b, seed ^ kNormalKey);
    v[0] = box_muller(r.x, q.x), v[1] = box_muller(r.y, q.y), v[2] = box_muller(r.z, q.z), v[3] = box_muller(r.w, q.w);
  }
};

// A draw of n elements at `offset` covers Philox blocks [first_block, first_block + block_count).
KILN_HD std::uint64_t first_block(std::uint64_t offset) { return offset >> 2; }
KILN_HD std::uint64_t block_count(std::uint64_t offset, std::uint64_t n) {
  return n == 0 ? 0 : ((offset + n - 1) >> 2) - (offset >> 2) + 1;
}

// Calls f(i, v) for each element i in [0, n) of the draw at `offset` that lies in `block`, where v is
// stream.one(offset + i): one block of the stream for up to four elements (a CUDA thread's work).
template <class Stream, class F>
KILN_HD void for_elements_in_block(const Stream& stream, std::uint64_t offset, std::uint64_t n, std::uint64_t block,
                                   F&& f) {
  float v[4];
  stream.block(block, v);
  for (unsigned k = 0; k < 4; ++k) {
    const std::uint64_t g = block * 4 + k;
    if (g >= offset && g - offset < n) f(g - offset, v[k]);
  }
}

// Host loops over elements [begin, end) of the draw at `offset`: f(i, stream.one(offset + i)). Whole
// blocks in the middle take one block of the stream per four elements in a plain loop the compiler
// vectorises; the partial blocks at either end go element by element.
template <class Stream, class F>
inline void for_elements(const Stream& stream, std::uint64_t offset, std::uint64_t begin, std::uint64_t end, F&& f) {
  std::uint64_t i = begin;
  for (; i < end && ((offset + i) & 3) != 0; ++i) f(i, stream.one(offset + i));
  const std::uint64_t full = (end - i) / 4, b0 = (offset + i) >> 2, i0 = i;
  for (std::uint64_t j = 0; j < full; ++j) {
    float v[4];
    stream.block(b0 + j, v);
    const std::uint64_t e = i0 + 4 * j;
    f(e, v[0]);
    f(e + 1, v[1]);
    f(e + 2, v[2]);
    f(e + 3, v[3]);
  }
  for (i = i0 + 4 * full; i < end; ++i) f(i, stream.one(offset + i));
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

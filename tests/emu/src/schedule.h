// The emulator's schedule: the order in which blocks start and CUDA threads take turns
// (KILN_EMU_SCHEDULE=forward|reverse|random:SEED), so that order-dependent bugs show up under one of
// them instead of passing by luck.
#pragma once

#include <cstdint>
#include <string>

namespace kiln_emu {

struct Schedule {
  enum Kind { Forward, Reverse, Random } kind = Forward;
  std::uint64_t seed = 0;
};

// The process's schedule: KILN_EMU_SCHEDULE, or set_schedule() (control.h).
Schedule current_schedule();
std::string schedule_name(const Schedule& s);

// A small deterministic generator (splitmix64) for shuffles.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }

 private:
  std::uint64_t s_;
};

}  // namespace kiln_emu

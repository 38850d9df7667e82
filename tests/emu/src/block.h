// One thread block of an emulated kernel: its CUDA threads as fibers, the block barrier and the warp
// collectives, and the scheduler that interleaves them in the order the schedule asks for.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fiber.h"
#include "kiln_emu/device_api.h"
#include "kiln_emu/launch.h"
#include "schedule.h"

namespace kiln_emu {

struct Site {
  const char* file = "";
  int line = 0;
};

// What a kernel launch gives each of its blocks.
struct GridSpec {
  LaunchSite site;
  dim3 grid, block;
  const std::function<void()>* body;  // the kernel with its arguments, run by every CUDA thread
  Schedule schedule;
};

enum class Wait : std::uint8_t { Ready, Barrier, Warp, Done };

struct CudaThread {
  ThreadRegs regs;
  Fiber fiber;
  Wait wait = Wait::Ready;
  Site site;  // the barrier or collective it waits at
  // A warp collective: the request, then the result.
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  std::uint64_t value = 0, result = 0;
  int param = 0, width = 32;
};

// Runs blocks on the calling OS thread, one at a time (its fibers' stacks are kept between blocks).
class BlockRunner {
 public:
  // Runs block `index` of the grid to completion; false with a diagnostic in `error` when the block
  // broke a rule (divergent barrier, bad warp collective, deadlock).
  bool run(const GridSpec& grid, uint3 index, std::string& error);

  // The fiber side (called from inside the running CUDA thread).
  static void barrier(Site site);
  static std::uint64_t collective(WarpOp op, unsigned mask, std::uint64_t value, int param, int width, Site site);

 private:
  static void thread_main(void* thread);
  void start_threads(uint3 index);
  bool sweep(bool& progressed);
  bool after_suspend(unsigned t);
  bool arrive_at_barrier(unsigned t);
  bool arrive_at_collective(unsigned t);
  void complete_collective(unsigned warp, unsigned mask);
  bool fail(const std::string& what);
  std::string deadlock() const;
  std::string who(unsigned t) const;
  unsigned lanes_in_warp(unsigned warp) const;

  const GridSpec* grid_ = nullptr;
  uint3 index_{};
  StackPool stacks_;
  std::vector<CudaThread> threads_;
  std::vector<unsigned> order_;
  unsigned done_ = 0, at_barrier_ = 0;
  unsigned first_done_ = 0;
  Site barrier_site_;
  Rng rng_;
  std::string* error_ = nullptr;
  bool dirty_stacks_ = false;  // a failed block left frames on the stacks
};

}  // namespace kiln_emu

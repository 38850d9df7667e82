// Fibers: one per CUDA thread of the block being run. A hand-written context switch (x86-64: the
// callee-saved registers, MXCSR and the x87 control word on the fiber's own stack), about 10 ns,
// where glibc's swapcontext makes a system call per switch; other architectures use ucontext.
// Under AddressSanitizer every switch is announced, so ASan follows the stacks.
#pragma once

#include <cstddef>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace kiln_emu {

struct Stack {
  void* base = nullptr;  // lowest usable address (a guard page lies below it)
  std::size_t size = 0;
};

class Fiber {
 public:
  // Prepares the fiber to run entry(arg) on `stack` when it is first resumed; entry must never
  // return: it ends with finish().
  void start(const Stack& stack, void (*entry)(void*), void* arg);
  // From the scheduler: runs the fiber until it suspends or finishes.
  void resume();
  // From inside the fiber: back to the scheduler (resume() returns).
  void suspend();
  // From inside the fiber, its last act: back to the scheduler for good.
  [[noreturn]] void finish();

 private:
  void* sp_ = nullptr;            // the fiber's saved stack pointer while it is suspended
  void* scheduler_sp_ = nullptr;  // the scheduler's while the fiber runs
  Stack stack_;
  void* fake_stack_ = nullptr;    // ASan's bookkeeping of the suspended side
  const void* scheduler_bottom_ = nullptr;
  std::size_t scheduler_size_ = 0;
  void (*entry_)(void*) = nullptr;
  void* arg_ = nullptr;
  friend void fiber_entry(Fiber*);
#if !defined(__x86_64__)
  ucontext_t context_, scheduler_context_;
#endif
};

// The stacks of one OS thread's fibers, mapped once (with guard pages) and reused by every block.
class StackPool {
 public:
  ~StackPool();
  const Stack& get(std::size_t i);

 private:
  std::vector<Stack> stacks_;
};

}  // namespace kiln_emu

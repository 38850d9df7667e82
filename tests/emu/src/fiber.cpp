#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KILN_EMU_ASAN 1
#endif
#if defined(KILN_EMU_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

namespace kiln_emu {

namespace {

#if defined(KILN_EMU_ASAN)
constexpr std::size_t kStackSize = 512 << 10;  // ASan's redzones make frames larger
#else
constexpr std::size_t kStackSize = 128 << 10;
#endif

void announce_switch(void** fake_stack, const void* bottom, std::size_t size) {
#if defined(KILN_EMU_ASAN)
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
  (void)fake_stack, (void)bottom, (void)size;
#endif
}

void arrived(void* fake_stack, const void** bottom, std::size_t* size) {
#if defined(KILN_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack, bottom, size);
#else
  (void)fake_stack, (void)bottom, (void)size;
#endif
}

}  // namespace

#if defined(__x86_64__)
// kiln_emu_switch(void** save_sp, void* load_sp): pushes the callee-saved state, stores rsp in
// *save_sp, loads load_sp and pops the other side's state. kiln_emu_trampoline starts a fiber:
// entry(arg) with entry in rbx and arg in r12 (placed there by Fiber::start).
extern "C" void kiln_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl kiln_emu_switch
  .type kiln_emu_switch, @function
kiln_emu_switch:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
  .size kiln_emu_switch, .-kiln_emu_switch

  .globl kiln_emu_trampoline
  .type kiln_emu_trampoline, @function
kiln_emu_trampoline:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  andq $-16, %rsp
  callq *%rbx
  ud2
  .cfi_endproc
  .size kiln_emu_trampoline, .-kiln_emu_trampoline
)");
extern "C" void kiln_emu_trampoline();
#endif

void fiber_entry(Fiber* f) {
  arrived(nullptr, &f->scheduler_bottom_, &f->scheduler_size_);
  f->entry_(f->arg_);
  std::fprintf(stderr, "kiln-emu: internal error: a fiber's entry returned\n");
  std::abort();
}

namespace {
void entry_thunk(void* p) { fiber_entry(static_cast<Fiber*>(p)); }
#if !defined(__x86_64__)
void entry_thunk_uc(unsigned hi, unsigned lo) {
  entry_thunk(reinterpret_cast<void*>((static_cast<std::uintptr_t>(hi) << 32) | lo));
}
#endif
}  // namespace

void Fiber::start(const Stack& stack, void (*entry)(void*), void* arg) {
  stack_ = stack;
  entry_ = entry;
  arg_ = arg;
  fake_stack_ = nullptr;
#if defined(__x86_64__)
  auto* top = reinterpret_cast<std::uint64_t*>(
      (reinterpret_cast<std::uintptr_t>(stack.base) + stack.size) & ~std::uintptr_t{15});
  std::uint64_t* sp = top - 9;
  sp[0] = 0x1F80u | (std::uint64_t{0x037F} << 32);        // MXCSR default, x87 control word default
  sp[1] = sp[2] = sp[3] = 0;                               // r15, r14, r13
  sp[4] = reinterpret_cast<std::uint64_t>(this);           // r12: the trampoline's argument
  sp[5] = reinterpret_cast<std::uint64_t>(&entry_thunk);   // rbx: what it calls
  sp[6] = 0;                                               // rbp
  sp[7] = reinterpret_cast<std::uint64_t>(&kiln_emu_trampoline);  // ret
  sp[8] = 0;
  sp_ = sp;
#else
  ucontext_t* uc = &context_;
  getcontext(uc);
  uc->uc_stack.ss_sp = stack.base;
  uc->uc_stack.ss_size = stack.size;
  uc->uc_link = nullptr;
  const auto p = reinterpret_cast<std::uintptr_t>(this);
  makecontext(uc, reinterpret_cast<void (*)()>(&entry_thunk_uc), 2, static_cast<unsigned>(p >> 32),
              static_cast<unsigned>(p));
#endif
}

void Fiber::resume() {
  void* fake = nullptr;
  announce_switch(&fake, stack_.base, stack_.size);
#if defined(__x86_64__)
  kiln_emu_switch(&scheduler_sp_, sp_);
#else
  swapcontext(&scheduler_context_, &context_);
#endif
  arrived(fake, nullptr, nullptr);
}

void Fiber::suspend() {
  announce_switch(&fake_stack_, scheduler_bottom_, scheduler_size_);
#if defined(__x86_64__)
  kiln_emu_switch(&sp_, scheduler_sp_);
#else
  swapcontext(&context_, &scheduler_context_);
#endif
  arrived(fake_stack_, &scheduler_bottom_, &scheduler_size_);
}

void Fiber::finish() {
  announce_switch(nullptr, scheduler_bottom_, scheduler_size_);  // null: this stack's frames are done
#if defined(__x86_64__)
  kiln_emu_switch(&sp_, scheduler_sp_);
#else
  swapcontext(&context_, &scheduler_context_);
#endif
  std::abort();  // never resumed
}

StackPool::~StackPool() {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  for (const Stack& s : stacks_) munmap(static_cast<char*>(s.base) - page, s.size + page);
}

const Stack& StackPool::get(std::size_t i) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  while (stacks_.size() <= i) {
    void* p = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "kiln-emu: cannot map a %zu KiB fiber stack\n", kStackSize >> 10);
      std::abort();
    }
    mprotect(p, page, PROT_NONE);  // a stack overflow faults instead of corrupting the next stack
    stacks_.push_back({static_cast<char*>(p) + page, kStackSize});
  }
  return stacks_[i];
}

}  // namespace kiln_emu

// Controls of the emulated CUDA device for tests: fault injection, a memory cap, the schedule, and
// the diagnostics it reports. The same settings come from the environment for whole programs:
//   KILN_EMU_SCHEDULE=forward|reverse|random:SEED  block order and thread interleaving
//   KILN_EMU_DELAY_US=N        each stream waits a random 0..N us before each operation (jitter)
//   KILN_EMU_MEMORY_MB=N       device memory size (cudaMalloc fails beyond it; cudaMemGetInfo)
//   KILN_EMU_FAIL_MALLOC=N     the N-th cudaMalloc fails with cudaErrorMemoryAllocation
//   KILN_EMU_FAIL_HOST_ALLOC=N the N-th cudaHostAlloc / cudaMallocHost fails
//   KILN_EMU_THREADS=N         OS threads that run blocks (default: the hardware threads)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln_emu {

// The n-th cudaMalloc from now fails (1: the next one); 0 turns it off.
void fail_malloc_after(std::uint64_t n);
// The same for cudaHostAlloc / cudaMallocHost.
void fail_host_alloc_after(std::uint64_t n);
// Device memory size in bytes (0: the default or KILN_EMU_MEMORY_MB).
void set_memory_limit(std::size_t bytes);
// Bytes currently held by cudaMalloc.
std::size_t device_bytes_in_use();

// "forward", "reverse" or "random:SEED" (throws std::invalid_argument on anything else).
void set_schedule(const std::string& spec);
std::string schedule();
// Maximum random delay before each stream operation, in microseconds (0: none).
void set_stream_delay_us(unsigned us);

// The last diagnostic the emulator reported (empty if none), and a reset of the list.
std::string last_diagnostic();
void clear_diagnostics();
// Clears the context's sticky error, which on a GPU only a new process would: for tests of the
// emulator's own failure reports.
void reset_device();

// A memory error found outside the emulator (kiln's allocator guards, src/cuda/poison.cpp): reported
// and the context fails with cudaErrorIllegalAddress, as under compute-sanitizer.
void fault(const std::string& msg);

// Kernels launched so far in this process.
std::uint64_t kernels_launched();

}  // namespace kiln_emu

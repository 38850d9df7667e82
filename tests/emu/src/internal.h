// The emulator's internal services, shared by its runtime, cuBLAS and cuDNN parts. Nothing outside
// tests/emu includes this.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

namespace kiln_emu {

// Queues `work` on `stream` (nullptr: the legacy default stream); it runs on the stream's worker
// thread after everything queued there before it. Returns the stream's sticky error, if any, else
// cudaSuccess (an invalid stream gives cudaErrorInvalidResourceHandle).
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work);

// Whether [p, p + bytes) lies inside one live device allocation (cudaMalloc).
bool device_range(const void* p, std::size_t bytes);

// Whether a kernel may dereference p: null, or inside (or one past) a device or pinned host
// allocation (pinned memory is mapped for the device, as with unified addressing).
bool kernel_accessible(const void* p);

// The calling thread's last error (cudaGetLastError), as a failed launch sets it.
void set_last_error(cudaError_t e);

// The context's sticky error (cudaSuccess while healthy).
cudaError_t sticky_error();

// Waits for all work queued on every stream.
void synchronize_all();

// An emulator diagnostic: printed on stderr as "kiln-emu: <msg>" and kept as the last diagnostic
// (kiln_emu::last_diagnostic() in control.h).
void report(const std::string& msg);

// Marks the device's context as failed (as a faulting kernel does on a GPU): every later runtime
// call returns `e` until kiln_emu::reset_device().
void fail_context(cudaError_t e, const std::string& msg);

}  // namespace kiln_emu

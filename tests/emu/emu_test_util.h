// Helpers of the emulator's self-tests: device buffers, a scoped schedule, and checks that a
// kernel's failure or a kiln::Error names what it should.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln_emu/control.h"

namespace kiln_emu_test {

template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : n_(host.size()) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  std::vector<T> read() const {
    std::vector<T> out(n_);
    EXPECT_EQ(cudaMemcpy(out.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_;
};

class ScheduleGuard {
 public:
  explicit ScheduleGuard(const std::string& s) : previous_(kiln_emu::schedule()) { kiln_emu::set_schedule(s); }
  ~ScheduleGuard() { kiln_emu::set_schedule(previous_); }

 private:
  std::string previous_;
};

inline void expect_contains(const std::string& text, std::initializer_list<std::string> parts, const std::string& what) {
  for (const std::string& p : parts)
    EXPECT_NE(text.find(p), std::string::npos) << what << ": \"" << text << "\" does not contain \"" << p << "\"";
}

// Runs f (which launches a kernel that breaks a rule), then expects the context to fail with
// cudaErrorLaunchFailure and the emulator's diagnostic to name `parts`; resets the device after.
inline void expect_kernel_failure(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  kiln_emu::clear_diagnostics();
  f();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
  expect_contains(kiln_emu::last_diagnostic(), parts, "diagnostic");
  kiln_emu::reset_device();
}

}  // namespace kiln_emu_test

// Runs f, expects a kiln::Error whose message names every one of `parts`.
template <class F>
void kt_expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no kiln::Error thrown";
  } catch (const kiln::Error& e) {
    kiln_emu_test::expect_contains(e.what(), parts, "error");
  }
}

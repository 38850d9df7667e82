// Self-tests of the emulated runtime: asynchronous in-order streams, events and stream waits,
// elapsed time, copies classified and checked against the registry, fault injection and the cap.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "emu_test_util.h"
#include "kiln_emu/control.h"

namespace {

struct DelayGuard {
  explicit DelayGuard(unsigned us) { kiln_emu::set_stream_delay_us(us); }
  ~DelayGuard() { kiln_emu::set_stream_delay_us(0); }
};

TEST(EmuRuntime, StreamsRunAsynchronouslyInOrder) {
  DelayGuard delay(3000);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  const std::size_t n = 1 << 16;
  void *dev = nullptr, *pinned = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, n), cudaSuccess);
  ASSERT_EQ(cudaHostAlloc(&pinned, n, cudaHostAllocDefault), cudaSuccess);
  std::memset(pinned, 0, n);
  for (int v = 1; v <= 5; ++v) ASSERT_EQ(cudaMemsetAsync(dev, v, n, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, dev, n, cudaMemcpyDeviceToHost, s), cudaSuccess);  // pinned: asynchronous
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s), cudaSuccess);
  EXPECT_EQ(static_cast<unsigned char*>(pinned)[n - 1], 5);  // the last memset, in order
  cudaFreeHost(pinned);
  cudaFree(dev);
  cudaStreamDestroy(s);
}

TEST(EmuRuntime, StreamWaitEventOrdersAcrossStreams) {
  DelayGuard delay(2000);
  cudaStream_t a, b;
  cudaEvent_t done;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), cudaSuccess);
  void *x, *y;
  std::vector<unsigned char> host(4096);
  ASSERT_EQ(cudaMalloc(&x, host.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, host.size()), cudaSuccess);
  for (int round = 1; round <= 4; ++round) {
    ASSERT_EQ(cudaMemsetAsync(x, round, host.size(), a), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(done, a), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(b, done, 0), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(y, x, host.size(), cudaMemcpyDeviceToDevice, b), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(host.data(), y, host.size(), cudaMemcpyDefault), cudaSuccess);  // waits: pageable
    ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(host.data(), y, host.size(), cudaMemcpyDeviceToHost, b), cudaSuccess);
    EXPECT_EQ(host[0], round);
    EXPECT_EQ(host.back(), round);
  }
  EXPECT_EQ(cudaEventSynchronize(done), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(done), cudaSuccess);
  float ms = 0;
  EXPECT_EQ(cudaEventElapsedTime(&ms, done, done), cudaErrorInvalidResourceHandle);  // timing disabled
  cudaFree(x);
  cudaFree(y);
  cudaEventDestroy(done);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST(EmuRuntime, ElapsedTimeMeasuresTheStreamsWork) {
  DelayGuard delay(5000);
  cudaStream_t s;
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaErrorInvalidResourceHandle);  // never recorded
  ASSERT_EQ(cudaEventRecord(start, s), cudaSuccess);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(cudaLaunchHostFunc(s, [](void*) {}, nullptr), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(stop, s), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaErrorNotReady);
  ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
  ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(s);
}

TEST(EmuRuntime, CopiesAreCheckedAgainstTheRegistry) {
  void* dev;
  ASSERT_EQ(cudaMalloc(&dev, 256), cudaSuccess);
  std::vector<char> host(512);
  kiln_emu::clear_diagnostics();
  EXPECT_EQ(cudaMemcpy(host.data(), host.data() + 256, 16, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_NE(kiln_emu::last_diagnostic().find("the destination is host memory"), std::string::npos);
  EXPECT_EQ(cudaMemcpy(dev, host.data(), 16, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(dev, host.data(), 512, cudaMemcpyHostToDevice), cudaErrorInvalidValue);  // past the end
  EXPECT_NE(kiln_emu::last_diagnostic().find("runs past the end"), std::string::npos);
  EXPECT_EQ(cudaMemcpy(dev, host.data(), 256, cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(cudaMemset(host.data(), 0, 8), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(dev), cudaSuccess);
}

TEST(EmuRuntime, NewDeviceMemoryReadsAsNaN) {
  float* dev;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dev), 64 * sizeof(float)), cudaSuccess);
  std::vector<float> host(64, 0.0f);
  ASSERT_EQ(cudaMemcpy(host.data(), dev, host.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : host) EXPECT_TRUE(std::isnan(v));
  cudaFree(dev);
}

TEST(EmuRuntime, MallocFailuresAndTheCapAreInjectable) {
  void* p = nullptr;
  kiln_emu::fail_malloc_after(2);
  ASSERT_EQ(cudaMalloc(&p, 64), cudaSuccess);
  cudaFree(p);
  EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaMalloc(&p, 64), cudaSuccess);  // only the one
  cudaFree(p);
  kiln_emu::fail_host_alloc_after(1);
  EXPECT_EQ(cudaHostAlloc(&p, 64, cudaHostAllocDefault), cudaErrorMemoryAllocation);
  kiln_emu::set_memory_limit(kiln_emu::device_bytes_in_use() + (1 << 20));
  std::size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  EXPECT_EQ(free_b, std::size_t{1} << 20);
  EXPECT_EQ(cudaMalloc(&p, 2 << 20), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaMalloc(&p, 1 << 19), cudaSuccess);
  cudaFree(p);
  kiln_emu::set_memory_limit(0);
}

TEST(EmuRuntime, OneDeviceThatSaysItIsEmulated) {
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 1);
  cudaDeviceProp p;
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_NE(std::string(p.name).find("emulated"), std::string::npos);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_STREQ(cudaGetErrorName(cudaErrorMemoryAllocation), "cudaErrorMemoryAllocation");
}

}  // namespace

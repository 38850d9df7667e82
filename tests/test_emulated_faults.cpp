// kiln's out-of-memory paths, driven by the emulated device's fault injection (KILN_CUDA=EMULATE
// builds; on a GPU or without CUDA these tests are not compiled in): the caching allocator's flush
// and retry, its error message, pinned-memory failures, and cuDNN's workspace fallback remembered in
// the plan. Names carry "gpu" for the ctest label.
#if defined(KILN_CUDA_EMULATED)
#include <string>

#include "backend/backend.h"
#include "kiln/cuda.h"
#include "kiln_emu/control.h"
#include "test_util.h"

namespace {

using namespace kt;

struct LimitGuard {  // no cudaMalloc succeeds beyond what is allocated now
  LimitGuard() { kiln_emu::set_memory_limit(kiln_emu::device_bytes_in_use()); }
  ~LimitGuard() { kiln_emu::set_memory_limit(0); }
};

TEST(EmulatedFaults, AFailedCudaMallocIsRetriedAfterTheCacheIsFlushed_gpu) {
  { Tensor warm = Tensor::empty({3 << 18}, DType::Float32, Device::cuda(0)); }  // leaves a cached block
  const kiln::cuda::AllocatorStats before = kiln::cuda::allocator_stats(0);
  ASSERT_GT(before.bytes_reserved, before.bytes_in_use) << "nothing cached to flush";
  kiln_emu::fail_malloc_after(1);
  Tensor t = Tensor::empty({5 << 18}, DType::Float32, Device::cuda(0));  // a size the cache cannot serve
  kiln::fill_(t, 2.0f);
  EXPECT_EQ(t.to(Device::cpu()).to_vector<float>()[0], 2.0f);
  EXPECT_GT(kiln::cuda::allocator_stats(0).free_calls, before.free_calls) << "the cache was not flushed";
}

TEST(EmulatedFaults, OutOfMemoryNamesTheRequestAndTheCache_gpu) {
  { Tensor warm = Tensor::empty({1 << 18}, DType::Float32, Device::cuda(0)); }
  LimitGuard limit;
  expect_error_naming([] { Tensor::empty({64 << 20}, DType::Float32, Device::cuda(0)); },
                      {"CUDA out of memory on cuda:0", "tried to allocate 256.00 MiB", "free of",
                       "held by kiln tensors", "cached by kiln's allocator", "--batch-size"},
                      "a 256 MiB tensor beyond the device's memory");
  try {
    Tensor::empty({64 << 20}, DType::Float32, Device::cuda(0));
  } catch (const kiln::OutOfMemoryError&) {
    SUCCEED();
  } catch (...) {
    ADD_FAILURE() << "not an OutOfMemoryError";
  }
}

TEST(EmulatedFaults, PinnedMemoryFailureIsAnOutOfMemoryError_gpu) {
  kiln_emu::fail_host_alloc_after(1);
  expect_error_naming([] { Tensor::empty({1 << 20}, DType::UInt8, Device::cpu(), /*pinned=*/true); },
                      {"pinned host memory", "--workers"}, "a failed cudaHostAlloc");
}

TEST(EmulatedFaults, CudnnWorkspaceFallbackIsRememberedByThePlan_gpu) {
  const Device gpu = Device::cuda(0);
  const Tensor x_cpu = randn_cpu({2, 3, 11, 10}, 41), w_cpu = randn_cpu({4, 3, 3, 3}, 42);
  kiln::Conv2dParams p;
  p.pad_h = 1, p.pad_w = 2, p.stride_h = 1, p.stride_w = 1;  // a shape no other test plans
  const Tensor x = x_cpu.to(gpu), w = w_cpu.to(gpu);
  const Tensor want = kiln::conv2d(x_cpu, w_cpu, Tensor(), p);
  Tensor y = Tensor::empty(want.shape(), DType::Float32, gpu);
  const auto allocations = [] { return kiln::cuda::allocator_stats(0).allocations; };
  // A sum of 27 products of standard normals: |terms| add up to about 17; 30 bounds it generously.
  const double atol = reduction_rtol(27) * 30;

  kiln::cuda::conv2d_forward(x, w, p, y);  // plans: the fastest algorithm needs a workspace
  std::uint64_t n = allocations();
  kiln::cuda::conv2d_forward(x, w, p, y);
  ASSERT_EQ(allocations(), n + 1) << "the planned algorithm needs no workspace: nothing to fall back from";

  kiln::cuda::empty_cache(0);
  {
    LimitGuard limit;  // the workspace cannot be allocated now
    kiln::fill_(y, 0.0f);
    kiln::cuda::conv2d_forward(x, w, p, y);
    expect_close(y.to(Device::cpu()), want, reduction_rtol(27), atol, "conv2d after the workspace fallback");
  }
  n = allocations();
  kiln::cuda::conv2d_forward(x, w, p, y);
  EXPECT_EQ(allocations(), n) << "the plan did not remember the fallback: it asked for a workspace again";
  expect_close(y.to(Device::cpu()), want, reduction_rtol(27), atol, "conv2d with the remembered algorithm");
}

}  // namespace
#endif

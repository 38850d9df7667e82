// Self-tests of the emulated device's execution model: block barriers (and their divergence
// reports), warp shuffles lane by lane, atomics, CUDA's launch limits and pointer checks, under
// every schedule. Compiled like kernels/*.cu: as C++ with kiln_emu/device.h first.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common.cuh"
#include "cuda/launch.h"
#include "emu_test_util.h"
#include "kiln/error.h"
#include "kiln_emu/control.h"

namespace {

using kiln::cuda::launch;
using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::ScheduleGuard;

__global__ void block_sum_kernel(const double* x, double* out, int n) {
  __shared__ double smem[33];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const double s = kiln::cuda::dev::block_sum(i < n ? x[i] : 0.0, smem);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

TEST(EmuDevice, BlockSumIsExactUnderEverySchedule) {
  const int n = 1000, threads = 256, blocks = (n + threads - 1) / threads;
  std::vector<double> x(n);
  for (int i = 0; i < n; ++i) x[i] = i % 7 - 3;
  for (const char* schedule : {"forward", "reverse", "random:1", "random:2"}) {
    ScheduleGuard guard(schedule);
    DeviceBuffer<double> dx(x), dout(std::vector<double>(blocks, -1));
    launch(block_sum_kernel, blocks, threads, 0, nullptr, dx.get(), dout.get(), n);
    const std::vector<double> out = dout.read();
    for (int b = 0; b < blocks; ++b) {
      double want = 0;
      for (int i = b * threads; i < std::min(n, (b + 1) * threads); ++i) want += x[i];
      EXPECT_EQ(out[b], want) << "block " << b << " under " << schedule;
    }
  }
}

__global__ void early_exit_kernel(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void two_barriers_kernel(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(EmuDevice, DivergentBarriersAreReportedWithTheirSite) {
  DeviceBuffer<int> out(std::vector<int>(64, 0));
  kiln_emu_test::expect_kernel_failure([&] { launch(early_exit_kernel, 1, 64, 0, nullptr, out.get()); },
                                       {"thread (5,0,0)", "exited", "__syncthreads()", "test_emu_device.cu:"});
  kiln_emu_test::expect_kernel_failure([&] { launch(two_barriers_kernel, 1, 64, 0, nullptr, out.get()); },
                                       {"waits at __syncthreads() at", "while 32 threads wait", "block (0,0,0)"});
}

// Each lane records what every shuffle flavour returns to it.
__global__ void shuffle_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  int* o = out + threadIdx.x * 8;
  o[0] = __shfl_xor_sync(0xffffffffu, lane, 5);
  o[1] = __shfl_xor_sync(0xffffffffu, lane, 12, 8);
  o[2] = __shfl_down_sync(0xffffffffu, lane, 3);
  o[3] = __shfl_down_sync(0xffffffffu, lane, 3, 8);
  o[4] = __shfl_up_sync(0xffffffffu, lane, 2);
  o[5] = __shfl_up_sync(0xffffffffu, lane, 2, 16);
  o[6] = __shfl_sync(0xffffffffu, lane, (lane * 7) % 32);
  o[7] = __shfl_sync(0xffffffffu, lane, lane + 3, 4);
}

TEST(EmuDevice, ShufflesFollowCudasLaneRules) {
  for (const char* schedule : {"forward", "reverse", "random:7"}) {
    ScheduleGuard guard(schedule);
    DeviceBuffer<int> out(std::vector<int>(64 * 8, -1));
    launch(shuffle_kernel, 1, 64, 0, nullptr, out.get());
    const std::vector<int> o = out.read();
    for (int t = 0; t < 64; ++t) {
      const int l = t & 31;
      const auto seg = [&](int w) { return l & ~(w - 1); };
      const int want[8] = {
          l ^ 5,
          (l ^ 12) >= seg(8) + 8 ? l : (l ^ 12),  // a higher segment: own value
          l + 3 < 32 ? l + 3 : l,
          l + 3 < seg(8) + 8 ? l + 3 : l,
          l - 2 >= 0 ? l - 2 : l,
          l - 2 >= seg(16) ? l - 2 : l,
          (l * 7) % 32,
          seg(4) + ((l + 3) & 3),
      };
      for (int k = 0; k < 8; ++k) EXPECT_EQ(o[t * 8 + k], want[k]) << "thread " << t << " shuffle " << k << " " << schedule;
    }
  }
}

// Warps of one block loop a different number of times, each iteration a full-warp reduction.
__global__ void trip_count_kernel(double* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  double acc = 0;
  for (int it = 0; it <= warp; ++it) acc += kiln::cuda::dev::warp_sum(lane + it);
  if (lane == 0) out[warp] = acc;
}

TEST(EmuDevice, WarpsMayRunDifferentTripCounts) {
  DeviceBuffer<double> out(std::vector<double>(4, 0));
  launch(trip_count_kernel, 1, 128, 0, nullptr, out.get());
  const std::vector<double> o = out.read();
  for (int w = 0; w < 4; ++w) {
    double want = 0;
    for (int it = 0; it <= w; ++it) want += 496 + 32 * it;  // sum of lane + it over 32 lanes
    EXPECT_EQ(o[w], want) << "warp " << w;
  }
}

__global__ void partial_warp_kernel(int* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1); }

TEST(EmuDevice, MasksNamingMissingLanesAreReported) {
  DeviceBuffer<int> out(std::vector<int>(48, 0));
  kiln_emu_test::expect_kernel_failure([&] { launch(partial_warp_kernel, 1, 48, 0, nullptr, out.get()); },
                                       {"__shfl_xor_sync", "names lanes that do not exist", "16 threads"});
}

__global__ void count_kernel(unsigned long long* count, float* total) {
  atomicAdd(count, 1ull);
  atomicAdd(total, 0.5f);
}

TEST(EmuDevice, AtomicsAreRealAcrossBlocks) {
  DeviceBuffer<unsigned long long> count(std::vector<unsigned long long>(1, 0));
  DeviceBuffer<float> total(std::vector<float>(1, 0));
  launch(count_kernel, 64, 128, 0, nullptr, count.get(), total.get());
  EXPECT_EQ(count.read()[0], 64u * 128u);
  EXPECT_EQ(total.read()[0], 64 * 128 * 0.5f);  // exact: multiples of 0.5 below 2^24
}

__global__ void touch_kernel(float* y) { y[0] = 1.0f; }

TEST(EmuDevice, LaunchLimitsAreCudasAndNameTheSite) {
  DeviceBuffer<float> y(std::vector<float>(1, 0));
  for (dim3 block : {dim3(1025), dim3(0), dim3(1, 1, 65), dim3(64, 32)}) {
    kt_expect_error([&] { launch(touch_kernel, 1, block, 0, nullptr, y.get()); },
                    {"kernel launch failed at", "test_emu_device.cu:", "invalid configuration argument"});
  }
  kt_expect_error([&] { launch(touch_kernel, dim3(1, 65536), 32, 0, nullptr, y.get()); },
                  {"invalid configuration argument"});
  kt_expect_error([&] { launch(touch_kernel, 0u, 32, 0, nullptr, y.get()); }, {"invalid configuration argument"});
}

TEST(EmuDevice, AHostPointerGivenToAKernelIsAnError) {
  float host = 0;
  kiln_emu::clear_diagnostics();
  kt_expect_error([&] { launch(touch_kernel, 1, 1, 0, nullptr, &host); }, {"kernel launch failed", "invalid argument"});
  EXPECT_NE(kiln_emu::last_diagnostic().find("pointer argument 1"), std::string::npos) << kiln_emu::last_diagnostic();
  EXPECT_EQ(host, 0.0f);
}

#if defined(__SANITIZE_ADDRESS__)
// Under KILN_SANITIZE=address,undefined (as in CI): compute-sanitizer's memcheck, on the CPU.
__global__ void read_past_end_kernel(const float* x, float* y, int n) { y[0] = x[n]; }
__global__ void misaligned_float4_kernel(const float* x, float* y) { y[0] = reinterpret_cast<const float4*>(x + 1)->x; }

void run_bad_kernel(bool misaligned) {
  float *x = nullptr, *y = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&x), 16 * sizeof(float));
  cudaMalloc(reinterpret_cast<void**>(&y), sizeof(float));
  if (misaligned) launch(misaligned_float4_kernel, 1, 1, 0, nullptr, x, y);
  else launch(read_past_end_kernel, 1, 1, 0, nullptr, x, y, 16);
  cudaDeviceSynchronize();
}

TEST(EmuDeviceDeathTest, OutOfBoundsKernelAccessIsReportedAtTheKernelsLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_bad_kernel(false), "heap-buffer-overflow.*read_past_end_kernel.*test_emu_device.cu");
}

TEST(EmuDeviceDeathTest, MisalignedFloat4IsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_bad_kernel(true), "misaligned address");
}
#endif

}  // namespace

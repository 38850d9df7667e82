// kiln/host_device.h — KILN_HD marks a function compiled for the host and, under nvcc, for the device
// too: one definition keeps the CPU and CUDA twins computing the same thing.
#pragma once

#if defined(__CUDACC__)
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD inline
#endif

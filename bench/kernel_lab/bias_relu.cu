// Kernel lab: the epilogue of a linear layer, y = relu(x + bias[c]) for x [N, C] (row-major), a
// purely memory-bound elementwise kernel: 8 bytes moved per 2 flops.
//
// Variants:
//   1  naive: one thread per element, 64-bit flat index, column from i % C.
//   2  grid-stride loop: one wave of blocks (SMs x resident blocks per SM) loops over the array.
//   3  float4: the grid-stride loop moves 16 bytes per load/store (needs C % 4 == 0).
//   4  2D grid: blockIdx.x/threadIdx.x pick a float4 column, blockIdx.y strides over rows; the bias
//      float4 is loaded once into registers, no division or modulo, four rows in flight per thread.
//   5  what kiln runs today: the linear layer's in-place bias_add (kernels/elementwise.cu: float4,
//      2D grid, bias in registers, like 4 but one row in flight) followed by the ReLU module's float4
//      map: two passes over memory (needs C % 4 == 0; kiln falls back to a scalar kernel otherwise).
//
// ReLU is kiln's: x < 0 ? 0 : x (NaN stays NaN). Effective bandwidth counts read x, read bias,
// write y once; variant 5's second pass is its cost.
//
//   ./lab_bias_relu [--variant N|all] [--size NxC] [--repeat R]     (default 8192x4096)
#include "common.cuh"

namespace {

using klab::ceil_div;

__device__ __forceinline__ float relu(float v) { return v < 0.0f ? 0.0f : v; }
__device__ __forceinline__ float4 bias_relu4(float4 a, float4 b) {
  return make_float4(relu(a.x + b.x), relu(a.y + b.y), relu(a.z + b.z), relu(a.w + b.w));
}

struct Problem {
  long long N = 0, C = 0;
  const float* x = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
};

constexpr int kThreads = 256;

// ---- variant 1: one thread per element -----------------------------------------------------------
__global__ void bias_relu_naive(const float* __restrict__ x, const float* __restrict__ bias, float* __restrict__ y,
                                long long n, long long C) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = relu(x[i] + bias[i % C]);
}

// ---- variant 2: grid-stride loop -----------------------------------------------------------------
__global__ void bias_relu_grid_stride(const float* __restrict__ x, const float* __restrict__ bias,
                                      float* __restrict__ y, long long n, long long C) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = relu(x[i] + bias[i % C]);
}

// ---- variant 3: float4 grid-stride ---------------------------------------------------------------
// C % 4 == 0: the four elements of a float4 share a row, and bias + 4 * (i4 % C4) is aligned.
__global__ void bias_relu_vec4(const float4* __restrict__ x, const float4* __restrict__ bias, float4* __restrict__ y,
                               long long n4, long long C4) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride)
    y[i] = bias_relu4(x[i], bias[i % C4]);
}

// ---- variant 4: 2D grid, bias in registers, 4 rows in flight -------------------------------------
__global__ void __launch_bounds__(kThreads) bias_relu_2d(const float4* __restrict__ x, const float4* __restrict__ bias,
                                                         float4* __restrict__ y, long long N, long long C4) {
  const long long col = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= C4) return;
  const float4 b = bias[col];
  const long long gy = gridDim.y;
  long long r = blockIdx.y;
  // Four independent 16-byte loads issued before the first store: more bytes in flight per thread.
  for (; r + 3 * gy < N; r += 4 * gy) {
    const float4 a0 = x[r * C4 + col];
    const float4 a1 = x[(r + gy) * C4 + col];
    const float4 a2 = x[(r + 2 * gy) * C4 + col];
    const float4 a3 = x[(r + 3 * gy) * C4 + col];
    y[r * C4 + col] = bias_relu4(a0, b);
    y[(r + gy) * C4 + col] = bias_relu4(a1, b);
    y[(r + 2 * gy) * C4 + col] = bias_relu4(a2, b);
    y[(r + 3 * gy) * C4 + col] = bias_relu4(a3, b);
  }
  for (; r < N; r += gy) y[r * C4 + col] = bias_relu4(x[r * C4 + col], b);
}

// ---- variant 5: kiln today (kernels/elementwise.cu), two launches --------------------------------
// kiln's bias_add for inner == 1 (bias_add_rows_vec4_kernel): a 2-D grid, x over float4 columns in
// blocks of 128, y over rows (grid.y = min(rows, 65535)), the bias float4 in registers. No
// __restrict__ (kiln's kernels allow in-place use, as here).
__global__ void kiln_bias_add_rows_vec4_kernel(const float4* x, const float4* bias, float4* y, long long rows,
                                               long long C4) {
  const long long c4 = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c4 >= C4) return;
  const float4 b = bias[c4];
  for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
    const float4 v = x[r * C4 + c4];
    y[r * C4 + c4] = make_float4(v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w);
  }
}

__global__ void kiln_relu_vec4_kernel(const float* x, float* y, long long n) {
  const long long n4 = n / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long t = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (long long i = t; i < n4; i += stride) {
    const float4 a = x4[i];
    y4[i] = make_float4(relu(a.x), relu(a.y), relu(a.z), relu(a.w));
  }
  for (long long i = 4 * n4 + t; i < n; i += stride) y[i] = relu(x[i]);
}

unsigned kiln_grid_for(long long n, unsigned block) {
  long long g = (n + block - 1) / block;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

// ---- launch helpers ---------------------------------------------------------------------------------
// One full wave: SMs x the number of `kernel`'s blocks of kThreads that fit on one SM.
template <class Kernel>
unsigned one_wave(Kernel kernel) {
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  return static_cast<unsigned>(std::max(1, per_sm) * klab::sm_count());
}

void launch_v1(const Problem& p) {
  const long long n = p.N * p.C;
  bias_relu_naive<<<static_cast<unsigned>(ceil_div(n, kThreads)), kThreads>>>(p.x, p.bias, p.y, n, p.C);
}
void launch_v2(const Problem& p) {
  static const unsigned grid = one_wave(bias_relu_grid_stride);
  bias_relu_grid_stride<<<grid, kThreads>>>(p.x, p.bias, p.y, p.N * p.C, p.C);
}
void launch_v3(const Problem& p) {
  static const unsigned grid = one_wave(bias_relu_vec4);
  bias_relu_vec4<<<grid, kThreads>>>(reinterpret_cast<const float4*>(p.x), reinterpret_cast<const float4*>(p.bias),
                                     reinterpret_cast<float4*>(p.y), p.N * p.C / 4, p.C / 4);
}
void launch_v4(const Problem& p) {
  static const unsigned wave = one_wave(bias_relu_2d);
  const long long C4 = p.C / 4;
  const unsigned gx = static_cast<unsigned>(ceil_div(C4, kThreads));
  // About one wave of blocks in all; each thread then walks N / gy rows.
  const long long gy = std::max<long long>(1, std::min<long long>({static_cast<long long>(wave / gx), p.N, 65535LL}));
  bias_relu_2d<<<dim3(gx, static_cast<unsigned>(gy)), kThreads>>>(reinterpret_cast<const float4*>(p.x),
                                                                   reinterpret_cast<const float4*>(p.bias),
                                                                   reinterpret_cast<float4*>(p.y), p.N, C4);
}
void launch_v5(const Problem& p) {
  const long long n = p.N * p.C, C4 = p.C / 4;
  const dim3 grid(static_cast<unsigned>(ceil_div(C4, 128)), static_cast<unsigned>(std::min<long long>(p.N, 65535)));
  kiln_bias_add_rows_vec4_kernel<<<grid, 128>>>(reinterpret_cast<const float4*>(p.x),
                                                 reinterpret_cast<const float4*>(p.bias),
                                                 reinterpret_cast<float4*>(p.y), p.N, C4);
  LAUNCH_CHECK();
  kiln_relu_vec4_kernel<<<kiln_grid_for((n + 3) / 4, kThreads), kThreads>>>(p.y, p.y, n);
}

bool needs_c4(const Problem& p) { return p.C % 4 == 0; }
bool always(const Problem&) { return true; }

struct Variant {
  int id;
  const char* name;
  bool (*supported)(const Problem&);
  void (*launch)(const Problem&);
};

const Variant kVariants[] = {
    {1, "naive: thread per element, i % C", always, launch_v1},
    {2, "grid-stride loop, one wave", always, launch_v2},
    {3, "float4 grid-stride (C%4==0)", needs_c4, launch_v3},
    {4, "float4, 2D grid, bias in registers", needs_c4, launch_v4},
    {5, "kiln: float4 2D bias_add + float4 relu (2 passes)", needs_c4, launch_v5},
};

const char* kUsage =
    "usage: lab_bias_relu [--variant N|all] [--size NxC] [--repeat R]\n"
    "  y = relu(x + bias[c]) over x [N, C]; default 8192x4096, repeat 20\n"
    "  variants: 1 naive, 2 grid-stride, 3 float4, 4 float4 + 2D grid + bias in registers,\n"
    "            5 kiln's unfused bias_add + relu\n";

}  // namespace

int main(int argc, char** argv) {
  const klab::Args args = klab::parse_args(argc, argv, kUsage);
  if (args.variant > 5) klab::die("--variant: 1..5 or all");
  const auto d = klab::parse_dims(args.sizes.empty() ? std::string("8192x4096") : args.sizes.back(), 2, "--size NxC");
  const long long N = d[0], C = d[1];
  if (C / 4 > 65535LL * kThreads || ceil_div(N * C, kThreads) > 0x7fffffffLL) klab::die("--size: too large");
  const size_t n = static_cast<size_t>(N * C);

  klab::print_device_info();
  klab::L2Flush flush;
  const double copy_gbs = klab::measure_copy_bandwidth_gbs(args.repeat, flush);
  std::printf("ceiling: device-to-device cudaMemcpy %.1f GB/s (read + write); L2 flush %.0f MiB\n", copy_gbs,
              flush.bytes() / 1048576.0);
  std::printf("\nbias + relu, x [%lld, %lld]\n", N, C);

  const std::vector<float> hx = klab::random_uniform(n, -1.0f, 1.0f, 7);
  const std::vector<float> hb = klab::random_uniform(static_cast<size_t>(C), -0.5f, 0.5f, 8);
  std::vector<float> ref(n);
  for (size_t i = 0; i < n; ++i) {
    const float v = hx[i] + hb[i % static_cast<size_t>(C)];
    ref[i] = v < 0.0f ? 0.0f : v;
  }
  klab::DeviceBuffer<float> x(n), bias(static_cast<size_t>(C)), y(n);
  x.upload(hx);
  bias.upload(hb);
  const Problem p{N, C, x.get(), bias.get(), y.get()};

  // One float addition rounded once on both sides (no FMA can form): the result must be exact.
  const double bytes = 2.0 * static_cast<double>(n) * sizeof(float) + static_cast<double>(C) * sizeof(float);
  std::printf("  tolerance: exact (one IEEE float add on both sides); effective bytes %.2f MB\n", bytes / 1e6);
  klab::print_table_header("GB/s", "% copy BW");
  bool all_ok = true;
  for (const Variant& v : kVariants) {
    if (args.variant != 0 && args.variant != v.id) continue;
    if (!v.supported(p)) {
      klab::print_table_row(std::to_string(v.id), v.name, "skip", 0, 0, 0);
      continue;
    }
    y.poison();
    v.launch(p);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> gy = y.download();
    if (!klab::validate_result(gy.data(), ref.data(), n, 0.0, 0.0, "y", static_cast<size_t>(C))) {
      all_ok = false;
      klab::print_table_row(std::to_string(v.id), v.name, "FAIL", 0, 0, 0);
      continue;
    }
    const double ms = klab::time_median_ms([&] { v.launch(p); }, args.repeat, flush);
    const double gbs = klab::gb_per_s(bytes, ms);
    klab::print_table_row(std::to_string(v.id), v.name, "ok", ms, gbs, 100.0 * gbs / copy_gbs);
  }
  std::printf("\n%s\n", all_ok ? "all checks passed" : "SOME CHECKS FAILED");
  return all_ok ? 0 : 1;
}

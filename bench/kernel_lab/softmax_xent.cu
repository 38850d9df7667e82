// Kernel lab: fused softmax cross-entropy, forward and backward, over the rows of logits x [N, C]
// with int32 labels:
//   loss[r]     = lse(x[r]) - x[r, label[r]],   lse = max + log(sum(exp(x - max)))
//   dlogits[r]  = (softmax(x[r]) - onehot(label[r])) / N
// (the gradient of the mean loss). An out-of-range label makes the row's loss and gradient NaN,
// as in kiln; a row whose max is +-inf gets lse = max, as in kiln.
//
// Variants:
//   1  one thread per row: three serial passes per row; neighbouring threads read addresses C
//      floats apart (uncoalesced) and N = 4096 rows make only 4096 threads.
//   2  one block (256 threads) per row: coalesced strided loops, max and sum reduced through a
//      shared-memory tree (log2(256) barriers each).
//   3  kiln's design (kernels/softmax.cu): one warp per row, xor-shuffle reductions in double,
//      forward kernel writes loss and lse; then kiln's separate elementwise backward kernel reads x
//      and lse again (two launches, timed together).
//   4  one warp per row, float4 loads, online softmax (running max and rescaled sum in one pass,
//      merged across lanes with shuffles), loss and gradient in the same kernel. float4 needs
//      C % 4 == 0 (every row 16-byte aligned); otherwise the same kernel runs with scalar loads.
//
// Effective bandwidth counts the compulsory traffic only: read x and labels, write loss and
// dlogits. Variant 3's extra traffic (lse, second read of x) is its cost, not counted as work.
//
//   ./lab_softmax_xent [--variant N|all] [--size NxC]... [--repeat R]
// Default sizes: 4096x1000 (ImageNet-like classifier) and 4096x10 (MNIST).
#include "common.cuh"

namespace {

using klab::ceil_div;

__device__ __forceinline__ float nan_f() { return __int_as_float(0x7fc00000); }

struct Problem {
  int N = 0, C = 0;
  const float* x = nullptr;
  const int* labels = nullptr;
  float* loss = nullptr;
  float* dx = nullptr;
  float* lse = nullptr;          // scratch for variant 3 (kiln writes lse for its backward)
  const float* dloss = nullptr;  // device scalar 1.0 (kiln's backward reads dloss[0])
  float g = 0.0f;                // gradient scale 1/N
};

// ---- variant 1: one thread per row ---------------------------------------------------------------
__global__ void xent_thread_per_row(const float* __restrict__ x, const int* __restrict__ labels,
                                    float* __restrict__ loss, float* __restrict__ dx, int N, int C, float g) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= N) return;
  const float* xr = x + static_cast<size_t>(r) * C;
  float* dr = dx + static_cast<size_t>(r) * C;
  float m = -INFINITY;
  for (int c = 0; c < C; ++c) m = fmaxf(m, xr[c]);
  float lse = m;
  if (!isinf(m)) {
    float s = 0.0f;
    for (int c = 0; c < C; ++c) s += expf(xr[c] - m);
    lse = m + logf(s);
  }
  const int label = labels[r];
  const bool ok = label >= 0 && label < C;
  loss[r] = ok ? lse - xr[label] : nan_f();
  for (int c = 0; c < C; ++c) dr[c] = ok ? (expf(xr[c] - lse) - (c == label ? 1.0f : 0.0f)) * g : nan_f();
}

// ---- variant 2: one block per row, shared-memory tree reductions ---------------------------------
constexpr int kV2Threads = 256;

template <int BS>
__global__ void __launch_bounds__(BS) xent_block_per_row(const float* __restrict__ x, const int* __restrict__ labels,
                                                         float* __restrict__ loss, float* __restrict__ dx, int N,
                                                         int C, float g) {
  static_assert((BS & (BS - 1)) == 0, "tree reduction needs a power-of-two block");
  __shared__ float red[BS];
  const int r = blockIdx.x;  // grid = N blocks: r < N, uniform across the block
  const int t = threadIdx.x;
  const float* xr = x + static_cast<size_t>(r) * C;
  float* dr = dx + static_cast<size_t>(r) * C;

  float m = -INFINITY;
  for (int c = t; c < C; c += BS) m = fmaxf(m, xr[c]);
  red[t] = m;
  __syncthreads();
  for (int s = BS / 2; s > 0; s >>= 1) {
    if (t < s) red[t] = fmaxf(red[t], red[t + s]);
    __syncthreads();
  }
  m = red[0];
  __syncthreads();  // everyone has read red[0] before it is overwritten below

  float sum = 0.0f;
  if (!isinf(m)) {  // uniform across the block: m is the reduced value
    for (int c = t; c < C; c += BS) sum += expf(xr[c] - m);
  }
  red[t] = sum;
  __syncthreads();
  for (int s = BS / 2; s > 0; s >>= 1) {
    if (t < s) red[t] += red[t + s];
    __syncthreads();
  }
  const float lse = isinf(m) ? m : m + logf(red[0]);

  const int label = labels[r];
  const bool ok = label >= 0 && label < C;
  if (t == 0) loss[r] = ok ? lse - xr[label] : nan_f();
  for (int c = t; c < C; c += BS) dr[c] = ok ? (expf(xr[c] - lse) - (c == label ? 1.0f : 0.0f)) * g : nan_f();
}

// ---- variant 3: kiln's kernels (kernels/softmax.cu, G == 32 path, int32 labels) ------------------
// Copied with the block-per-row branch (C > 1024) and the int64 label template dropped.
constexpr int kKilnWarpBlockThreads = 256;
constexpr int kKilnThreads = 256;

__device__ __forceinline__ double kiln_warp_allreduce_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double kiln_warp_allreduce_max(double v) {
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__global__ void kiln_softmax_xent_kernel(const float* x, const int* labels, float* losses, float* lse, int64_t N,
                                         int64_t C) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < N; r += stride) {
    const float* xr = x + r * C;
    const int t = threadIdx.x & 31;
    float m = -INFINITY;
    for (int64_t c = t; c < C; c += 32) m = fmaxf(m, xr[c]);
    m = static_cast<float>(kiln_warp_allreduce_max(m));
    float ls = 0.0f;
    if (!isinf(m)) {
      double s = 0.0;
      for (int64_t c = t; c < C; c += 32) s += expf(xr[c] - m);
      s = kiln_warp_allreduce_sum(s);
      ls = static_cast<float>(log(s));
    }
    if (t == 0) {
      const float l = m + ls;
      const long long label = static_cast<long long>(labels[r]);
      lse[r] = l;
      losses[r] = (label >= 0 && label < C) ? l - xr[label] : nan_f();
    }
  }
}

__global__ void kiln_softmax_xent_backward_kernel(const float* x, const int* labels, const float* lse,
                                                  const float* dloss, float s, float* dx, int64_t N, int64_t C) {
  const float g = dloss[0] * s;
  const int64_t total = N * C;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += stride) {
    const int64_t r = j / C;
    const int64_t c = j - r * C;
    const long long label = static_cast<long long>(labels[r]);
    float v;
    if (label < 0 || label >= C) {
      v = nan_f();
    } else {
      const float p = expf(x[j] - lse[r]);
      v = (p - (c == label ? 1.0f : 0.0f)) * g;
    }
    dx[j] = v;
  }
}

unsigned kiln_capped(long long blocks) {
  const long long cap = 65535LL * 8;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// ---- variant 4: warp per row, float4 loads, online softmax, fused backward -----------------------
constexpr int kV4Threads = 256;  // 8 rows per block

// Adds one value to a lane's running (max m, sum s of exp(x - m)).
__device__ __forceinline__ void online_add(float& m, float& s, float v) {
  if (v > m) {
    s *= expf(m - v);  // expf(-inf) = 0 when m is still -inf
    m = v;
  }
  if (m != -INFINITY) s += expf(v - m);  // all -inf so far: nothing to add (and avoids -inf - -inf)
}

// Four values at once: one rescale for the group, then four exps.
__device__ __forceinline__ void online_add4(float& m, float& s, float4 v) {
  const float mx = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
  if (mx > m) {
    s *= expf(m - mx);
    m = mx;
  }
  if (m != -INFINITY) s += (expf(v.x - m) + expf(v.y - m)) + (expf(v.z - m) + expf(v.w - m));
}

// Merges (m2, s2) into (m, s): both sums rescaled to the larger max.
__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  const float a = (m == -INFINITY) ? 0.0f : s * expf(m - mn);
  const float b = (m2 == -INFINITY) ? 0.0f : s2 * expf(m2 - mn);
  m = mn;
  s = a + b;
}

__device__ __forceinline__ float xent_grad(float v, float lse, int c, int label, bool ok, float g) {
  return ok ? (expf(v - lse) - (c == label ? 1.0f : 0.0f)) * g : nan_f();
}

template <bool VEC4>
__global__ void __launch_bounds__(kV4Threads) xent_warp_online(const float* __restrict__ x,
                                                               const int* __restrict__ labels,
                                                               float* __restrict__ loss, float* __restrict__ dx,
                                                               int N, int C, float g) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= N) return;  // r is uniform across the warp: whole warps leave, the shuffles stay full
  const float* xr = x + static_cast<size_t>(r) * C;
  float* dr = dx + static_cast<size_t>(r) * C;

  // Pass 1: per-lane online (max, sum), then an xor butterfly so every lane holds the row's.
  float m = -INFINITY, s = 0.0f;
  if constexpr (VEC4) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    const int C4 = C >> 2;
    for (int i = lane; i < C4; i += 32) online_add4(m, s, x4[i]);
  } else {
    for (int c = lane; c < C; c += 32) online_add(m, s, xr[c]);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  const float lse = isinf(m) ? m : m + logf(s);

  const int label = labels[r];
  const bool ok = label >= 0 && label < C;
  if (lane == 0) loss[r] = ok ? lse - xr[label] : nan_f();

  // Pass 2: the gradient. The row was just read by this warp, so it comes from L1/L2, not DRAM.
  if constexpr (VEC4) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    float4* d4 = reinterpret_cast<float4*>(dr);
    const int C4 = C >> 2;
    for (int i = lane; i < C4; i += 32) {
      const float4 v = x4[i];
      const int c = 4 * i;
      d4[i] = make_float4(xent_grad(v.x, lse, c, label, ok, g), xent_grad(v.y, lse, c + 1, label, ok, g),
                          xent_grad(v.z, lse, c + 2, label, ok, g), xent_grad(v.w, lse, c + 3, label, ok, g));
    }
  } else {
    for (int c = lane; c < C; c += 32) dr[c] = xent_grad(xr[c], lse, c, label, ok, g);
  }
}

// ---- variant table --------------------------------------------------------------------------------
struct Variant {
  int id;
  const char* name;
  void (*launch)(const Problem&);
};

void launch_v1(const Problem& p) {
  constexpr int threads = 128;
  xent_thread_per_row<<<static_cast<unsigned>(ceil_div(p.N, threads)), threads>>>(p.x, p.labels, p.loss, p.dx, p.N,
                                                                                    p.C, p.g);
}
void launch_v2(const Problem& p) {
  xent_block_per_row<kV2Threads><<<static_cast<unsigned>(p.N), kV2Threads>>>(p.x, p.labels, p.loss, p.dx, p.N, p.C,
                                                                              p.g);
}
void launch_v3(const Problem& p) {
  const long long N = p.N, C = p.C;
  kiln_softmax_xent_kernel<<<kiln_capped(ceil_div(N, kKilnWarpBlockThreads / 32)), kKilnWarpBlockThreads>>>(
      p.x, p.labels, p.loss, p.lse, N, C);
  LAUNCH_CHECK();
  kiln_softmax_xent_backward_kernel<<<kiln_capped(ceil_div(N * C, kKilnThreads)), kKilnThreads>>>(
      p.x, p.labels, p.lse, p.dloss, p.g, p.dx, N, C);
}
void launch_v4(const Problem& p) {
  const unsigned grid = static_cast<unsigned>(ceil_div(p.N, kV4Threads / 32));
  if (p.C % 4 == 0) {
    xent_warp_online<true><<<grid, kV4Threads>>>(p.x, p.labels, p.loss, p.dx, p.N, p.C, p.g);
  } else {
    xent_warp_online<false><<<grid, kV4Threads>>>(p.x, p.labels, p.loss, p.dx, p.N, p.C, p.g);
  }
}

const Variant kVariants[] = {
    {1, "thread per row", launch_v1},
    {2, "block per row, smem tree reduce", launch_v2},
    {3, "kiln: warp/row (double) + bwd kernel", launch_v3},
    {4, "warp/row, float4, online softmax", launch_v4},
};

// ---- CPU reference (double) -----------------------------------------------------------------------
void cpu_reference(const std::vector<float>& x, const std::vector<int>& labels, int N, int C,
                   std::vector<double>& loss, std::vector<double>& dx) {
  loss.assign(static_cast<size_t>(N), 0.0);
  dx.assign(static_cast<size_t>(N) * C, 0.0);
  for (int r = 0; r < N; ++r) {
    const float* xr = x.data() + static_cast<size_t>(r) * C;
    double m = -INFINITY;
    for (int c = 0; c < C; ++c) m = std::max(m, static_cast<double>(xr[c]));
    double s = 0.0;
    for (int c = 0; c < C; ++c) s += std::exp(xr[c] - m);
    const double lse = m + std::log(s);
    const int label = labels[static_cast<size_t>(r)];
    loss[static_cast<size_t>(r)] = lse - xr[label];
    for (int c = 0; c < C; ++c)
      dx[static_cast<size_t>(r) * C + c] = (std::exp(xr[c] - lse) - (c == label ? 1.0 : 0.0)) / N;
  }
}

bool run_case(int N, int C, const klab::Args& args, klab::L2Flush& flush, double copy_gbs) {
  std::printf("\nsoftmax cross-entropy fwd+bwd, N = %d rows, C = %d classes\n", N, C);
  const size_t n = static_cast<size_t>(N) * C;
  const float xmax = 5.0f;
  const std::vector<float> hx = klab::random_uniform(n, -xmax, xmax, 1234 + static_cast<uint64_t>(C));
  std::vector<int> hlabels(static_cast<size_t>(N));
  klab::Rng rng(99 + static_cast<uint64_t>(N));
  for (auto& l : hlabels) l = rng.below(C);
  std::vector<double> ref_loss, ref_dx;
  cpu_reference(hx, hlabels, N, C, ref_loss, ref_dx);

  klab::DeviceBuffer<float> x(n), loss(static_cast<size_t>(N)), dx(n), lse(static_cast<size_t>(N)), dloss(1);
  klab::DeviceBuffer<int> labels(static_cast<size_t>(N));
  x.upload(hx);
  labels.upload(hlabels);
  dloss.upload(std::vector<float>{1.0f});
  Problem p;
  p.N = N;
  p.C = C;
  p.x = x.get();
  p.labels = labels.get();
  p.loss = loss.get();
  p.dx = dx.get();
  p.lse = lse.get();
  p.dloss = dloss.get();
  p.g = 1.0f / static_cast<float>(N);

  // Tolerance from float32 precision: the per-lane float sums of C exponentials carry relative
  // error ~sqrt(C) eps, and x - lse loses ~eps |lse| <= eps (|x|max + log C) in absolute terms,
  // which becomes relative error in exp(x - lse). The gradient's absolute floor is scaled by 1/N
  // because its values are.
  const double tol =
      8.0 * FLT_EPSILON * (std::sqrt(static_cast<double>(C)) + xmax + std::log(static_cast<double>(C)) + 1.0);
  const double bytes = 2.0 * static_cast<double>(n) * sizeof(float) + 2.0 * N * 4.0;
  std::printf("  tolerance: rtol %.2e (loss atol %.2e, dlogits atol %.2e); effective bytes %.2f MB\n", tol, tol,
              tol / N, bytes / 1e6);
  klab::print_table_header("GB/s", "% copy BW");

  bool all_ok = true;
  for (const Variant& v : kVariants) {
    if (args.variant != 0 && args.variant != v.id) continue;
    std::string name = v.name;
    if (v.id == 4 && C % 4 != 0) name = "warp/row, online softmax (scalar ld)";
    loss.poison();
    dx.poison();
    lse.poison();
    v.launch(p);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> gl = loss.download();
    const std::vector<float> gd = dx.download();
    bool ok = klab::validate_result(gl.data(), ref_loss.data(), gl.size(), tol, tol, "loss");
    ok = klab::validate_result(gd.data(), ref_dx.data(), gd.size(), tol, tol / N, "dlogits", static_cast<size_t>(C)) &&
         ok;
    if (!ok) {
      all_ok = false;
      klab::print_table_row(std::to_string(v.id), name, "FAIL", 0, 0, 0);
      continue;
    }
    const double ms = klab::time_median_ms([&] { v.launch(p); }, args.repeat, flush);
    const double gbs = klab::gb_per_s(bytes, ms);
    klab::print_table_row(std::to_string(v.id), name, "ok", ms, gbs, 100.0 * gbs / copy_gbs);
  }
  return all_ok;
}

const char* kUsage =
    "usage: lab_softmax_xent [--variant N|all] [--size NxC]... [--repeat R]\n"
    "  fused softmax cross-entropy forward + backward over logits [N, C], int32 labels\n"
    "  variants: 1 thread per row, 2 block per row (shared-memory reductions),\n"
    "            3 kiln's warp per row + elementwise backward, 4 warp per row float4 + online softmax\n"
    "  default sizes: 4096x1000 and 4096x10; default repeat 20\n";

}  // namespace

int main(int argc, char** argv) {
  const klab::Args args = klab::parse_args(argc, argv, kUsage);
  if (args.variant > 4) klab::die("--variant: 1..4 or all");
  std::vector<std::pair<int, int>> cases;
  if (args.sizes.empty()) {
    cases = {{4096, 1000}, {4096, 10}};
  } else {
    for (const auto& s : args.sizes) {
      const auto d = klab::parse_dims(s, 2, "--size NxC");
      if (d[0] > (1LL << 30) || d[1] > (1LL << 30) || d[0] * d[1] > (1LL << 31) - 1)
        klab::die("--size %s: N * C must fit in int32", s.c_str());
      cases.emplace_back(static_cast<int>(d[0]), static_cast<int>(d[1]));
    }
  }
  klab::print_device_info();
  klab::L2Flush flush;
  const double copy_gbs = klab::measure_copy_bandwidth_gbs(args.repeat, flush);
  std::printf("ceiling: device-to-device cudaMemcpy %.1f GB/s (read + write); L2 flush %.0f MiB\n", copy_gbs,
              flush.bytes() / 1048576.0);
  bool ok = true;
  for (const auto& c : cases) ok = run_case(c.first, c.second, args, flush, copy_gbs) && ok;
  std::printf("\n%s\n", ok ? "all checks passed" : "SOME CHECKS FAILED");
  return ok ? 0 : 1;
}

// Kernel lab: 3x3 stride-2 max pooling forward with argmax, NCHW, no padding: AlexNet's first pool
// (x [256, 64, 55, 55] -> y, argmax [256, 64, 27, 27]). argmax is the int32 flat index h * W + w
// of the winner inside its input plane, as kiln's max_pool2d_forward writes it (the backward
// scatters through it).
//
// Every variant scans a window in the same order (rows, then columns) with kiln's rule: a value
// wins when it is greater than the best so far, or is the first NaN; ties keep the first. So values
// and indices must match the CPU reference exactly (random floats do tie now and then).
//
// Variants:
//   1  kiln's kernel (kernels/cnn.cu): one thread per output, 64-bit grid-stride loop, general
//      window clipping (padding support), plain loads.
//   2  one thread per output, int32 index math, __ldg (read-only/texture path), the 3x3 window
//      fully unrolled with no clipping (valid because padding is 0).
//   3  each thread computes 4 neighbouring outputs along W: they share columns (stride 2, window
//      3), so 3 x 9 loads feed 4 windows instead of 3 x 12; the columns live in registers.
//
// Effective bandwidth: read x once, write y and argmax once.
//
//   ./lab_max_pool [--variant N|all] [--size NxCxHxW] [--repeat R]    (default 256x64x55x55)
#include "common.cuh"

namespace {

using klab::ceil_div;

constexpr int kThreads = 256;
constexpr int kK = 3;  // window
constexpr int kS = 2;  // stride

struct Problem {
  int N = 0, C = 0, H = 0, W = 0, P = 0, Q = 0;
  const float* x = nullptr;
  float* y = nullptr;
  int* argmax = nullptr;
  long long outputs() const { return static_cast<long long>(N) * C * P * Q; }
  long long inputs() const { return static_cast<long long>(N) * C * H * W; }
};

__host__ __device__ __forceinline__ bool is_nan(float v) { return v != v; }
__host__ __device__ __forceinline__ bool wins(float v, float best) {
  return v > best || (is_nan(v) && !is_nan(best));
}

// ---- variant 1: kiln's kernel (kernels/cnn.cu) -----------------------------------------------------
struct PoolGeom {
  long long H, W, P, Q;
  long long kh, kw, sh, sw, ph, pw;
};

__device__ __forceinline__ long long min64(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long max64(long long a, long long b) { return a > b ? a : b; }

__device__ __forceinline__ void kiln_max_pool_elem(const float* x, const PoolGeom& g, long long o, float* best_out,
                                                   int* index_out) {
  const long long j = o % g.Q;
  const long long i = (o / g.Q) % g.P;
  const long long plane = o / (g.P * g.Q);
  const float* xp = x + plane * g.H * g.W;
  const long long h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  const long long hs = max64(h0, 0), he = min64(h0 + g.kh, g.H);
  const long long ws = max64(w0, 0), we = min64(w0 + g.kw, g.W);
  float best = -INFINITY;
  long long bi = hs * g.W + ws;
  for (long long h = hs; h < he; ++h)
    for (long long w = ws; w < we; ++w) {
      const float v = xp[h * g.W + w];
      if (v > best || (is_nan(v) && !is_nan(best))) {
        best = v;
        bi = h * g.W + w;
      }
    }
  *best_out = best;
  *index_out = static_cast<int>(bi);
}

__global__ void kiln_max_pool2d_forward_kernel(const float* x, float* y, int* argmax, long long n, PoolGeom g) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long o = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride) {
    float v;
    int idx;
    kiln_max_pool_elem(x, g, o, &v, &idx);
    y[o] = v;
    argmax[o] = idx;
  }
}

// ---- variant 2: thread per output, int32 math, __ldg, unrolled window ---------------------------
__global__ void __launch_bounds__(kThreads) max_pool_ldg(const float* __restrict__ x, float* __restrict__ y,
                                                         int* __restrict__ argmax, int total, int H, int W, int P,
                                                         int Q) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= total) return;
  const int q = o % Q;
  const int t = o / Q;
  const int p = t % P;
  const int plane = t / P;
  const float* xp = x + plane * (H * W);
  const int h0 = kS * p, w0 = kS * q;
  float best = -INFINITY;
  int bi = h0 * W + w0;
#pragma unroll
  for (int kh = 0; kh < kK; ++kh) {
#pragma unroll
    for (int kw = 0; kw < kK; ++kw) {
      const int idx = (h0 + kh) * W + w0 + kw;
      const float v = __ldg(xp + idx);
      if (wins(v, best)) {
        best = v;
        bi = idx;
      }
    }
  }
  y[o] = best;
  argmax[o] = bi;
}

// ---- variant 3: V outputs per thread along W, shared columns in registers --------------------------
constexpr int kV = 4;

template <int V>
__global__ void __launch_bounds__(kThreads) max_pool_row_vec(const float* __restrict__ x, float* __restrict__ y,
                                                             int* __restrict__ argmax, int threads_total, int H,
                                                             int W, int P, int Q, int QG) {
  constexpr int kCols = kS * (V - 1) + kK;  // input columns covering V neighbouring windows
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= threads_total) return;
  const int qg = t % QG;
  const int u = t / QG;
  const int p = u % P;
  const int plane = u / P;
  const int q0 = qg * V;
  const float* xp = x + plane * (H * W);
  const int h0 = kS * p, w0 = kS * q0;

  float best[V];
  int bi[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    best[v] = -INFINITY;
    bi[v] = h0 * W + w0 + kS * v;  // first element of window v, as in kiln
  }
#pragma unroll
  for (int kh = 0; kh < kK; ++kh) {
    const int row = (h0 + kh) * W + w0;
    float cols[kCols];
    // A column past the right edge belongs only to windows past the edge (q >= Q, not stored).
#pragma unroll
    for (int j = 0; j < kCols; ++j) cols[j] = (w0 + j < W) ? __ldg(xp + row + j) : -INFINITY;
#pragma unroll
    for (int v = 0; v < V; ++v) {
#pragma unroll
      for (int kw = 0; kw < kK; ++kw) {
        const float val = cols[kS * v + kw];
        if (wins(val, best[v])) {
          best[v] = val;
          bi[v] = row + kS * v + kw;
        }
      }
    }
  }
  const int out = (plane * P + p) * Q + q0;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    if (q0 + v < Q) {
      y[out + v] = best[v];
      argmax[out + v] = bi[v];
    }
  }
}

// ---- launch -----------------------------------------------------------------------------------------
void launch_v1(const Problem& p) {
  const long long n = p.outputs();
  const PoolGeom g{p.H, p.W, p.P, p.Q, kK, kK, kS, kS, 0, 0};
  long long blocks = ceil_div(n, kThreads);
  if (blocks > 65535LL * 8) blocks = 65535LL * 8;  // kiln's grid_for cap
  kiln_max_pool2d_forward_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(p.x, p.y, p.argmax, n, g);
}
void launch_v2(const Problem& p) {
  const int total = static_cast<int>(p.outputs());
  max_pool_ldg<<<static_cast<unsigned>(ceil_div(total, kThreads)), kThreads>>>(p.x, p.y, p.argmax, total, p.H, p.W,
                                                                               p.P, p.Q);
}
void launch_v3(const Problem& p) {
  const int QG = static_cast<int>(ceil_div(p.Q, kV));
  const int threads_total = p.N * p.C * p.P * QG;
  max_pool_row_vec<kV><<<static_cast<unsigned>(ceil_div(threads_total, kThreads)), kThreads>>>(
      p.x, p.y, p.argmax, threads_total, p.H, p.W, p.P, p.Q, QG);
}

// Variants 2 and 3 use int32 offsets into x.
bool fits_int32(const Problem& p) { return p.inputs() <= 0x7fffffffLL; }
bool always(const Problem&) { return true; }

struct Variant {
  int id;
  const char* name;
  bool (*supported)(const Problem&);
  void (*launch)(const Problem&);
};

const Variant kVariants[] = {
    {1, "kiln: thread/output, int64 grid-stride", always, launch_v1},
    {2, "thread/output, int32, __ldg, unrolled", fits_int32, launch_v2},
    {3, "4 outputs/thread along W, reg reuse", fits_int32, launch_v3},
};

void cpu_reference(const std::vector<float>& x, const Problem& p, std::vector<float>& y, std::vector<int>& idx) {
  const size_t n = static_cast<size_t>(p.outputs());
  y.resize(n);
  idx.resize(n);
  size_t o = 0;
  for (long long plane = 0; plane < static_cast<long long>(p.N) * p.C; ++plane) {
    const float* xp = x.data() + static_cast<size_t>(plane) * p.H * p.W;
    for (int i = 0; i < p.P; ++i)
      for (int j = 0; j < p.Q; ++j, ++o) {
        float best = -INFINITY;
        int bi = (kS * i) * p.W + kS * j;
        for (int kh = 0; kh < kK; ++kh)
          for (int kw = 0; kw < kK; ++kw) {
            const int e = (kS * i + kh) * p.W + kS * j + kw;
            if (wins(xp[e], best)) {
              best = xp[e];
              bi = e;
            }
          }
        y[o] = best;
        idx[o] = bi;
      }
  }
}

const char* kUsage =
    "usage: lab_max_pool [--variant N|all] [--size NxCxHxW] [--repeat R]\n"
    "  3x3 stride-2 max pool (no padding) forward with int32 argmax, NCHW; default 256x64x55x55\n"
    "  variants: 1 kiln's thread per output, 2 int32 + __ldg + unrolled, 3 four outputs per thread\n";

}  // namespace

int main(int argc, char** argv) {
  const klab::Args args = klab::parse_args(argc, argv, kUsage);
  if (args.variant > 3) klab::die("--variant: 1..3 or all");
  const auto d =
      klab::parse_dims(args.sizes.empty() ? std::string("256x64x55x55") : args.sizes.back(), 4, "--size NxCxHxW");
  if (d[2] < kK || d[3] < kK) klab::die("--size: H and W must be at least %d", kK);
  if (d[0] * d[1] > 0x7fffffffLL || d[2] * d[3] > 0x7fffffffLL) klab::die("--size: too large");
  Problem p;
  p.N = static_cast<int>(d[0]);
  p.C = static_cast<int>(d[1]);
  p.H = static_cast<int>(d[2]);
  p.W = static_cast<int>(d[3]);
  p.P = (p.H - kK) / kS + 1;
  p.Q = (p.W - kK) / kS + 1;

  klab::print_device_info();
  klab::L2Flush flush;
  const double copy_gbs = klab::measure_copy_bandwidth_gbs(args.repeat, flush);
  std::printf("ceiling: device-to-device cudaMemcpy %.1f GB/s (read + write); L2 flush %.0f MiB\n", copy_gbs,
              flush.bytes() / 1048576.0);
  std::printf("\nmax pool 3x3 stride 2, x [%d, %d, %d, %d] -> [%d, %d, %d, %d]\n", p.N, p.C, p.H, p.W, p.N, p.C, p.P,
              p.Q);

  const size_t n_in = static_cast<size_t>(p.inputs()), n_out = static_cast<size_t>(p.outputs());
  const std::vector<float> hx = klab::random_uniform(n_in, -1.0f, 1.0f, 55);
  std::vector<float> ref_y;
  std::vector<int> ref_i;
  cpu_reference(hx, p, ref_y, ref_i);

  klab::DeviceBuffer<float> x(n_in), y(n_out);
  klab::DeviceBuffer<int> argmax(n_out);
  x.upload(hx);
  p.x = x.get();
  p.y = y.get();
  p.argmax = argmax.get();

  const double bytes =
      static_cast<double>(n_in) * sizeof(float) + static_cast<double>(n_out) * (sizeof(float) + sizeof(int));
  std::printf("  tolerance: exact (comparisons only; same scan order and tie rule); effective bytes %.2f MB\n",
              bytes / 1e6);
  klab::print_table_header("GB/s", "% copy BW");
  bool all_ok = true;
  for (const Variant& v : kVariants) {
    if (args.variant != 0 && args.variant != v.id) continue;
    if (!v.supported(p)) {
      klab::print_table_row(std::to_string(v.id), v.name, "skip", 0, 0, 0);
      continue;
    }
    y.poison();
    argmax.poison();
    v.launch(p);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> gy = y.download();
    const std::vector<int> gi = argmax.download();
    bool ok = klab::validate_result(gy.data(), ref_y.data(), n_out, 0.0, 0.0, "y", static_cast<size_t>(p.Q));
    ok = klab::validate_equal(gi.data(), ref_i.data(), n_out, "argmax") && ok;
    if (!ok) {
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

// Kernel lab: single-precision GEMM, C = A B with row-major A [M, K], B [K, N], C [M, N], from a
// naive kernel to a register-blocked, vectorised one, each compared with cuBLAS (FP32, no TF32) in
// the same run. kiln itself ships cuBLAS for every GEMM (src/cuda/blas.cpp); these kernels are for
// learning where its speed comes from.
//
// Variants (the progression of Simon Boehm's "How to optimize a CUDA matmul kernel"):
//   1  naive: one thread per output; threadIdx.x runs along N so B and C accesses coalesce and the
//      A element is a broadcast.
//   2  shared-memory tiling: 32x32 tiles of A and B staged in shared memory, each global element
//      loaded once per tile instead of once per output.
//   3  1D register blocking: 64x64 block tile, BK = 8, each thread computes TM = 8 outputs of one
//      column, reusing each B value from shared memory 8 times from a register.
//   4  2D register blocking: 128x128 block tile, BK = 8, each of 256 threads computes an 8x8 outer
//      product per k: 16 shared-memory loads feed 64 FMAs.
//   5  as 4, with float4 global loads and stores, and the A tile stored transposed in shared
//      memory so the 8 A values a thread needs per k are contiguous (two 128-bit loads).
// Variants 3 to 5 need M and N to be multiples of their block tile (64 or 128) and K of 8 (and of 4
// for 5); other sizes are reported as skipped.
//
// Checks: at --check-size (default 512^3) every variant and cuBLAS against a CPU reference computed
// in double; at each timed size every variant against cuBLAS's result. Tolerance: the error of an
// FP32 dot product of length K grows like sqrt(K) eps times the size of its partial sums, so
//   atol = 16 * sqrt(K) * FLT_EPSILON * rms(reference),   rtol = 0
// (rms(C) itself grows like sqrt(K) for these random inputs; a wrong tile index gives errors of
// order rms(C), far above it).
//
//   ./lab_sgemm [--variant N|all] [--size M|MxNxK]... [--repeat R] [--check-size S]
// Default sizes: 4096 and 1024 (M = N = K).
#include "common.cuh"

namespace {

using klab::ceil_div;

struct Problem {
  int M = 0, N = 0, K = 0;
  const float* A = nullptr;
  const float* B = nullptr;
  float* C = nullptr;
};

// ---- variant 1: naive ----------------------------------------------------------------------------
__global__ void sgemm_naive(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                            float* __restrict__ C) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  const int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= M || col >= N) return;
  const float* a = A + static_cast<size_t>(row) * K;
  float acc = 0.0f;
  for (int k = 0; k < K; ++k) acc += a[k] * B[static_cast<size_t>(k) * N + col];
  C[static_cast<size_t>(row) * N + col] = acc;
}

// ---- variant 2: 32x32 shared-memory tiles --------------------------------------------------------
constexpr int kT2 = 32;

__global__ void __launch_bounds__(kT2 * kT2) sgemm_smem(int M, int N, int K, const float* __restrict__ A,
                                                        const float* __restrict__ B, float* __restrict__ C) {
  __shared__ float As[kT2][kT2];
  __shared__ float Bs[kT2][kT2];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * kT2 + ty;
  const int col = blockIdx.x * kT2 + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kT2) {
    // Zero-filled at the edges, so any M, N, K works.
    As[ty][tx] = (row < M && k0 + tx < K) ? A[static_cast<size_t>(row) * K + k0 + tx] : 0.0f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? B[static_cast<size_t>(k0 + ty) * N + col] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kT2; ++k) acc += As[ty][k] * Bs[k][tx];  // As: broadcast in a warp; Bs: conflict-free
    __syncthreads();
  }
  if (row < M && col < N) C[static_cast<size_t>(row) * N + col] = acc;
}

// ---- variant 3: 1D register blocking -------------------------------------------------------------
template <int BM, int BN, int BK, int TM>
__global__ void __launch_bounds__((BM * BN) / TM) sgemm_1d_blocktile(int M, int N, int K, const float* __restrict__ A,
                                                                     const float* __restrict__ B,
                                                                     float* __restrict__ C) {
  constexpr int kThreads = (BM * BN) / TM;
  static_assert(kThreads == BM * BK && kThreads == BK * BN, "one element of each tile per thread");
  __shared__ float As[BM * BK];
  __shared__ float Bs[BK * BN];
  const int thread_col = threadIdx.x % BN;
  const int thread_row = threadIdx.x / BN;  // 0 .. BM / TM - 1
  const int a_row = threadIdx.x / BK, a_col = threadIdx.x % BK;
  const int b_row = threadIdx.x / BN, b_col = threadIdx.x % BN;

  A += static_cast<size_t>(blockIdx.y) * BM * K;
  B += static_cast<size_t>(blockIdx.x) * BN;
  C += static_cast<size_t>(blockIdx.y) * BM * N + static_cast<size_t>(blockIdx.x) * BN;

  float acc[TM] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    As[a_row * BK + a_col] = A[static_cast<size_t>(a_row) * K + a_col];
    Bs[b_row * BN + b_col] = B[static_cast<size_t>(b_row) * N + b_col];
    __syncthreads();
    A += BK;
    B += static_cast<size_t>(BK) * N;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float b = Bs[k * BN + thread_col];
#pragma unroll
      for (int i = 0; i < TM; ++i) acc[i] += As[(thread_row * TM + i) * BK + k] * b;
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) C[static_cast<size_t>(thread_row * TM + i) * N + thread_col] = acc[i];
}

// ---- variant 4: 2D register blocking -------------------------------------------------------------
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM * BN) / (TM * TN))
    sgemm_2d_blocktile(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                       float* __restrict__ C) {
  constexpr int kThreads = (BM * BN) / (TM * TN);
  static_assert(kThreads % BK == 0 && kThreads % BN == 0, "tile loads must divide evenly");
  constexpr int kStrideA = kThreads / BK;  // rows of the A tile loaded per pass
  constexpr int kStrideB = kThreads / BN;  // rows of the B tile loaded per pass
  static_assert(BM % kStrideA == 0 && BK % kStrideB == 0, "tile loads must divide evenly");
  __shared__ float As[BM * BK];
  __shared__ float Bs[BK * BN];
  const int thread_col = threadIdx.x % (BN / TN);
  const int thread_row = threadIdx.x / (BN / TN);
  const int a_row = threadIdx.x / BK, a_col = threadIdx.x % BK;
  const int b_row = threadIdx.x / BN, b_col = threadIdx.x % BN;

  A += static_cast<size_t>(blockIdx.y) * BM * K;
  B += static_cast<size_t>(blockIdx.x) * BN;
  C += static_cast<size_t>(blockIdx.y) * BM * N + static_cast<size_t>(blockIdx.x) * BN;

  float acc[TM * TN] = {};
  float reg_m[TM];
  float reg_n[TN];
  for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int off = 0; off < BM; off += kStrideA)
      As[(a_row + off) * BK + a_col] = A[static_cast<size_t>(a_row + off) * K + a_col];
#pragma unroll
    for (int off = 0; off < BK; off += kStrideB)
      Bs[(b_row + off) * BN + b_col] = B[static_cast<size_t>(b_row + off) * N + b_col];
    __syncthreads();
    A += BK;
    B += static_cast<size_t>(BK) * N;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
#pragma unroll
      for (int i = 0; i < TM; ++i) reg_m[i] = As[(thread_row * TM + i) * BK + k];
#pragma unroll
      for (int j = 0; j < TN; ++j) reg_n[j] = Bs[k * BN + thread_col * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i * TN + j] += reg_m[i] * reg_n[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j)
      C[static_cast<size_t>(thread_row * TM + i) * N + thread_col * TN + j] = acc[i * TN + j];
}

// ---- variant 5: 2D register blocking, float4 loads, transposed A tile ----------------------------
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM * BN) / (TM * TN))
    sgemm_vec4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C) {
  constexpr int kThreads = (BM * BN) / (TM * TN);
  static_assert(kThreads * 4 == BM * BK && kThreads * 4 == BK * BN, "one float4 of each tile per thread");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "float4 register loads");
  __shared__ __align__(16) float As[BK * BM];  // transposed: As[k * BM + m]
  __shared__ __align__(16) float Bs[BK * BN];
  const int thread_col = threadIdx.x % (BN / TN);
  const int thread_row = threadIdx.x / (BN / TN);
  const int a_row = threadIdx.x / (BK / 4), a_col4 = threadIdx.x % (BK / 4);  // float4 column
  const int b_row = threadIdx.x / (BN / 4), b_col4 = threadIdx.x % (BN / 4);

  A += static_cast<size_t>(blockIdx.y) * BM * K;
  B += static_cast<size_t>(blockIdx.x) * BN;
  C += static_cast<size_t>(blockIdx.y) * BM * N + static_cast<size_t>(blockIdx.x) * BN;

  float acc[TM * TN] = {};
  float reg_m[TM];
  float reg_n[TN];
  for (int k0 = 0; k0 < K; k0 += BK) {
    const float4 a = *reinterpret_cast<const float4*>(A + static_cast<size_t>(a_row) * K + 4 * a_col4);
    As[(4 * a_col4 + 0) * BM + a_row] = a.x;
    As[(4 * a_col4 + 1) * BM + a_row] = a.y;
    As[(4 * a_col4 + 2) * BM + a_row] = a.z;
    As[(4 * a_col4 + 3) * BM + a_row] = a.w;
    *reinterpret_cast<float4*>(Bs + b_row * BN + 4 * b_col4) =
        *reinterpret_cast<const float4*>(B + static_cast<size_t>(b_row) * N + 4 * b_col4);
    __syncthreads();
    A += BK;
    B += static_cast<size_t>(BK) * N;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 m4 = *reinterpret_cast<const float4*>(As + k * BM + thread_row * TM + i);
        reg_m[i] = m4.x;
        reg_m[i + 1] = m4.y;
        reg_m[i + 2] = m4.z;
        reg_m[i + 3] = m4.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 n4 = *reinterpret_cast<const float4*>(Bs + k * BN + thread_col * TN + j);
        reg_n[j] = n4.x;
        reg_n[j + 1] = n4.y;
        reg_n[j + 2] = n4.z;
        reg_n[j + 3] = n4.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i * TN + j] += reg_m[i] * reg_n[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; j += 4)
      *reinterpret_cast<float4*>(C + static_cast<size_t>(thread_row * TM + i) * N + thread_col * TN + j) =
          make_float4(acc[i * TN + j], acc[i * TN + j + 1], acc[i * TN + j + 2], acc[i * TN + j + 3]);
}

// ---- variant table --------------------------------------------------------------------------------
constexpr int kBM3 = 64, kBN3 = 64, kBK3 = 8, kTM3 = 8;
constexpr int kBM = 128, kBN = 128, kBK = 8, kTM = 8, kTN = 8;

void launch_v1(const Problem& p) {
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>(ceil_div(p.N, 32)), static_cast<unsigned>(ceil_div(p.M, 8)));
  sgemm_naive<<<grid, block>>>(p.M, p.N, p.K, p.A, p.B, p.C);
}
void launch_v2(const Problem& p) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.N, kT2)), static_cast<unsigned>(ceil_div(p.M, kT2)));
  sgemm_smem<<<grid, dim3(kT2, kT2)>>>(p.M, p.N, p.K, p.A, p.B, p.C);
}
void launch_v3(const Problem& p) {
  const dim3 grid(static_cast<unsigned>(p.N / kBN3), static_cast<unsigned>(p.M / kBM3));
  sgemm_1d_blocktile<kBM3, kBN3, kBK3, kTM3><<<grid, (kBM3 * kBN3) / kTM3>>>(p.M, p.N, p.K, p.A, p.B, p.C);
}
void launch_v4(const Problem& p) {
  const dim3 grid(static_cast<unsigned>(p.N / kBN), static_cast<unsigned>(p.M / kBM));
  sgemm_2d_blocktile<kBM, kBN, kBK, kTM, kTN><<<grid, (kBM * kBN) / (kTM * kTN)>>>(p.M, p.N, p.K, p.A, p.B, p.C);
}
void launch_v5(const Problem& p) {
  const dim3 grid(static_cast<unsigned>(p.N / kBN), static_cast<unsigned>(p.M / kBM));
  sgemm_vec4<kBM, kBN, kBK, kTM, kTN><<<grid, (kBM * kBN) / (kTM * kTN)>>>(p.M, p.N, p.K, p.A, p.B, p.C);
}

bool grid_ok(long long gx, long long gy) { return gx <= 0x7fffffffLL && gy <= 65535; }
bool sup_v1(const Problem& p) { return grid_ok(ceil_div(p.N, 32), ceil_div(p.M, 8)); }
bool sup_v2(const Problem& p) { return grid_ok(ceil_div(p.N, kT2), ceil_div(p.M, kT2)); }
bool sup_v3(const Problem& p) {
  return p.M % kBM3 == 0 && p.N % kBN3 == 0 && p.K % kBK3 == 0 && grid_ok(p.N / kBN3, p.M / kBM3);
}
bool sup_v45(const Problem& p) {
  return p.M % kBM == 0 && p.N % kBN == 0 && p.K % kBK == 0 && grid_ok(p.N / kBN, p.M / kBM);
}

struct Variant {
  int id;
  const char* name;
  bool (*supported)(const Problem&);
  void (*launch)(const Problem&);
};

const Variant kVariants[] = {
    {1, "naive, thread per output", sup_v1, launch_v1},
    {2, "smem tiles 32x32", sup_v2, launch_v2},
    {3, "1D register blocking 64x64, TM=8", sup_v3, launch_v3},
    {4, "2D register blocking 128x128, 8x8", sup_v45, launch_v4},
    {5, "2D 128x128 8x8, float4, A^T in smem", sup_v45, launch_v5},
};

// ---- checks ---------------------------------------------------------------------------------------
double rms(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

double gemm_atol(int K, double ref_rms) { return 16.0 * std::sqrt(static_cast<double>(K)) * FLT_EPSILON * ref_rms; }

struct Matrices {
  klab::DeviceBuffer<float> A, B, C;
  Problem p;
  Matrices(int M, int N, int K, const std::vector<float>& hA, const std::vector<float>& hB)
      : A(static_cast<size_t>(M) * K), B(static_cast<size_t>(K) * N), C(static_cast<size_t>(M) * N) {
    A.upload(hA);
    B.upload(hB);
    p.M = M;
    p.N = N;
    p.K = K;
    p.A = A.get();
    p.B = B.get();
    p.C = C.get();
  }
};

// Poisons C, runs `launch` once and compares with `ref`.
template <class Launch, class Ref>
bool run_and_check(Matrices& m, Launch&& launch, const std::vector<Ref>& ref, double atol, const char* what) {
  m.C.poison();
  launch();
  LAUNCH_CHECK();
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = m.C.download();
  return klab::validate_result(got.data(), ref.data(), got.size(), 0.0, atol, what, static_cast<size_t>(m.p.N));
}

const char* kUsage =
    "usage: lab_sgemm [--variant N|all] [--size M|MxNxK]... [--repeat R] [--check-size S]\n"
    "  row-major FP32 C = A B; default sizes 4096 and 1024 (M = N = K), repeat 20\n"
    "  every variant is checked against a double CPU reference at S^3 (default 512) and against\n"
    "  cuBLAS at each timed size\n"
    "  variants: 1 naive, 2 smem 32x32 tiles, 3 1D register blocking, 4 2D register blocking,\n"
    "            5 2D + float4 + transposed A tile\n";

}  // namespace

int main(int argc, char** argv) {
  const klab::Args args = klab::parse_args(argc, argv, kUsage, {"--check-size"});
  if (args.variant > 5) klab::die("--variant: 1..5 or all");
  std::vector<std::vector<long long>> sizes;
  if (args.sizes.empty()) {
    sizes = {{4096, 4096, 4096}, {1024, 1024, 1024}};
  } else {
    for (const auto& s : args.sizes) {
      auto d = klab::parse_dims(s, 0, "--size M|MxNxK");
      if (d.size() == 1) d = {d[0], d[0], d[0]};
      if (d.size() != 3) klab::die("--size: M or MxNxK, got '%s'", s.c_str());
      for (long long v : d)
        if (v > 65536) klab::die("--size: dimensions up to 65536");
      sizes.push_back(d);
    }
  }
  const int check_size = args.extra.count("--check-size")
                             ? klab::parse_int(args.extra.at("--check-size"), "--check-size")
                             : 512;
  if (check_size < 1 || check_size > 2048) klab::die("--check-size: 1..2048");

  klab::print_device_info();
  klab::L2Flush flush;
  cublasHandle_t handle = klab::make_fp32_cublas();
  std::printf("ceiling: cuBLAS cublasSgemm, CUBLAS_DEFAULT_MATH (FP32, no TF32), timed per size; L2 flush %.0f MiB\n",
              flush.bytes() / 1048576.0);

  bool all_ok = true;

  // ---- 1. CPU reference check at check_size^3 ----
  const int S = check_size;
  std::printf("\ncheck vs CPU (double) at %d x %d x %d\n", S, S, S);
  const std::vector<float> sA = klab::random_uniform(static_cast<size_t>(S) * S, -1.0f, 1.0f, 11);
  const std::vector<float> sB = klab::random_uniform(static_cast<size_t>(S) * S, -1.0f, 1.0f, 12);
  std::vector<double> sref(static_cast<size_t>(S) * S, 0.0);
  for (int i = 0; i < S; ++i) {
    double* crow = sref.data() + static_cast<size_t>(i) * S;
    for (int k = 0; k < S; ++k) {
      const double a = sA[static_cast<size_t>(i) * S + k];
      const float* brow = sB.data() + static_cast<size_t>(k) * S;
      for (int j = 0; j < S; ++j) crow[j] += a * brow[j];
    }
  }
  const double s_atol = gemm_atol(S, rms(sref));
  std::printf("  tolerance: |gpu - ref| <= %.3g (16 sqrt(K) eps rms(C))\n", s_atol);
  bool cpu_ok[6] = {true, true, true, true, true, true};  // [0]: cuBLAS
  {
    Matrices m(S, S, S, sA, sB);
    cpu_ok[0] = run_and_check(m, [&] { klab::cublas_sgemm_rowmajor(handle, S, S, S, m.p.A, m.p.B, m.p.C); }, sref,
                              s_atol, "cuBLAS vs CPU");
    std::printf("  %-7s %-40s %s\n", "cublas", "cublasSgemm", cpu_ok[0] ? "ok" : "FAIL");
    for (const Variant& v : kVariants) {
      if (args.variant != 0 && args.variant != v.id) continue;
      if (!v.supported(m.p)) {
        std::printf("  %-7d %-40s %s\n", v.id, v.name, "skip (size)");
        continue;
      }
      cpu_ok[v.id] = run_and_check(m, [&] { v.launch(m.p); }, sref, s_atol, "variant vs CPU");
      std::printf("  %-7d %-40s %s\n", v.id, v.name, cpu_ok[v.id] ? "ok" : "FAIL");
    }
  }
  for (bool ok : cpu_ok) all_ok = all_ok && ok;
  if (!cpu_ok[0]) std::printf("  cuBLAS failed the CPU check: the timed sizes' checks against it mean nothing\n");

  // ---- 2. timed sizes, checked against cuBLAS ----
  for (const auto& d : sizes) {
    const int M = static_cast<int>(d[0]), N = static_cast<int>(d[1]), K = static_cast<int>(d[2]);
    const double flops = 2.0 * M * static_cast<double>(N) * K;
    std::printf("\nsgemm M = %d, N = %d, K = %d (%.1f GFLOP per call)\n", M, N, K, flops / 1e9);
    const std::vector<float> hA = klab::random_uniform(static_cast<size_t>(M) * K, -1.0f, 1.0f, 21);
    const std::vector<float> hB = klab::random_uniform(static_cast<size_t>(K) * N, -1.0f, 1.0f, 22);
    Matrices m(M, N, K, hA, hB);
    klab::DeviceBuffer<float> cref(static_cast<size_t>(M) * N);
    klab::cublas_sgemm_rowmajor(handle, M, N, K, m.p.A, m.p.B, cref.get());
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> ref = cref.download();
    double ss = 0.0;
    for (float v : ref) ss += static_cast<double>(v) * v;
    const double atol = gemm_atol(K, std::sqrt(ss / static_cast<double>(ref.size())));
    const double cublas_ms = klab::time_median_ms(
        [&] { klab::cublas_sgemm_rowmajor(handle, M, N, K, m.p.A, m.p.B, cref.get()); }, args.repeat, flush);
    const double cublas_tf = klab::tflop_per_s(flops, cublas_ms);
    std::printf("  tolerance vs cuBLAS: |gpu - cublas| <= %.3g\n", atol);
    klab::print_table_header("TFLOP/s", "% cuBLAS");
    klab::print_table_row("cublas", "cublasSgemm (FP32)", cpu_ok[0] ? "ok" : "FAIL", cublas_ms, cublas_tf, 100.0);
    for (const Variant& v : kVariants) {
      if (args.variant != 0 && args.variant != v.id) continue;
      if (!v.supported(m.p)) {
        klab::print_table_row(std::to_string(v.id), v.name, "skip", 0, 0, 0);
        continue;
      }
      const bool ok = run_and_check(m, [&] { v.launch(m.p); }, ref, atol, "variant vs cuBLAS") && cpu_ok[v.id];
      if (!ok) {
        all_ok = false;
        klab::print_table_row(std::to_string(v.id), v.name, "FAIL", 0, 0, 0);
        continue;
      }
      const double ms = klab::time_median_ms([&] { v.launch(m.p); }, args.repeat, flush);
      const double tf = klab::tflop_per_s(flops, ms);
      klab::print_table_row(std::to_string(v.id), v.name, "ok", ms, tf, 100.0 * tf / cublas_tf);
    }
  }
  CUBLAS_CHECK(cublasDestroy(handle));
  std::printf("\n%s\n", all_ok ? "all checks passed" : "SOME CHECKS FAILED");
  return all_ok ? 0 : 1;
}

// Self-tests of the emulated cuBLAS and cuDNN (tests/emu/src/cublas.cpp, cudnn.cpp, dnn_math.cpp),
// through their public C APIs on the emulated device: hand-computed cases, a double-precision
// reference, the adjoint identities that tie the three convolution directions together, and the
// argument checks.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using std::size_t;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- device memory ------------------------------------------------------------------------------

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) {
      EXPECT_EQ(cudaMalloc(&p_, bytes), cudaSuccess);
    }
  }
  explicit DeviceBuffer(const std::vector<float>& v) : DeviceBuffer(v.size() * sizeof(float)) { write(v); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* f() const { return static_cast<float*>(p_); }
  void* get() const { return p_; }

  void write(const std::vector<float>& v) {
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (p_) {
      ASSERT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  // Waits for all queued work, then copies the buffer back.
  std::vector<float> read() const {
    std::vector<float> v(bytes_ / sizeof(float));
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (p_) {
      EXPECT_EQ(cudaMemcpy(v.data(), p_, v.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return v;
  }

 private:
  void* p_ = nullptr;
  size_t bytes_;
};

std::vector<float> random_vector(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

void expect_near_all(const std::vector<float>& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << what << " element " << i;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// ---- cuBLAS -------------------------------------------------------------------------------------

struct Blas {
  cublasHandle_t h = nullptr;
  Blas() { EXPECT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS); }
  ~Blas() { cublasDestroy(h); }
};

// Runs cublasSgemm on copies of the host matrices and returns C.
std::vector<float> sgemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                         const std::vector<float>& A, int lda, const std::vector<float>& B, int ldb, float beta,
                         const std::vector<float>& C, int ldc) {
  Blas blas;
  DeviceBuffer a(A), b(B), c(C);
  EXPECT_EQ(cublasSgemm(blas.h, ta, tb, m, n, k, &alpha, a.f(), lda, b.f(), ldb, &beta, c.f(), ldc),
            CUBLAS_STATUS_SUCCESS);
  return c.read();
}

// The column-major matrices of the hand-computed case: A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]],
// A B = [[58,64],[139,154]].
const std::vector<float> kA = {1, 4, 2, 5, 3, 6};       // 2 x 3, lda 2
const std::vector<float> kAt = {1, 2, 3, 4, 5, 6};      // A^T stored 3 x 2, lda 3
const std::vector<float> kB = {7, 9, 11, 8, 10, 12};    // 3 x 2, ldb 3
const std::vector<float> kBt = {7, 8, 9, 10, 11, 12};   // B^T stored 2 x 3, ldb 2
const std::vector<double> kAB = {58, 139, 64, 154};     // 2 x 2, ldc 2

TEST(EmuLibs, SgemmHandComputed) {
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 1, kA, 2, kB, 3, 0, {0, 0, 0, 0}, 2), kAB, 0, "NN");
}

TEST(EmuLibs, SgemmTransposes) {
  expect_near_all(sgemm(CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 3, 1, kAt, 3, kB, 3, 0, {0, 0, 0, 0}, 2), kAB, 0, "TN");
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_T, 2, 2, 3, 1, kA, 2, kBt, 2, 0, {0, 0, 0, 0}, 2), kAB, 0, "NT");
  expect_near_all(sgemm(CUBLAS_OP_T, CUBLAS_OP_T, 2, 2, 3, 1, kAt, 3, kBt, 2, 0, {0, 0, 0, 0}, 2), kAB, 0, "TT");
  // CUBLAS_OP_C is the transpose for real matrices.
  expect_near_all(sgemm(CUBLAS_OP_C, CUBLAS_OP_C, 2, 2, 3, 1, kAt, 3, kBt, 2, 0, {0, 0, 0, 0}, 2), kAB, 0, "CC");
}

TEST(EmuLibs, SgemmLeadingDimensionPadding) {
  // lda 4 > m: the two padding rows of A hold NaN, which must never be read. ldc 3 > m: the
  // padding row of C must stay untouched.
  const std::vector<float> A = {1, 4, kNaN, kNaN, 2, 5, kNaN, kNaN, 3, 6, kNaN, kNaN};
  const std::vector<float> C = {0, 0, -7, 0, 0, -8};
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 1, A, 4, kB, 3, 0, C, 3), {58, 139, -7, 64, 154, -8}, 0,
                  "lda 4, ldc 3");
}

TEST(EmuLibs, SgemmAlphaBeta) {
  const std::vector<float> C = {1, 2, 3, 4};
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 2, kA, 2, kB, 3, -0.5f, C, 2),
                  {2 * 58 - 0.5, 2 * 139 - 1.0, 2 * 64 - 1.5, 2 * 154 - 2.0}, 0, "alpha 2, beta -0.5");
}

TEST(EmuLibs, SgemmBetaZeroIgnoresNaNInC) {
  const std::vector<float> C = {kNaN, kNaN, std::numeric_limits<float>::infinity(), kNaN};
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, 1, kA, 2, kB, 3, 0, C, 2), kAB, 0, "beta 0");
}

TEST(EmuLibs, SgemmEmptySumScalesC) {
  // k = 0: op(A) op(B) is empty, so C = beta C (and with beta 0, C = 0 even over NaN).
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 0, 1, {0}, 2, {0}, 1, 3, {1, 2, 3, 4}, 2), {3, 6, 9, 12}, 0,
                  "k 0");
  expect_near_all(sgemm(CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 0, 1, {0}, 2, {0}, 1, 0, {kNaN, 2, 3, 4}, 2), {0, 0, 0, 0}, 0,
                  "k 0, beta 0");
}

// op(A) op(B) against a double reference, for every transpose pair and padded leading dimensions.
TEST(EmuLibs, SgemmMatchesDoubleReference) {
  const int m = 33, n = 17, k = 70;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 1, ldc = m + 2;
      const std::vector<float> A = random_vector(size_t(lda) * (ta ? m : k), 1);
      const std::vector<float> B = random_vector(size_t(ldb) * (tb ? k : n), 2);
      const std::vector<float> C = random_vector(size_t(ldc) * n, 3);
      std::vector<double> want = to_double(C);
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double s = 0;
          for (int l = 0; l < k; ++l)
            s += double(ta ? A[l + size_t(i) * lda] : A[i + size_t(l) * lda]) *
                 (tb ? B[j + size_t(l) * ldb] : B[l + size_t(j) * ldb]);
          want[i + size_t(j) * ldc] = 1.5 * s + 0.25 * C[i + size_t(j) * ldc];
        }
      expect_near_all(sgemm(ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, 1.5f, A, lda, B,
                            ldb, 0.25f, C, ldc),
                      want, 1e-4, "transposes " + std::to_string(ta) + std::to_string(tb));
    }
}

TEST(EmuLibs, SgemmDevicePointerMode) {
  Blas blas;
  ASSERT_EQ(cublasSetPointerMode(blas.h, CUBLAS_POINTER_MODE_DEVICE), CUBLAS_STATUS_SUCCESS);
  DeviceBuffer a(kA), b(kB), c(std::vector<float>{1, 1, 1, 1}), alpha(std::vector<float>{2}), beta(std::vector<float>{1});
  ASSERT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, alpha.f(), a.f(), 2, b.f(), 3, beta.f(), c.f(), 2),
            CUBLAS_STATUS_SUCCESS);
  expect_near_all(c.read(), {117, 279, 129, 309}, 0, "device alpha 2, beta 1");
  // Host scalars in device pointer mode are refused.
  const float one = 1;
  EXPECT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.f(), 2, b.f(), 3, &one, c.f(), 2),
            CUBLAS_STATUS_INVALID_VALUE);
}

TEST(EmuLibs, SgemmInvalidArguments) {
  Blas blas;
  DeviceBuffer a(kA), b(kB), c(std::vector<float>(4));
  const float one = 1, zero = 0;
  auto call = [&](cublasHandle_t h, cublasOperation_t ta, int m, int n, int k, int lda, int ldb, int ldc,
                  const float* alpha) {
    return cublasSgemm(h, ta, CUBLAS_OP_N, m, n, k, alpha, a.f(), lda, b.f(), ldb, &zero, c.f(), ldc);
  };
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, 2, 2, 3, 1, 3, 2, &one), CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  EXPECT_EQ(call(blas.h, CUBLAS_OP_T, 2, 2, 3, 2, 3, 2, &one), CUBLAS_STATUS_INVALID_VALUE);  // lda < k (transposed)
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, 2, 2, 3, 2, 2, 2, &one), CUBLAS_STATUS_INVALID_VALUE);  // ldb < k
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, 2, 2, 3, 2, 3, 1, &one), CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, -1, 2, 3, 2, 3, 2, &one), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, 2, 2, -3, 2, 3, 2, &one), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(blas.h, CUBLAS_OP_CONJG, 2, 2, 3, 2, 3, 2, &one), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, 2, 2, 3, 2, 3, 2, nullptr), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(blas.h, CUBLAS_OP_N, 0, 0, 3, 1, 3, 1, &one), CUBLAS_STATUS_SUCCESS);  // empty: nothing to do
  EXPECT_EQ(call(nullptr, CUBLAS_OP_N, 2, 2, 3, 2, 3, 2, &one), CUBLAS_STATUS_NOT_INITIALIZED);
  cublasHandle_t dead = nullptr;
  ASSERT_EQ(cublasCreate(&dead), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasDestroy(dead), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(call(dead, CUBLAS_OP_N, 2, 2, 3, 2, 3, 2, &one), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasDestroy(dead), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasCreate(nullptr), CUBLAS_STATUS_INVALID_VALUE);
}

TEST(EmuLibs, SgemmRejectsHostAndOverrunningPointers) {
  Blas blas;
  DeviceBuffer a(kA), b(kB), c(std::vector<float>(4)), short_c(std::vector<float>(3));
  std::vector<float> host_a = kA;
  const float one = 1, zero = 0;
  EXPECT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, host_a.data(), 2, b.f(), 3, &zero, c.f(), 2),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.f(), 2, b.f(), 3, &zero, short_c.f(), 2),
            CUBLAS_STATUS_INVALID_VALUE);
  // lda 3 makes A span (3 - 1) * 3 + 2 = 8 floats of a 6-float allocation.
  EXPECT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.f(), 3, b.f(), 3, &zero, c.f(), 2),
            CUBLAS_STATUS_INVALID_VALUE);
  // Host pointer mode with device scalars is refused too.
  DeviceBuffer dev_one(std::vector<float>{1});
  EXPECT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, dev_one.f(), a.f(), 2, b.f(), 3, &zero, c.f(), 2),
            CUBLAS_STATUS_INVALID_VALUE);
}

TEST(EmuLibs, SgemmRunsOnTheHandleStream) {
  Blas blas;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cublasSetStream(blas.h, stream), CUBLAS_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  ASSERT_EQ(cublasGetStream(blas.h, &got), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(got, stream);
  DeviceBuffer a(kA), b(kB), c(std::vector<float>(4));
  float alpha = 1, beta = 0;
  ASSERT_EQ(cublasSgemm(blas.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &alpha, a.f(), 2, b.f(), 3, &beta, c.f(), 2),
            CUBLAS_STATUS_SUCCESS);
  alpha = 100;  // host scalars are read at call time: changing them now has no effect
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  expect_near_all(c.read(), kAB, 0, "on a stream");
  ASSERT_EQ(cublasSetStream(blas.h, nullptr), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(EmuLibs, CublasModesAndVersions) {
  Blas blas;
  cublasMath_t math{};
  ASSERT_EQ(cublasGetMathMode(blas.h, &math), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(math, CUBLAS_DEFAULT_MATH);
  ASSERT_EQ(cublasSetMathMode(blas.h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasGetMathMode(blas.h, &math), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(math, CUBLAS_TF32_TENSOR_OP_MATH);
  EXPECT_EQ(cublasSetMathMode(blas.h, static_cast<cublasMath_t>(CUBLAS_PEDANTIC_MATH |
                                                                  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasSetMathMode(blas.h, static_cast<cublasMath_t>(5)), CUBLAS_STATUS_INVALID_VALUE);
  cublasPointerMode_t mode{};
  ASSERT_EQ(cublasGetPointerMode(blas.h, &mode), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(mode, CUBLAS_POINTER_MODE_HOST);
  EXPECT_EQ(cublasSetPointerMode(blas.h, static_cast<cublasPointerMode_t>(2)), CUBLAS_STATUS_INVALID_VALUE);

  int major = -1, minor = -1, patch = -1, version = -1;
  ASSERT_EQ(cublasGetProperty(MAJOR_VERSION, &major), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasGetProperty(MINOR_VERSION, &minor), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasGetProperty(PATCH_LEVEL, &patch), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(major, CUBLAS_VER_MAJOR);
  EXPECT_EQ(minor, CUBLAS_VER_MINOR);
  EXPECT_EQ(patch, CUBLAS_VER_PATCH);
  ASSERT_EQ(cublasGetVersion(blas.h, &version), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(version, CUBLAS_VERSION);
  EXPECT_STREQ(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
  EXPECT_STREQ(cublasGetStatusString(CUBLAS_STATUS_SUCCESS), "success");
}

// ---- cuDNN: set-up helpers -----------------------------------------------------------------------

struct Dnn {
  cudnnHandle_t h = nullptr;
  Dnn() { EXPECT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS); }
  ~Dnn() { cudnnDestroy(h); }
};

// x [N, C, H, W], w [K, C / groups, R, S].
struct Geometry {
  int N, C, H, W, K, R, S;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1, groups = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
};

std::string str(const Geometry& g) {
  return "x " + std::to_string(g.N) + "x" + std::to_string(g.C) + "x" + std::to_string(g.H) + "x" +
         std::to_string(g.W) + " w " + std::to_string(g.K) + "x" + std::to_string(g.R) + "x" + std::to_string(g.S) +
         " pad " + std::to_string(g.pad_h) + "," + std::to_string(g.pad_w) + " stride " + std::to_string(g.stride_h) +
         "," + std::to_string(g.stride_w) + " dil " + std::to_string(g.dil_h) + "," + std::to_string(g.dil_w) +
         " groups " + std::to_string(g.groups) + (g.mode == CUDNN_CONVOLUTION ? " flipped" : "");
}

// The four descriptors of a geometry; y's shape comes from cudnnGetConvolution2dForwardOutputDim.
class Conv {
 public:
  explicit Conv(const Geometry& geometry) : g(geometry) {
    EXPECT_EQ(cudnnCreateTensorDescriptor(&x), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateTensorDescriptor(&y), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateFilterDescriptor(&w), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateConvolutionDescriptor(&conv), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.N, g.C, g.H, g.W),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.K, g.C / g.groups, g.R, g.S),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv, g.pad_h, g.pad_w, g.stride_h, g.stride_w, g.dil_h, g.dil_w, g.mode,
                                              CUDNN_DATA_FLOAT),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionGroupCount(conv, g.groups), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH), CUDNN_STATUS_SUCCESS);
    int n = 0, k = 0;
    EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &k, &P, &Q), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, k, P, Q), CUDNN_STATUS_SUCCESS);
  }
  ~Conv() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
  Conv(const Conv&) = delete;
  Conv& operator=(const Conv&) = delete;

  size_t x_elems() const { return size_t(g.N) * g.C * g.H * g.W; }
  size_t w_elems() const { return size_t(g.K) * (g.C / g.groups) * g.R * g.S; }
  size_t y_elems() const { return size_t(g.N) * g.K * P * Q; }

  Geometry g;
  int P = 0, Q = 0;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
};

// A convolution direction: forward (x, w -> y), backward data (w, dy -> dx), backward filter
// (x, dy -> dw). `a`, `b`, `out` below are the direction's two inputs and its output.
enum class Dir { Fwd, BwdData, BwdFilter };
const Dir kDirs[] = {Dir::Fwd, Dir::BwdData, Dir::BwdFilter};

const char* name(Dir d) { return d == Dir::Fwd ? "forward" : d == Dir::BwdData ? "backward data" : "backward filter"; }

int algo_count(Dir d) {
  switch (d) {
    case Dir::Fwd: return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case Dir::BwdData: return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case Dir::BwdFilter: return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
  return 0;
}

size_t a_elems(const Conv& c, Dir d) { return d == Dir::BwdData ? c.w_elems() : c.x_elems(); }
size_t b_elems(const Conv& c, Dir d) { return d == Dir::Fwd ? c.w_elems() : c.y_elems(); }
size_t out_elems(const Conv& c, Dir d) {
  return d == Dir::Fwd ? c.y_elems() : d == Dir::BwdData ? c.x_elems() : c.w_elems();
}

cudnnStatus_t workspace(cudnnHandle_t h, const Conv& c, Dir d, int algo, size_t* bytes) {
  switch (d) {
    case Dir::Fwd:
      return cudnnGetConvolutionForwardWorkspaceSize(h, c.x, c.w, c.conv, c.y, cudnnConvolutionFwdAlgo_t(algo), bytes);
    case Dir::BwdData:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, c.w, c.y, c.conv, c.x, cudnnConvolutionBwdDataAlgo_t(algo),
                                                          bytes);
    case Dir::BwdFilter:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, c.x, c.y, c.conv, c.w,
                                                            cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t convolve(cudnnHandle_t h, const Conv& c, Dir d, int algo, float alpha, const void* a, const void* b,
                       float beta, void* out, void* ws, size_t ws_bytes) {
  switch (d) {
    case Dir::Fwd:
      return cudnnConvolutionForward(h, &alpha, c.x, a, c.w, b, c.conv, cudnnConvolutionFwdAlgo_t(algo), ws, ws_bytes,
                                     &beta, c.y, out);
    case Dir::BwdData:
      return cudnnConvolutionBackwardData(h, &alpha, c.w, a, c.y, b, c.conv, cudnnConvolutionBwdDataAlgo_t(algo), ws,
                                          ws_bytes, &beta, c.x, out);
    case Dir::BwdFilter:
      return cudnnConvolutionBackwardFilter(h, &alpha, c.x, a, c.y, b, c.conv, cudnnConvolutionBwdFilterAlgo_t(algo),
                                            ws, ws_bytes, &beta, c.w, out);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// The algorithms of a direction that support the geometry (those that report a workspace size).
std::vector<int> supported_algos(cudnnHandle_t h, const Conv& c, Dir d) {
  std::vector<int> out;
  for (int algo = 0; algo < algo_count(d); ++algo) {
    size_t bytes = 0;
    const cudnnStatus_t s = workspace(h, c, d, algo, &bytes);
    EXPECT_TRUE(s == CUDNN_STATUS_SUCCESS || s == CUDNN_STATUS_NOT_SUPPORTED) << cudnnGetErrorString(s);
    if (s == CUDNN_STATUS_SUCCESS) out.push_back(algo);
  }
  return out;
}

// Runs one algorithm with exactly the workspace it asks for (so that ASan sees an overrun) and
// returns the output, which starts as `out0`.
std::vector<float> run(cudnnHandle_t h, const Conv& c, Dir d, int algo, const std::vector<float>& a,
                       const std::vector<float>& b, const std::vector<float>& out0, float alpha = 1, float beta = 0) {
  size_t bytes = 0;
  EXPECT_EQ(workspace(h, c, d, algo, &bytes), CUDNN_STATUS_SUCCESS);
  DeviceBuffer da(a), db(b), dout(out0), ws(bytes);
  EXPECT_EQ(convolve(h, c, d, algo, alpha, da.get(), db.get(), beta, dout.get(), ws.get(), bytes),
            CUDNN_STATUS_SUCCESS)
      << name(d) << " algorithm " << algo;
  return dout.read();
}

// The forward convolution in double, straight from its definition.
std::vector<double> reference_forward(const Conv& c, const std::vector<float>& x, const std::vector<float>& w) {
  const Geometry& g = c.g;
  const int Cg = g.C / g.groups, Kg = g.K / g.groups;
  std::vector<double> y(c.y_elems());
  for (int n = 0; n < g.N; ++n)
    for (int k = 0; k < g.K; ++k)
      for (int p = 0; p < c.P; ++p)
        for (int q = 0; q < c.Q; ++q) {
          double s = 0;
          for (int ci = 0; ci < Cg; ++ci)
            for (int r = 0; r < g.R; ++r)
              for (int t = 0; t < g.S; ++t) {
                const int rr = g.mode == CUDNN_CONVOLUTION ? g.R - 1 - r : r;
                const int tt = g.mode == CUDNN_CONVOLUTION ? g.S - 1 - t : t;
                const int hi = p * g.stride_h - g.pad_h + rr * g.dil_h, wi = q * g.stride_w - g.pad_w + tt * g.dil_w;
                if (hi < 0 || hi >= g.H || wi < 0 || wi >= g.W) continue;
                const int cin = k / Kg * Cg + ci;
                s += double(w[((size_t(k) * Cg + ci) * g.R + r) * g.S + t]) *
                     x[((size_t(n) * g.C + cin) * g.H + hi) * g.W + wi];
              }
          y[((size_t(n) * g.K + k) * c.P + p) * c.Q + q] = s;
        }
  return y;
}

// ---- cuDNN: small cases by hand ------------------------------------------------------------------

const std::vector<float> kX3 = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // one 3x3 channel
const std::vector<float> kW2 = {1, 2, 3, 4};                 // one 2x2 filter

// Every supported forward algorithm must produce `want` on (x, w).
void expect_forward(const Geometry& g, const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<double>& want) {
  Dnn dnn;
  Conv c(g);
  ASSERT_EQ(c.y_elems(), want.size()) << str(g);
  for (int algo : supported_algos(dnn.h, c, Dir::Fwd))
    expect_near_all(run(dnn.h, c, Dir::Fwd, algo, x, w, std::vector<float>(want.size(), kNaN)), want, 1e-5,
                    str(g) + " forward algorithm " + std::to_string(algo));
}

TEST(EmuLibs, ConvForwardHandComputed) {
  expect_forward({1, 1, 3, 3, 1, 2, 2}, kX3, kW2, {37, 47, 67, 77});
  expect_forward({1, 1, 3, 3, 1, 2, 2, 1, 1}, kX3, kW2, {4, 11, 18, 9, 18, 37, 47, 21, 36, 67, 77, 33, 14, 23, 26, 9});
  expect_forward({1, 1, 3, 3, 1, 2, 2, 1, 1, 2, 2}, kX3, kW2, {4, 18, 36, 77});
  expect_forward({1, 1, 3, 3, 1, 2, 2, 0, 0, 1, 1, 2, 2}, kX3, kW2, {64});
  Geometry flipped{1, 1, 3, 3, 1, 2, 2};
  flipped.mode = CUDNN_CONVOLUTION;  // the filter rotated by 180 degrees
  expect_forward(flipped, kX3, kW2, {23, 33, 53, 63});
  // Two groups: channel 0 (1..9) with filter [[1,2],[3,4]], channel 1 (10..18) with [[1,0],[0,-1]].
  std::vector<float> x2 = kX3;
  for (float v : kX3) x2.push_back(v + 9);
  expect_forward({1, 2, 3, 3, 2, 2, 2, 0, 0, 1, 1, 1, 1, 2}, x2, {1, 2, 3, 4, 1, 0, 0, -1},
                 {37, 47, 67, 77, -4, -4, -4, -4});
}

TEST(EmuLibs, ConvBackwardHandComputed) {
  Dnn dnn;
  Conv c({1, 1, 3, 3, 1, 2, 2});
  const std::vector<float> dy = {1, 1, 1, 1};
  // dx: each input pixel collects the filter taps that touch it.
  for (int algo : supported_algos(dnn.h, c, Dir::BwdData))
    expect_near_all(run(dnn.h, c, Dir::BwdData, algo, kW2, dy, std::vector<float>(9, kNaN)),
                    {1, 3, 2, 4, 10, 6, 3, 7, 4}, 1e-5, "backward data algorithm " + std::to_string(algo));
  // dw[r][s]: the sum of the 2x2 input window at offset (r, s).
  for (int algo : supported_algos(dnn.h, c, Dir::BwdFilter))
    expect_near_all(run(dnn.h, c, Dir::BwdFilter, algo, kX3, dy, std::vector<float>(4, kNaN)), {12, 16, 24, 28}, 1e-5,
                    "backward filter algorithm " + std::to_string(algo));
}

TEST(EmuLibs, ConvOutputDimFormula) {
  struct Case {
    Geometry g;
    int P, Q;
  };
  const Case cases[] = {
      {{2, 3, 3, 3, 4, 2, 2}, 2, 2},
      {{1, 1, 7, 8, 1, 3, 3, 1, 1, 2, 2}, 4, 4},             // (7 + 2 - 3) / 2 + 1, (8 + 2 - 3) / 2 + 1
      {{1, 1, 10, 9, 1, 3, 3, 2, 1, 1, 1, 2, 3}, 10, 5},     // (10 + 4 - 5) + 1, (9 + 2 - 7) + 1
      {{1, 1, 8, 11, 1, 2, 1, 0, 0, 3, 4}, 3, 3},            // (8 - 2) / 3 + 1, (11 - 1) / 4 + 1
      {{1, 6, 5, 5, 9, 5, 5, 0, 0, 1, 1, 1, 1, 3}, 1, 1},    // grouped
  };
  for (const Case& cs : cases) {
    Conv c(cs.g);
    EXPECT_EQ(c.P, cs.P) << str(cs.g);
    EXPECT_EQ(c.Q, cs.Q) << str(cs.g);
  }
  Conv c({1, 4, 3, 3, 2, 2, 2});
  int n, k, p, q;
  ASSERT_EQ(cudnnSetConvolutionGroupCount(c.conv, 3), CUDNN_STATUS_SUCCESS);  // 4 channels, filter of 4, 3 groups
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(c.conv, c.x, c.w, &n, &k, &p, &q), CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetConvolutionGroupCount(c.conv, 1), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetConvolution2dDescriptor(c.conv, 0, 0, 1, 1, 3, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_SUCCESS);  // dilated filter height 4 > 3
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(c.conv, c.x, c.w, &n, &k, &p, &q), CUDNN_STATUS_BAD_PARAM);
}

// ---- cuDNN: every algorithm against the reference and the adjoint identities ---------------------

// <conv(x, w), dy> = <x, bwd_data(w, dy)> = <w, bwd_filter(x, dy)>, all in double.
const Geometry kGeometries[] = {
    {2, 4, 7, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},                          // grouped, unit stride
    {3, 3, 9, 8, 4, 3, 2, 1, 0, 2, 3},                                   // strided, pad_h != pad_w
    {2, 2, 10, 9, 3, 3, 3, 2, 1, 1, 1, 2, 3},                            // dilated
    {2, 6, 11, 8, 9, 2, 3, 0, 2, 2, 1, 1, 2, 3},                         // all of it, 3 groups
    {1, 2, 5, 6, 2, 2, 2, 3, 0},                                         // pad > R - 1
    {2, 4, 6, 7, 4, 3, 4, 1, 2, 1, 1, 1, 1, 2, CUDNN_CONVOLUTION},       // flipped filter
    {2, 3, 8, 8, 6, 3, 3, 2, 1, 2, 2, 2, 1, 3, CUDNN_CONVOLUTION},       // flipped, strided, dilated
};

TEST(EmuLibs, ConvEveryAlgorithmMatchesReferenceAndAdjoints) {
  Dnn dnn;
  unsigned seed = 10;
  for (const Geometry& g : kGeometries) {
    Conv c(g);
    const std::vector<float> x = random_vector(c.x_elems(), ++seed), w = random_vector(c.w_elems(), ++seed),
                             dy = random_vector(c.y_elems(), ++seed);
    const std::vector<double> y_ref = reference_forward(c, x, w);
    double ip = 0, scale = 1;  // <y, dy>, and the size of its terms
    for (size_t i = 0; i < y_ref.size(); ++i) ip += y_ref[i] * dy[i], scale += std::fabs(y_ref[i] * dy[i]);
    const double tol = 1e-5 * scale;

    const std::vector<int> fwd = supported_algos(dnn.h, c, Dir::Fwd);
    const std::vector<int> bwd_data = supported_algos(dnn.h, c, Dir::BwdData);
    const std::vector<int> bwd_filter = supported_algos(dnn.h, c, Dir::BwdFilter);
    EXPECT_GE(fwd.size(), 2u) << str(g);
    EXPECT_GE(bwd_data.size(), 2u) << str(g);
    EXPECT_GE(bwd_filter.size(), 2u) << str(g);
    for (int algo : fwd) {
      const std::vector<float> y = run(dnn.h, c, Dir::Fwd, algo, x, w, std::vector<float>(c.y_elems(), kNaN));
      expect_near_all(y, y_ref, 1e-4, str(g) + " forward algorithm " + std::to_string(algo));
      EXPECT_NEAR(dot(y, dy), ip, tol) << str(g) << " forward algorithm " << algo;
    }
    for (int algo : bwd_data) {
      const std::vector<float> dx = run(dnn.h, c, Dir::BwdData, algo, w, dy, std::vector<float>(c.x_elems(), kNaN));
      EXPECT_NEAR(dot(x, dx), ip, tol) << str(g) << " backward data algorithm " << algo;
    }
    for (int algo : bwd_filter) {
      const std::vector<float> dw = run(dnn.h, c, Dir::BwdFilter, algo, x, dy, std::vector<float>(c.w_elems(), kNaN));
      EXPECT_NEAR(dot(w, dw), ip, tol) << str(g) << " backward filter algorithm " << algo;
    }
  }
}

// ---- cuDNN: blending, workspace, support ----------------------------------------------------------

TEST(EmuLibs, ConvAlphaBetaBlending) {
  Dnn dnn;
  Conv c({2, 4, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2});  // unit stride: every emulated algorithm applies
  const std::vector<float> x = random_vector(c.x_elems(), 1), w = random_vector(c.w_elems(), 2),
                           dy = random_vector(c.y_elems(), 3);
  for (Dir d : kDirs) {
    const std::vector<float>& a = d == Dir::BwdData ? w : x;
    const std::vector<float>& b = d == Dir::Fwd ? w : dy;
    const std::vector<float> out0 = random_vector(out_elems(c, d), 4);
    for (int algo : supported_algos(dnn.h, c, d)) {
      const std::string what = std::string(name(d)) + " algorithm " + std::to_string(algo);
      const std::vector<float> plain = run(dnn.h, c, d, algo, a, b, std::vector<float>(out0.size(), kNaN));
      std::vector<double> want(out0.size());
      for (size_t i = 0; i < want.size(); ++i) want[i] = 2.0 * plain[i] - 0.5 * out0[i];
      expect_near_all(run(dnn.h, c, d, algo, a, b, out0, 2.0f, -0.5f), want, 1e-4, what + " alpha 2, beta -0.5");
      for (float v : plain) ASSERT_TRUE(std::isfinite(v)) << what << ": beta 0 let NaN through";
    }
  }
}

TEST(EmuLibs, ConvWorkspaceTooSmallIsBadParam) {
  Dnn dnn;
  Conv c({2, 2, 5, 5, 3, 3, 3, 1, 1});
  const int im2col_algo[] = {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1};
  for (Dir d : kDirs) {
    const int algo = im2col_algo[static_cast<int>(d)];
    size_t need = 0;
    ASSERT_EQ(workspace(dnn.h, c, d, algo, &need), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(need, size_t(2) * 3 * 3 * 5 * 5 * sizeof(float)) << name(d) << ": Cg R S x P Q floats";
    DeviceBuffer a(a_elems(c, d) * 4), b(b_elems(c, d) * 4), out(out_elems(c, d) * 4), ws(need);
    EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, a.get(), b.get(), 0, out.get(), ws.get(), need - 1),
              CUDNN_STATUS_BAD_PARAM)
        << name(d);
    EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, a.get(), b.get(), 0, out.get(), nullptr, 0), CUDNN_STATUS_BAD_PARAM)
        << name(d);
    // A claimed size larger than the allocation is caught as well.
    DeviceBuffer small_ws(need / 2);
    EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, a.get(), b.get(), 0, out.get(), small_ws.get(), need),
              CUDNN_STATUS_BAD_PARAM)
        << name(d);
  }
}

TEST(EmuLibs, ConvUnsupportedAlgorithms) {
  Dnn dnn;
  Conv strided({1, 2, 7, 7, 2, 3, 3, 1, 1, 2, 2});
  size_t bytes = 0;
  EXPECT_EQ(workspace(dnn.h, strided, Dir::Fwd, CUDNN_CONVOLUTION_FWD_ALGO_FFT, &bytes), CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(workspace(dnn.h, strided, Dir::BwdData, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, &bytes),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(workspace(dnn.h, strided, Dir::BwdFilter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, &bytes),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(workspace(dnn.h, strided, Dir::Fwd, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, &bytes),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(workspace(dnn.h, strided, Dir::Fwd, 99, &bytes), CUDNN_STATUS_BAD_PARAM);  // not an algorithm id
  DeviceBuffer x(strided.x_elems() * 4), w(strided.w_elems() * 4), y(strided.y_elems() * 4), ws(1 << 20);
  EXPECT_EQ(convolve(dnn.h, strided, Dir::Fwd, CUDNN_CONVOLUTION_FWD_ALGO_FFT, 1, x.get(), w.get(), 0, y.get(),
                     ws.get(), 1 << 20),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(convolve(dnn.h, strided, Dir::Fwd, CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, 1, x.get(), w.get(), 0, y.get(),
                     ws.get(), 1 << 20),
            CUDNN_STATUS_NOT_SUPPORTED);
  // Backward data's FFT also needs pad <= R - 1.
  Conv wide_pad({1, 1, 5, 5, 1, 2, 2, 2, 0});
  EXPECT_EQ(workspace(dnn.h, wide_pad, Dir::BwdData, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, &bytes),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(workspace(dnn.h, wide_pad, Dir::Fwd, CUDNN_CONVOLUTION_FWD_ALGO_FFT, &bytes), CUDNN_STATUS_SUCCESS);
}

// ---- cuDNN: heuristics and search ----------------------------------------------------------------

template <class Perf>
void expect_sorted(const Perf* perf, int n, bool by_time, const std::string& what) {
  bool failed_seen = false;
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) {
      failed_seen = true;
      continue;
    }
    EXPECT_FALSE(failed_seen) << what << ": a successful algorithm after a failed one";
    if (by_time && i > 0 && perf[i - 1].status == CUDNN_STATUS_SUCCESS) {
      EXPECT_LE(perf[i - 1].time, perf[i].time) << what << ": not fastest first";
    }
  }
}

// Checks a heuristics or search answer of direction d.
template <class Perf>
void check_answer(cudnnHandle_t h, const Conv& c, Dir d, const Perf* perf, int got, bool searched,
                  size_t ws_bytes) {
  const std::string what = std::string(name(d)) + (searched ? " search" : " heuristics");
  EXPECT_EQ(got, algo_count(d)) << what;
  expect_sorted(perf, got, searched, what);
  std::vector<int> seen;
  for (int i = 0; i < got; ++i) {
    const int algo = static_cast<int>(perf[i].algo);
    seen.push_back(algo);
    EXPECT_EQ(perf[i].mathType, CUDNN_FMA_MATH) << what;
    size_t need = 0;
    const cudnnStatus_t ws_status = workspace(h, c, d, algo, &need);
    if (ws_status != CUDNN_STATUS_SUCCESS) {
      EXPECT_EQ(perf[i].status, CUDNN_STATUS_NOT_SUPPORTED) << what << " algorithm " << algo;
      continue;
    }
    EXPECT_EQ(perf[i].memory, need) << what << " algorithm " << algo;
    const bool fits = !searched || need <= ws_bytes;
    EXPECT_EQ(perf[i].status, fits ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED) << what << " algorithm " << algo;
    if (searched && fits) {
      EXPECT_GE(perf[i].time, 0.0f) << what;
    }
    // cuDNN's backward ALGO_0 accumulates with atomics.
    const bool atomics = d != Dir::Fwd && algo == 0;
    EXPECT_EQ(perf[i].determinism, atomics ? CUDNN_NON_DETERMINISTIC : CUDNN_DETERMINISTIC) << what << " " << algo;
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end()) << what << ": an algorithm listed twice";
}

// Calls the direction's Find*Ex or Get*_v7 and checks the answer.
template <class Perf>
void query(cudnnHandle_t h, const Conv& c, Dir d, bool search, const DeviceBuffer& a, const DeviceBuffer& b,
           const DeviceBuffer& out, void* ws, size_t ws_bytes) {
  std::vector<Perf> perf(size_t(algo_count(d)) + 2);
  int got = -1;
  const int n = static_cast<int>(perf.size());
  cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
  if constexpr (std::is_same<Perf, cudnnConvolutionFwdAlgoPerf_t>::value) {
    s = search ? cudnnFindConvolutionForwardAlgorithmEx(h, c.x, a.get(), c.w, b.get(), c.conv, c.y, out.get(), n, &got,
                                                        perf.data(), ws, ws_bytes)
               : cudnnGetConvolutionForwardAlgorithm_v7(h, c.x, c.w, c.conv, c.y, n, &got, perf.data());
  } else if constexpr (std::is_same<Perf, cudnnConvolutionBwdDataAlgoPerf_t>::value) {
    s = search ? cudnnFindConvolutionBackwardDataAlgorithmEx(h, c.w, a.get(), c.y, b.get(), c.conv, c.x, out.get(), n,
                                                             &got, perf.data(), ws, ws_bytes)
               : cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c.w, c.y, c.conv, c.x, n, &got, perf.data());
  } else {
    s = search ? cudnnFindConvolutionBackwardFilterAlgorithmEx(h, c.x, a.get(), c.y, b.get(), c.conv, c.w, out.get(),
                                                               n, &got, perf.data(), ws, ws_bytes)
               : cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c.x, c.y, c.conv, c.w, n, &got, perf.data());
  }
  ASSERT_EQ(s, CUDNN_STATUS_SUCCESS) << name(d);
  check_answer(h, c, d, perf.data(), got, search, ws_bytes);
}

void query_all(cudnnHandle_t h, const Conv& c, Dir d, bool search, const DeviceBuffer& a, const DeviceBuffer& b,
               const DeviceBuffer& out, void* ws, size_t ws_bytes) {
  switch (d) {
    case Dir::Fwd: return query<cudnnConvolutionFwdAlgoPerf_t>(h, c, d, search, a, b, out, ws, ws_bytes);
    case Dir::BwdData: return query<cudnnConvolutionBwdDataAlgoPerf_t>(h, c, d, search, a, b, out, ws, ws_bytes);
    case Dir::BwdFilter: return query<cudnnConvolutionBwdFilterAlgoPerf_t>(h, c, d, search, a, b, out, ws, ws_bytes);
  }
}

TEST(EmuLibs, ConvHeuristicsAndSearchListEveryAlgorithm) {
  Dnn dnn;
  Conv c({2, 4, 8, 8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2});
  const std::vector<float> x = random_vector(c.x_elems(), 5), w = random_vector(c.w_elems(), 6),
                           dy = random_vector(c.y_elems(), 7);
  for (Dir d : kDirs) {
    int max_count = 0;
    switch (d) {
      case Dir::Fwd: ASSERT_EQ(cudnnGetConvolutionForwardAlgorithmMaxCount(dnn.h, &max_count), CUDNN_STATUS_SUCCESS); break;
      case Dir::BwdData:
        ASSERT_EQ(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(dnn.h, &max_count), CUDNN_STATUS_SUCCESS);
        break;
      case Dir::BwdFilter:
        ASSERT_EQ(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(dnn.h, &max_count), CUDNN_STATUS_SUCCESS);
        break;
    }
    EXPECT_EQ(max_count, algo_count(d));
    size_t most = 0;
    for (int algo : supported_algos(dnn.h, c, d)) {
      size_t need = 0;
      workspace(dnn.h, c, d, algo, &need);
      most = std::max(most, need);
    }
    DeviceBuffer a(d == Dir::BwdData ? w : x), b(d == Dir::Fwd ? w : dy), out(out_elems(c, d) * 4), ws(most);
    query_all(dnn.h, c, d, false, a, b, out, nullptr, 0);
    query_all(dnn.h, c, d, true, a, b, out, ws.get(), most);
    query_all(dnn.h, c, d, true, a, b, out, nullptr, 0);  // only the workspace-free algorithms can run
  }
}

TEST(EmuLibs, ConvSearchWritesTheOutput) {
  Dnn dnn;
  Conv c({1, 2, 6, 6, 3, 3, 3, 1, 1});
  const std::vector<float> x = random_vector(c.x_elems(), 8), w = random_vector(c.w_elems(), 9);
  DeviceBuffer dx(x), dw(w), dy(std::vector<float>(c.y_elems(), kNaN));
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int got = 0;
  ASSERT_EQ(cudnnFindConvolutionForwardAlgorithmEx(dnn.h, c.x, dx.get(), c.w, dw.get(), c.conv, c.y, dy.get(), 1, &got,
                                                   perf, nullptr, 0),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(got, 1);  // as many as requested
  EXPECT_EQ(perf[0].status, CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(perf[0].algo, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);  // the only one without workspace
  expect_near_all(dy.read(), reference_forward(c, x, w), 1e-4, "the search's output");
}

TEST(EmuLibs, ConvNonDeterministicAlgorithmsDifferOnlyInRounding) {
  Dnn dnn;
  Conv c({8, 3, 9, 9, 4, 3, 3, 1, 1});
  const std::vector<float> x = random_vector(c.x_elems(), 11), w = random_vector(c.w_elems(), 12),
                           dy = random_vector(c.y_elems(), 13);
  for (Dir d : {Dir::BwdData, Dir::BwdFilter}) {
    const std::vector<float>& a = d == Dir::BwdData ? w : x;
    const std::vector<float> first = run(dnn.h, c, d, 0, a, dy, std::vector<float>(out_elems(c, d)));
    bool differs = false;
    for (int i = 0; i < 8 && !differs; ++i) {
      const std::vector<float> again = run(dnn.h, c, d, 0, a, dy, std::vector<float>(out_elems(c, d)));
      expect_near_all(again, to_double(first), 1e-4, std::string(name(d)) + " ALGO_0");
      differs = std::memcmp(again.data(), first.data(), first.size() * sizeof(float)) != 0;
    }
    EXPECT_TRUE(differs) << name(d) << " ALGO_0 gave bit-identical results in 9 runs";
    // ALGO_1 is deterministic: bit-identical every time.
    const std::vector<float> det = run(dnn.h, c, d, 1, a, dy, std::vector<float>(out_elems(c, d)));
    const std::vector<float> det2 = run(dnn.h, c, d, 1, a, dy, std::vector<float>(out_elems(c, d)));
    EXPECT_EQ(std::memcmp(det.data(), det2.data(), det.size() * sizeof(float)), 0) << name(d) << " ALGO_1";
  }
}

// ---- cuDNN: descriptors and argument checks -------------------------------------------------------

TEST(EmuLibs, ConvDescriptorChecks) {
  cudnnTensorDescriptor_t t = nullptr;
  ASSERT_EQ(cudnnCreateTensorDescriptor(&t), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 0, 1, 1, 1), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t, static_cast<cudnnTensorFormat_t>(7), CUDNN_DATA_FLOAT, 1, 1, 1, 1),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, static_cast<cudnnDataType_t>(99), 1, 1, 1, 1),
            CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_FLOAT, 2, 3, 4, 5, 100, 20, 5, 1), CUDNN_STATUS_SUCCESS);
  cudnnDataType_t type{};
  int n, c, h, w, ns, cs, hs, ws;
  ASSERT_EQ(cudnnGetTensor4dDescriptor(t, &type, &n, &c, &h, &w, &ns, &cs, &hs, &ws), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(type, CUDNN_DATA_FLOAT);
  EXPECT_EQ((std::vector<int>{n, c, h, w, ns, cs, hs, ws}), (std::vector<int>{2, 3, 4, 5, 100, 20, 5, 1}));
  ASSERT_EQ(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 3, 4, 5), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnGetTensor4dDescriptor(t, &type, &n, &c, &h, &w, &ns, &cs, &hs, &ws), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ((std::vector<int>{ns, cs, hs, ws}), (std::vector<int>{60, 1, 15, 3}));
  EXPECT_EQ(cudnnDestroyTensorDescriptor(t), CUDNN_STATUS_SUCCESS);

  cudnnFilterDescriptor_t f = nullptr;
  ASSERT_EQ(cudnnCreateFilterDescriptor(&f), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 2, 3, 0, 3), CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 2, 3, 4, 5), CUDNN_STATUS_SUCCESS);
  cudnnTensorFormat_t format{};
  ASSERT_EQ(cudnnGetFilter4dDescriptor(f, &type, &format, &n, &c, &h, &w), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ((std::vector<int>{n, c, h, w}), (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(format, CUDNN_TENSOR_NCHW);
  EXPECT_EQ(cudnnDestroyFilterDescriptor(f), CUDNN_STATUS_SUCCESS);

  cudnnConvolutionDescriptor_t conv = nullptr;
  ASSERT_EQ(cudnnCreateConvolutionDescriptor(&conv), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv, 0, 0, 1, 1, 0, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolutionGroupCount(conv, 0), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolutionMathType(conv, static_cast<cudnnMathType_t>(7)), CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetConvolution2dDescriptor(conv, 1, 2, 3, 4, 5, 6, CUDNN_CONVOLUTION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetConvolutionGroupCount(conv, 4), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetConvolutionMathType(conv, CUDNN_TENSOR_OP_MATH), CUDNN_STATUS_SUCCESS);
  int ph, pw, u, v, dh, dw, groups;
  cudnnConvolutionMode_t mode{};
  cudnnMathType_t math{};
  ASSERT_EQ(cudnnGetConvolution2dDescriptor(conv, &ph, &pw, &u, &v, &dh, &dw, &mode, &type), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ((std::vector<int>{ph, pw, u, v, dh, dw}), (std::vector<int>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(mode, CUDNN_CONVOLUTION);
  ASSERT_EQ(cudnnGetConvolutionGroupCount(conv, &groups), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(groups, 4);
  ASSERT_EQ(cudnnGetConvolutionMathType(conv, &math), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(math, CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(cudnnDestroyConvolutionDescriptor(conv), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnDestroyConvolutionDescriptor(conv), CUDNN_STATUS_BAD_PARAM);  // already destroyed
}

TEST(EmuLibs, ConvShapeMismatchesAreBadParam) {
  Dnn dnn;
  Conv c({2, 4, 6, 6, 4, 3, 3, 0, 0, 1, 1, 1, 1, 2});
  DeviceBuffer x(c.x_elems() * 4), w(c.w_elems() * 4), y(c.y_elems() * 4);
  auto forward = [&] {
    return convolve(dnn.h, c, Dir::Fwd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 1, x.get(), w.get(), 0, y.get(),
                    nullptr, 0);
  };
  ASSERT_EQ(forward(), CUDNN_STATUS_SUCCESS);
  // y of the wrong size.
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 4, 5, 4), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(forward(), CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 4, 4, 4), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(forward(), CUDNN_STATUS_SUCCESS);
  // Groups that do not divide the channels, or that the filter's channels do not match.
  ASSERT_EQ(cudnnSetConvolutionGroupCount(c.conv, 3), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(forward(), CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetConvolutionGroupCount(c.conv, 1), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(forward(), CUDNN_STATUS_BAD_PARAM);  // filter has 2 channels, x has 4
  ASSERT_EQ(cudnnSetConvolutionGroupCount(c.conv, 2), CUDNN_STATUS_SUCCESS);
  // Other data types and layouts are not emulated.
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 4, 6, 6), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(forward(), CUDNN_STATUS_NOT_SUPPORTED);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, 2, 4, 6, 6), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(forward(), CUDNN_STATUS_BAD_PARAM);  // x double, w and y float
  ASSERT_EQ(cudnnSetTensor4dDescriptor(c.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, 2, 4, 4, 4), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetFilter4dDescriptor(c.w, CUDNN_DATA_DOUBLE, CUDNN_TENSOR_NCHW, 4, 2, 3, 3), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(forward(), CUDNN_STATUS_NOT_SUPPORTED);
}

TEST(EmuLibs, ConvRejectsHostAndShortBuffers) {
  Dnn dnn;
  Conv c({1, 2, 5, 5, 2, 3, 3});
  std::vector<float> host_x(c.x_elems());
  DeviceBuffer x(c.x_elems() * 4), w(c.w_elems() * 4), y(c.y_elems() * 4), short_y(c.y_elems() * 4 - 4);
  for (Dir d : kDirs) {
    const int algo = d == Dir::Fwd ? CUDNN_CONVOLUTION_FWD_ALGO_GEMM : 1;  // im2col: the workspace is checked too
    size_t need = 0;
    ASSERT_EQ(workspace(dnn.h, c, d, algo, &need), CUDNN_STATUS_SUCCESS);
    DeviceBuffer ws(need);
    // x is an input of forward and backward filter, and the output of backward data.
    const void* a = d == Dir::BwdData ? w.get() : x.get();
    const void* b = d == Dir::Fwd ? w.get() : y.get();
    void* out = d == Dir::Fwd ? y.get() : d == Dir::BwdData ? x.get() : w.get();
    EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, a, b, 0, out, ws.get(), need), CUDNN_STATUS_SUCCESS) << name(d);
    const void* host_a = d == Dir::BwdData ? a : host_x.data();
    void* host_out = d == Dir::BwdData ? host_x.data() : out;
    EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, host_a, b, 0, host_out, ws.get(), need), CUDNN_STATUS_BAD_PARAM)
        << name(d) << ": x in host memory";
    if (d == Dir::Fwd) {
      EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, a, b, 0, short_y.get(), ws.get(), need), CUDNN_STATUS_BAD_PARAM)
          << name(d) << ": y one float short";
    } else {
      EXPECT_EQ(convolve(dnn.h, c, d, algo, 1, a, short_y.get(), 0, out, ws.get(), need), CUDNN_STATUS_BAD_PARAM)
          << name(d) << ": dy one float short";
    }
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(EmuLibs, CudnnHandleStreamAndVersion) {
  EXPECT_EQ(cudnnGetVersion(), size_t(CUDNN_VERSION));
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED), "CUDNN_STATUS_NOT_SUPPORTED");
  EXPECT_EQ(cudnnCreate(nullptr), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetStream(nullptr, nullptr), CUDNN_STATUS_BAD_PARAM);

  Dnn dnn;
  cudaStream_t stream = nullptr, got = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cudnnSetStream(dnn.h, stream), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnGetStream(dnn.h, &got), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(got, stream);
  Conv c({1, 1, 3, 3, 1, 2, 2});
  DeviceBuffer x(kX3), w(kW2), y(std::vector<float>(4));
  ASSERT_EQ(convolve(dnn.h, c, Dir::Fwd, 0, 1, x.get(), w.get(), 0, y.get(), nullptr, 0), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  expect_near_all(y.read(), {37, 47, 67, 77}, 0, "on a stream");
  ASSERT_EQ(cudnnSetStream(dnn.h, nullptr), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);

  cudnnHandle_t dead = nullptr;
  ASSERT_EQ(cudnnCreate(&dead), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnDestroy(dead), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnDestroy(dead), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetStream(dead, nullptr), CUDNN_STATUS_BAD_PARAM);
}

}  // namespace

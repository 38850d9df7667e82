// CUDA twins of 2-D convolution through cuDNN 9's convolution API (NCHW float32, grouped).
//
// Plans. The first call for a (device, direction, input, filter, output shapes, stride, padding,
// dilation, groups) creates the cuDNN descriptors once and lets cuDNN time its algorithms on the
// call's own buffers (cudnnFind*AlgorithmEx); the plan (descriptors + the usable algorithms,
// fastest first) is cached for the life of the process, so later calls only look it up. The
// cache is guarded by a mutex; searches are serialised by a second one so that two threads never
// time kernels against each other. The Find functions run the algorithms for real: they write the
// output buffer (y, dx or dw), which the call overwrites right after.
//
// Workspace. Workspaces come from kiln's caching allocator (a uint8 tensor of that many bytes on
// the current stream) and are capped at KILN_CUDNN_WORKSPACE_MB (default 1024 MiB): the search
// only considers algorithms whose workspace fits the cap, and is itself run with the largest
// workspace those need (or the largest that can be allocated, trying smaller ones on
// out-of-memory). When a call cannot allocate an algorithm's workspace (kiln::OutOfMemoryError),
// it falls back to the next algorithm of the search results that needs less, down to one that
// needs none, and the plan remembers the fallback, so that persistent memory pressure does not
// pay for a failed allocation (which empties the allocator's cache) on every call.
//
// Precision. The math type is CUDNN_FMA_MATH: plain FP32 FMA kernels. (CUDNN_DEFAULT_MATH lets
// cuDNN use TF32 tensor cores for float data on sm_80 and newer; like cuBLAS in blas.cpp, TF32
// stays off until kiln has a precision option.) cuDNN may still pick FFT or Winograd algorithms,
// whose rounding differs from a direct sum. KILN_CUDNN_DETERMINISTIC=1 keeps only deterministic
// algorithms (cuDNN's backward ALGO_0 / ALGO_3 accumulate with atomics); KILN_CUDNN_VERBOSE=1
// prints each plan's choice.
#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/op_scope.h"
#include "cuda/runtime.h"

namespace kiln::cuda {

namespace {

using i64 = std::int64_t;

// ---- settings (read once) ---------------------------------------------------------------------------

std::size_t workspace_cap() {
  static const std::size_t cap = [] {
    const char* s = std::getenv("KILN_CUDNN_WORKSPACE_MB");
    if (!s || !*s) return std::size_t{1024} << 20;
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(s, &end, 10);
    KILN_CHECK(end && *end == '\0' && *s != '-', "KILN_CUDNN_WORKSPACE_MB must be a number of MiB, got '", s, "'");
    return static_cast<std::size_t>(mb) << 20;
  }();
  return cap;
}

bool env_flag(const char* name) {
  const char* s = std::getenv(name);
  return s && *s && std::string(s) != "0";
}

bool deterministic_only() {
  static const bool on = env_flag("KILN_CUDNN_DETERMINISTIC");
  return on;
}

bool verbose() {
  static const bool on = env_flag("KILN_CUDNN_VERBOSE");
  return on;
}

// ---- descriptors (RAII) ----------------------------------------------------------------------------

// Destroy calls cannot throw from a destructor: a failure (which would mean a corrupted
// descriptor) is reported on stderr.
void warn_destroy(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS)
    std::fprintf(stderr, "kiln: warning: cuDNN error: %s failed: %s\n", what, cudnnGetErrorString(s));
}

class TensorDesc {
 public:
  TensorDesc() { KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~TensorDesc() { warn_destroy(cudnnDestroyTensorDescriptor(d_), "cudnnDestroyTensorDescriptor"); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  void set(int n, int c, int h, int w) {
    KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  }
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc() { KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
  ~FilterDesc() { warn_destroy(cudnnDestroyFilterDescriptor(d_), "cudnnDestroyFilterDescriptor"); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  void set(int k, int c, int r, int s) {
    KILN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c, r, s));
  }
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc() { KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
  ~ConvDesc() { warn_destroy(cudnnDestroyConvolutionDescriptor(d_), "cudnnDestroyConvolutionDescriptor"); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  void set(const Conv2dParams& p) {
    KILN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d_, static_cast<int>(p.pad_h), static_cast<int>(p.pad_w),
                                                     static_cast<int>(p.stride_h), static_cast<int>(p.stride_w),
                                                     static_cast<int>(p.dilation_h), static_cast<int>(p.dilation_w),
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    KILN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d_, static_cast<int>(p.groups)));
    KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(d_, CUDNN_FMA_MATH));
  }
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// ---- plans -----------------------------------------------------------------------------------------

enum class Dir { Forward, BackwardData, BackwardFilter };
const char* dir_name(Dir d) {
  return d == Dir::Forward ? "forward" : d == Dir::BackwardData ? "backward data" : "backward filter";
}

// The shapes of one convolution, from the tensors of any direction: x [N, C, H, W],
// w [K, C/groups, R, S], y [N, K, P, Q].
struct Shapes {
  i64 N, C, H, W, K, Cg, R, S, P, Q;
};

Shapes shapes_of(const Tensor& x, const Tensor& w, const Tensor& y) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(1), w.size(2), w.size(3), y.size(2), y.size(3)};
}

using Key = std::array<i64, 19>;
Key key_of(int device, Dir dir, const Shapes& s, const Conv2dParams& p) {
  return {device,     static_cast<i64>(dir), s.N,        s.C,          s.H,          s.W,       s.K,
          s.Cg,       s.R,                   s.S,        s.P,          s.Q,          p.stride_h, p.stride_w,
          p.pad_h,    p.pad_w,               p.dilation_h, p.dilation_w, p.groups};
}

struct Candidate {
  int algo;               // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  std::size_t workspace;  // bytes
  float ms;               // time measured by the search
};

struct Plan {
  TensorDesc x, y;  // x: input (dx for backward data); y: output (dy for the backward passes)
  FilterDesc w;
  ConvDesc conv;
  std::vector<Candidate> algos;  // fastest first
  std::atomic<std::size_t> first{0};  // the first candidate to try (raised after out-of-memory)
};

// Per direction: the cuDNN calls (they differ only in argument order and types).
struct Buffers {
  const void* a;  // forward: x, w; backward data: w, dy; backward filter: x, dy
  const void* b;
  void* out;      // y, dx, dw
};

template <Dir D>
struct Calls;

template <>
struct Calls<Dir::Forward> {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static int max_count(cudnnHandle_t h) {
    int n = 0;
    KILN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &n));
    return n;
  }
  static void heuristics(cudnnHandle_t h, const Plan& p, int n, int* got, Perf* perf) {
    KILN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(), n, got,
                                                            perf));
  }
  static void find(cudnnHandle_t h, const Plan& p, const Buffers& buf, int n, int* got, Perf* perf, void* ws,
                   std::size_t ws_bytes) {
    KILN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, p.x.get(), buf.a, p.w.get(), buf.b, p.conv.get(),
                                                            p.y.get(), buf.out, n, got, perf, ws, ws_bytes));
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Plan& p, int algo, std::size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(),
                                                   static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
  }
  static void run(cudnnHandle_t h, const Plan& p, const Buffers& buf, int algo, void* ws, std::size_t ws_bytes) {
    const float alpha = 1.0f, beta = 0.0f;
    KILN_CUDNN_CHECK(cudnnConvolutionForward(h, &alpha, p.x.get(), buf.a, p.w.get(), buf.b, p.conv.get(),
                                             static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws, ws_bytes, &beta,
                                             p.y.get(), buf.out));
  }
};

template <>
struct Calls<Dir::BackwardData> {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static int max_count(cudnnHandle_t h) {
    int n = 0;
    KILN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &n));
    return n;
  }
  static void heuristics(cudnnHandle_t h, const Plan& p, int n, int* got, Perf* perf) {
    KILN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(), n,
                                                                 got, perf));
  }
  static void find(cudnnHandle_t h, const Plan& p, const Buffers& buf, int n, int* got, Perf* perf, void* ws,
                   std::size_t ws_bytes) {
    KILN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p.w.get(), buf.a, p.y.get(), buf.b, p.conv.get(),
                                                                 p.x.get(), buf.out, n, got, perf, ws, ws_bytes));
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Plan& p, int algo, std::size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(),
                                                        static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
  }
  static void run(cudnnHandle_t h, const Plan& p, const Buffers& buf, int algo, void* ws, std::size_t ws_bytes) {
    const float alpha = 1.0f, beta = 0.0f;
    KILN_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &alpha, p.w.get(), buf.a, p.y.get(), buf.b, p.conv.get(),
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws, ws_bytes,
                                                  &beta, p.x.get(), buf.out));
  }
};

template <>
struct Calls<Dir::BackwardFilter> {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static int max_count(cudnnHandle_t h) {
    int n = 0;
    KILN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &n));
    return n;
  }
  static void heuristics(cudnnHandle_t h, const Plan& p, int n, int* got, Perf* perf) {
    KILN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(),
                                                                   n, got, perf));
  }
  static void find(cudnnHandle_t h, const Plan& p, const Buffers& buf, int n, int* got, Perf* perf, void* ws,
                   std::size_t ws_bytes) {
    KILN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x.get(), buf.a, p.y.get(), buf.b,
                                                                   p.conv.get(), p.w.get(), buf.out, n, got, perf, ws,
                                                                   ws_bytes));
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Plan& p, int algo, std::size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(),
                                                          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  }
  static void run(cudnnHandle_t h, const Plan& p, const Buffers& buf, int algo, void* ws, std::size_t ws_bytes) {
    const float alpha = 1.0f, beta = 0.0f;  // beta = 0: dw is overwritten
    KILN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &alpha, p.x.get(), buf.a, p.y.get(), buf.b, p.conv.get(),
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), ws, ws_bytes,
                                                    &beta, p.w.get(), buf.out));
  }
};

std::string describe(Dir dir, const Shapes& s, const Conv2dParams& p) {
  return kiln::detail::str("conv2d ", dir_name(dir), " x ", shape_str({s.N, s.C, s.H, s.W}), " w ",
                           shape_str({s.K, s.Cg, s.R, s.S}), " y ", shape_str({s.N, s.K, s.P, s.Q}), " stride ",
                           p.stride_h, "x", p.stride_w, " pad ", p.pad_h, "x", p.pad_w, " dilation ", p.dilation_h,
                           "x", p.dilation_w, " groups ", p.groups);
}

int to_int(i64 v, const Shapes& s, Dir dir, const Conv2dParams& p) {
  KILN_CHECK(v >= 0 && v <= INT_MAX, describe(dir, s, p), ": a size exceeds cuDNN's int range");
  return static_cast<int>(v);
}

// A uint8 tensor of `bytes` from the caching allocator (undefined when bytes == 0).
Tensor workspace_tensor(std::size_t bytes, int device) {
  if (bytes == 0) return Tensor();
  return Tensor::empty({static_cast<i64>(bytes)}, DType::UInt8, Device::cuda(device));
}

// Creates the descriptors and searches the algorithms (the caller holds the search mutex).
template <Dir D>
std::unique_ptr<Plan> make_plan(cudnnHandle_t h, int device, const Shapes& s, const Conv2dParams& p,
                                const Buffers& buf) {
  using C = Calls<D>;
  using Perf = typename C::Perf;
  auto plan = std::make_unique<Plan>();
  constexpr i64 kIntMax = INT_MAX;
  KILN_CHECK(s.N * s.C * s.H * s.W <= kIntMax && s.N * s.K * s.P * s.Q <= kIntMax && s.K * s.Cg * s.R * s.S <= kIntMax,
             describe(D, s, p), ": tensors of 2^31 or more elements are not supported by cuDNN's convolution API; "
             "use a smaller batch");
  plan->x.set(to_int(s.N, s, D, p), to_int(s.C, s, D, p), to_int(s.H, s, D, p), to_int(s.W, s, D, p));
  plan->y.set(to_int(s.N, s, D, p), to_int(s.K, s, D, p), to_int(s.P, s, D, p), to_int(s.Q, s, D, p));
  plan->w.set(to_int(s.K, s, D, p), to_int(s.Cg, s, D, p), to_int(s.R, s, D, p), to_int(s.S, s, D, p));
  plan->conv.set(p);

  // cuDNN must agree with kiln on the output shape (the dispatcher computed it).
  int n = 0, k = 0, ph = 0, qw = 0;
  KILN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv.get(), plan->x.get(), plan->w.get(), &n, &k, &ph, &qw));
  KILN_CHECK(n == s.N && k == s.K && ph == s.P && qw == s.Q, describe(D, s, p), ": cuDNN computes an output of ",
             shape_str({n, k, ph, qw}));

  const std::size_t cap = workspace_cap();
  const int max_n = C::max_count(h);
  std::vector<Perf> perf(static_cast<std::size_t>(std::max(max_n, 1)));
  int got = 0;

  // Workspace for the search: the largest that any algorithm needs within the cap, according to
  // cuDNN's heuristics; when that cannot be allocated, the next smaller need, down to none.
  C::heuristics(h, *plan, max_n, &got, perf.data());
  std::vector<std::size_t> needs{0};
  for (int i = 0; i < got; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= cap) needs.push_back(perf[i].memory);
  std::sort(needs.begin(), needs.end(), std::greater<std::size_t>());
  needs.erase(std::unique(needs.begin(), needs.end()), needs.end());
  Tensor ws;
  std::size_t ws_bytes = 0;
  for (std::size_t need : needs) {
    try {
      ws = workspace_tensor(need, device);
      ws_bytes = need;
      break;
    } catch (const OutOfMemoryError&) {
      continue;  // try a smaller workspace (the last candidate, 0 bytes, allocates nothing)
    }
  }

  got = 0;
  C::find(h, *plan, buf, max_n, &got, perf.data(), ws.defined() ? ws.raw_data() : nullptr, ws_bytes);
  for (int i = 0; i < got; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > ws_bytes) continue;
    if (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (deterministic_only() && r.determinism != CUDNN_DETERMINISTIC) continue;
    // The workspace the algorithm asks for outside the search; an algorithm cuDNN cannot size
    // here is left out rather than failing the whole convolution.
    std::size_t bytes = 0;
    if (C::workspace(h, *plan, static_cast<int>(r.algo), &bytes) != CUDNN_STATUS_SUCCESS) continue;
    plan->algos.push_back({static_cast<int>(r.algo), std::max(bytes, r.memory), r.time});
  }
  KILN_CHECK(!plan->algos.empty(), describe(D, s, p), ": cuDNN found no usable algorithm (workspace cap ", cap >> 20,
             " MiB", deterministic_only() ? ", deterministic only" : "", ")");
  if (verbose()) {
    std::string line = "kiln: cuDNN " + describe(D, s, p) + " on cuda:" + std::to_string(device) + ":";
    for (const Candidate& c : plan->algos)
      line += kiln::detail::str(" algo ", c.algo, " (", c.ms, " ms, ", c.workspace, " B)");
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  return plan;
}

struct PlanCache {
  std::mutex mutex;         // guards plans
  std::mutex search_mutex;  // one search at a time
  std::map<Key, std::shared_ptr<Plan>> plans;
};

PlanCache& plan_cache() {
  static PlanCache cache;
  return cache;
}

template <Dir D>
std::shared_ptr<Plan> get_plan(cudnnHandle_t h, int device, const Shapes& s, const Conv2dParams& p,
                               const Buffers& buf) {
  PlanCache& c = plan_cache();
  const Key key = key_of(device, D, s, p);
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.plans.find(key);
    if (it != c.plans.end()) return it->second;
  }
  std::lock_guard<std::mutex> search(c.search_mutex);
  {
    std::lock_guard<std::mutex> lock(c.mutex);  // another thread may have searched meanwhile
    auto it = c.plans.find(key);
    if (it != c.plans.end()) return it->second;
  }
  std::shared_ptr<Plan> plan = make_plan<D>(h, device, s, p, buf);
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.plans.emplace(key, std::move(plan)).first->second;
}

// Runs the plan's fastest algorithm whose workspace can be allocated (see the file comment).
template <Dir D>
void run(int device, const Shapes& s, const Conv2dParams& p, const Buffers& buf) {
  cudnnHandle_t h = cudnn(device);  // bound to the current stream
  const std::shared_ptr<Plan> plan = get_plan<D>(h, device, s, p, buf);
  const std::size_t start = plan->first.load(std::memory_order_relaxed);
  std::size_t failed = SIZE_MAX;  // workspace size of the last allocation that failed
  std::exception_ptr oom;
  for (std::size_t i = start; i < plan->algos.size(); ++i) {
    const Candidate& c = plan->algos[i];
    if (c.workspace >= failed) continue;  // no smaller than what could not be allocated
    Tensor ws;
    try {
      ws = workspace_tensor(c.workspace, device);
    } catch (const OutOfMemoryError&) {
      failed = c.workspace;
      oom = std::current_exception();
      continue;
    }
    Calls<D>::run(h, *plan, buf, c.algo, ws.defined() ? ws.raw_data() : nullptr, c.workspace);
    if (i != start) {
      std::size_t expected = start;  // remember the fallback (first caller wins)
      plan->first.compare_exchange_strong(expected, i);
    }
    return;  // ws goes back to the allocator; stream order keeps it alive for the kernels
  }
  if (oom) std::rethrow_exception(oom);
  KILN_FAIL(describe(D, s, p), ": no cuDNN algorithm left to run");
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Conv2dParams& p, Tensor& y) {
  if (y.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) {  // an empty sum (C = 0)
    fill(y, 0.0f);
    return;
  }
  run<Dir::Forward>(y.device().index, shapes_of(x, w, y), p, {x.data<float>(), w.data<float>(), y.data<float>()});
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Conv2dParams& p, Tensor& dx) {
  if (dx.numel() == 0) return;
  if (dy.numel() == 0 || w.numel() == 0) {
    fill(dx, 0.0f);
    return;
  }
  run<Dir::BackwardData>(dx.device().index, shapes_of(dx, w, dy), p,
                         {w.data<float>(), dy.data<float>(), dx.data<float>()});
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Conv2dParams& p, Tensor& dw) {
  if (dw.numel() == 0) return;
  if (x.numel() == 0 || dy.numel() == 0) {  // an empty batch
    fill(dw, 0.0f);
    return;
  }
  run<Dir::BackwardFilter>(dw.device().index, shapes_of(x, dw, dy), p,
                           {x.data<float>(), dy.data<float>(), dw.data<float>()});
}

}  // namespace kiln::cuda

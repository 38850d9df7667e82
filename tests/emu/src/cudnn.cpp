// The emulated cuDNN 9: the legacy convolution API subset kiln calls (handles, tensor, filter and
// convolution descriptors, output size, algorithm heuristics and search, workspace sizes, and the
// three convolution directions), float NCHW only.
//
// Algorithms. Each direction has a few emulated algorithms under the real enum ids, with
// different workspace needs, support conditions and determinism (the table in "algorithms"
// below), so that kiln's search, workspace handling and fallbacks meet the cases a GPU presents.
// The other ids exist but answer CUDNN_STATUS_NOT_SUPPORTED.
//
// Checks. Descriptors must agree with each other as cuDNN requires (BAD_PARAM otherwise); other
// data types and layouts are NOT_SUPPORTED. Buffers must be device memory covering what the call
// touches, and the workspace must be at least what the algorithm needs: otherwise the call is
// reported (kiln_emu::report) and fails with BAD_PARAM rather than write out of bounds, which a
// GPU would do silently.
//
// Ordering. The convolutions run in stream order on the handle's stream (the call returns before
// the output is written); the Find functions wait for their runs, as cuDNN's do.
#include <cudnn.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "dnn_math.h"
#include "internal.h"

// ---- the objects behind the opaque handle types -------------------------------------------------

struct cudnnContext {
  cudaStream_t stream = nullptr;  // nullptr: the legacy default stream (cuDNN's default)
};

struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
  int n_stride = 0, c_stride = 0, h_stride = 0, w_stride = 0;
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int k = 0, c = 0, r = 0, s = 0;
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  int groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

namespace dnn = kiln_emu::dnn;
using std::size_t;

// ---- object registry --------------------------------------------------------------------------

// The live objects of one kind, so that a destroyed or made-up handle or descriptor is an error
// rather than undefined behaviour.
template <class T>
class Live {
 public:
  static T* create() {
    T* p = new T();
    std::lock_guard<std::mutex> lock(mutex());
    objects().insert(p);
    return p;
  }
  static bool destroy(T* p) {
    {
      std::lock_guard<std::mutex> lock(mutex());
      if (objects().erase(p) == 0) return false;
    }
    delete p;
    return true;
  }
  static bool contains(const T* p) {
    std::lock_guard<std::mutex> lock(mutex());
    return objects().count(p) != 0;
  }

 private:
  static std::mutex& mutex() {
    static std::mutex* m = new std::mutex();  // never destroyed: kiln destroys descriptors at exit
    return *m;
  }
  static std::set<const T*>& objects() {
    static auto* s = new std::set<const T*>();
    return *s;
  }
};

cudnnStatus_t bad(const std::string& msg) {
  kiln_emu::report(msg);
  return CUDNN_STATUS_BAD_PARAM;
}

// Checks that `p` is a live object of its kind; `set` additionally requires it to be initialised.
template <class T>
cudnnStatus_t check_obj(const T* p, const char* call, const char* what, bool need_set) {
  if (!p) return CUDNN_STATUS_BAD_PARAM;
  if (!Live<T>::contains(p)) return bad(std::string(call) + ": " + what + " was destroyed or never created");
  if constexpr (!std::is_same<T, cudnnContext>::value) {
    if (need_set && !p->set) return bad(std::string(call) + ": " + what + " was never set");
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_handle(const cudnnContext* h, const char* call) { return check_obj(h, call, "the handle", false); }

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// Whether `p` is float-aligned device memory holding the `bytes` the call touches; reports it if not.
bool device_arg(const void* p, size_t bytes, const char* call, const char* arg) {
  if (bytes == 0) return true;
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(float) != 0) {
    kiln_emu::report(std::string(call) + ": " + arg + " (" + hex(p) + ") is not aligned for float");
    return false;
  }
  if (kiln_emu::device_range(p, bytes)) return true;
  kiln_emu::report(std::string(call) + ": " + arg + " (" + hex(p) + ") is not device memory holding the " +
                   std::to_string(bytes) + " bytes the call accesses");
  return false;
}

bool valid_type(cudnnDataType_t t) { return t >= CUDNN_DATA_FLOAT && t <= CUDNN_DATA_COMPLEX_FP64; }

bool packed_nchw(const cudnnTensorStruct& t) {
  return t.w_stride == 1 && t.h_stride == t.w && t.c_stride == t.h * t.w && t.n_stride == t.c * t.h * t.w;
}

// Runs `work` on `stream` after everything queued there and waits for it (for the Find calls).
// The work owns what it uses, so nothing dangles if the stream refuses or fails it.
cudaError_t run_and_wait(cudaStream_t stream, std::function<void()> work) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  const cudaError_t e = kiln_emu::enqueue(stream, [work = std::move(work), done] {
    try {
      work();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  if (e != cudaSuccess) return e;
  try {
    finished.get();
  } catch (const std::exception& ex) {  // nothing may escape into a C caller
    kiln_emu::report(std::string("cuDNN search failed: ") + ex.what());
    return cudaErrorUnknown;
  }
  return cudaSuccess;
}

// A per-call number that seeds the non-deterministic algorithms' summation order.
std::uint64_t next_seed() {
  static std::atomic<std::uint64_t> calls{0};
  return ++calls;
}

// ---- geometry -----------------------------------------------------------------------------------

// The convolution of a call, or why the descriptors do not describe one. x is the input (dx for
// backward data), y the output (dy for the backward passes).
cudnnStatus_t resolve(const char* call, const cudnnTensorStruct* x, const cudnnFilterStruct* w,
                      const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y, dnn::ConvShape* out) {
  for (cudnnStatus_t s : {check_obj(x, call, "the input tensor descriptor", true),
                          check_obj(w, call, "the filter descriptor", true),
                          check_obj(conv, call, "the convolution descriptor", true),
                          check_obj(y, call, "the output tensor descriptor", true)})
    if (s != CUDNN_STATUS_SUCCESS) return s;
  const std::string where = call;
  if (x->type != y->type || x->type != w->type) return bad(where + ": the tensors and filter differ in data type");
  if (x->type != CUDNN_DATA_FLOAT || conv->compute != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (!packed_nchw(*x) || !packed_nchw(*y) || w->format != CUDNN_TENSOR_NCHW) return CUDNN_STATUS_NOT_SUPPORTED;
  const int g = conv->groups;
  if (x->c % g != 0 || w->k % g != 0 || w->c * g != x->c)
    return bad(where + ": " + std::to_string(x->c) + " input channels do not match a filter of " +
               std::to_string(w->k) + " x " + std::to_string(w->c) + " channels in " + std::to_string(g) + " groups");
  const int P = dnn::conv_out_dim(x->h, conv->pad_h, w->r, conv->dil_h, conv->stride_h);
  const int Q = dnn::conv_out_dim(x->w, conv->pad_w, w->s, conv->dil_w, conv->stride_w);
  if (P <= 0 || Q <= 0) return bad(where + ": the dilated filter is larger than the padded input");
  if (y->n != x->n || y->c != w->k || y->h != P || y->w != Q)
    return bad(where + ": the output descriptor is " + std::to_string(y->n) + "x" + std::to_string(y->c) + "x" +
               std::to_string(y->h) + "x" + std::to_string(y->w) + ", the convolution gives " +
               std::to_string(x->n) + "x" + std::to_string(w->k) + "x" + std::to_string(P) + "x" + std::to_string(Q));
  dnn::ConvShape s;
  s.N = x->n, s.C = x->c, s.H = x->h, s.W = x->w;
  s.K = w->k, s.R = w->r, s.S = w->s, s.P = P, s.Q = Q;
  s.pad_h = conv->pad_h, s.pad_w = conv->pad_w, s.stride_h = conv->stride_h, s.stride_w = conv->stride_w;
  s.dil_h = conv->dil_h, s.dil_w = conv->dil_w, s.groups = g, s.flip = conv->mode == CUDNN_CONVOLUTION;
  *out = s;
  return CUDNN_STATUS_SUCCESS;
}

// ---- algorithms ---------------------------------------------------------------------------------

// What an algorithm's run gets: the direction's two inputs and its output (forward: x, w -> y;
// backward data: w, dy -> dx; backward filter: x, dy -> dw).
struct Args {
  const float* a;
  const float* b;
  float* out;
  float alpha, beta;
  void* ws;
  std::uint64_t seed;
};

struct Algo {
  int id;
  cudnnDeterminism_t determinism;
  bool (*supported)(const dnn::ConvShape&);
  size_t (*workspace)(const dnn::ConvShape&);
  void (*run)(const dnn::ConvShape&, const Args&);
};

bool always(const dnn::ConvShape&) { return true; }
bool unit_stride_dilation(const dnn::ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1;
}
size_t no_workspace(const dnn::ConvShape&) { return 0; }

// In heuristics order, which is also the order of the search's modeled times.
const Algo kForward[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_DETERMINISTIC, always, dnn::conv_fwd_im2col_ws,
     [](const dnn::ConvShape& s, const Args& a) { dnn::conv_fwd_im2col(s, a.a, a.b, a.alpha, a.beta, a.out, a.ws); }},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_DETERMINISTIC, always, no_workspace,
     [](const dnn::ConvShape& s, const Args& a) { dnn::conv_fwd_direct(s, a.a, a.b, a.alpha, a.beta, a.out); }},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_DETERMINISTIC, unit_stride_dilation, dnn::conv_batched_ws,
     [](const dnn::ConvShape& s, const Args& a) { dnn::conv_fwd_batched(s, a.a, a.b, a.alpha, a.beta, a.out, a.ws); }},
};

const Algo kBackwardData[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_DETERMINISTIC, always, dnn::conv_bwd_data_im2col_ws,
     [](const dnn::ConvShape& s, const Args& a) {
       dnn::conv_bwd_data_im2col(s, a.a, a.b, a.alpha, a.beta, a.out, a.ws);
     }},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_NON_DETERMINISTIC, always, no_workspace,
     [](const dnn::ConvShape& s, const Args& a) {
       dnn::conv_bwd_data_direct(s, a.a, a.b, a.alpha, a.beta, a.out, a.seed);
     }},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, CUDNN_DETERMINISTIC, dnn::conv_bwd_data_dual_ok, dnn::conv_bwd_data_dual_ws,
     [](const dnn::ConvShape& s, const Args& a) {
       dnn::conv_bwd_data_dual(s, a.a, a.b, a.alpha, a.beta, a.out, a.ws);
     }},
};

const Algo kBackwardFilter[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_DETERMINISTIC, always, dnn::conv_bwd_filter_im2col_ws,
     [](const dnn::ConvShape& s, const Args& a) {
       dnn::conv_bwd_filter_im2col(s, a.a, a.b, a.alpha, a.beta, a.out, a.ws);
     }},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_NON_DETERMINISTIC, always, no_workspace,
     [](const dnn::ConvShape& s, const Args& a) {
       dnn::conv_bwd_filter_direct(s, a.a, a.b, a.alpha, a.beta, a.out, a.seed);
     }},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, CUDNN_DETERMINISTIC, unit_stride_dilation, dnn::conv_batched_ws,
     [](const dnn::ConvShape& s, const Args& a) {
       dnn::conv_bwd_filter_batched(s, a.a, a.b, a.alpha, a.beta, a.out, a.ws);
     }},
};

// One direction: its algorithms and which buffers play the roles of Args::a, b and out.
struct Direction {
  const char* name;
  int algo_count;  // the enum's *_ALGO_COUNT: ids 0 .. count - 1 are valid
  const Algo* begin;
  const Algo* end;
  const char* a_name;
  const char* b_name;
  const char* out_name;
  size_t (*a_elems)(const dnn::ConvShape&);
  size_t (*b_elems)(const dnn::ConvShape&);
  size_t (*out_elems)(const dnn::ConvShape&);
};

size_t x_elems(const dnn::ConvShape& s) { return s.x_elems(); }
size_t w_elems(const dnn::ConvShape& s) { return s.w_elems(); }
size_t y_elems(const dnn::ConvShape& s) { return s.y_elems(); }

const Direction kFwd{"forward", CUDNN_CONVOLUTION_FWD_ALGO_COUNT, std::begin(kForward), std::end(kForward), "x", "w",
                     "y", x_elems, w_elems, y_elems};
const Direction kBwdData{"backward data", CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, std::begin(kBackwardData),
                         std::end(kBackwardData), "w", "dy", "dx", w_elems, y_elems, x_elems};
const Direction kBwdFilter{"backward filter", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, std::begin(kBackwardFilter),
                           std::end(kBackwardFilter), "x", "dy", "dw", x_elems, y_elems, w_elems};

const Algo* find_algo(const Direction& d, int id) {
  for (const Algo* a = d.begin; a != d.end; ++a)
    if (a->id == id) return a;
  return nullptr;
}

// The algorithm `id` for shape `s`, or BAD_PARAM for an id outside the enum and NOT_SUPPORTED for
// one this emulator lacks or that does not support the shape.
cudnnStatus_t lookup(const Direction& d, int id, const dnn::ConvShape& s, const Algo** out) {
  if (id < 0 || id >= d.algo_count) return CUDNN_STATUS_BAD_PARAM;
  const Algo* a = find_algo(d, id);
  if (!a || !a->supported(s)) return CUDNN_STATUS_NOT_SUPPORTED;
  *out = a;
  return CUDNN_STATUS_SUCCESS;
}

// The buffers of one call, checked against the shape.
struct Buffers {
  const void* a;
  const void* b;
  void* out;
};

bool buffers_ok(const Direction& d, const dnn::ConvShape& s, const Buffers& buf, const char* call) {
  return device_arg(buf.a, d.a_elems(s) * sizeof(float), call, d.a_name) &&
         device_arg(buf.b, d.b_elems(s) * sizeof(float), call, d.b_name) &&
         device_arg(buf.out, d.out_elems(s) * sizeof(float), call, d.out_name);
}

// ---- the shared bodies of the per-direction entry points ------------------------------------------

cudnnStatus_t workspace_size(const Direction& d, cudnnHandle_t h, const char* call, const cudnnTensorStruct* x,
                             const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv,
                             const cudnnTensorStruct* y, int algo, size_t* bytes) {
  if (const cudnnStatus_t st = check_handle(h, call); st != CUDNN_STATUS_SUCCESS) return st;
  if (!bytes) return CUDNN_STATUS_BAD_PARAM;
  dnn::ConvShape s;
  if (const cudnnStatus_t st = resolve(call, x, w, conv, y, &s); st != CUDNN_STATUS_SUCCESS) return st;
  const Algo* a = nullptr;
  if (const cudnnStatus_t st = lookup(d, algo, s, &a); st != CUDNN_STATUS_SUCCESS) return st;
  *bytes = a->workspace(s);
  return CUDNN_STATUS_SUCCESS;
}

// Checks and queues one convolution: out = alpha op(a, b) + beta out.
cudnnStatus_t convolve(const Direction& d, cudnnHandle_t h, const char* call, const void* alpha, const void* beta,
                       const cudnnTensorStruct* x, const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv,
                       const cudnnTensorStruct* y, const Buffers& buf, int algo, void* ws, size_t ws_bytes) {
  if (const cudnnStatus_t st = check_handle(h, call); st != CUDNN_STATUS_SUCCESS) return st;
  if (!alpha || !beta) return CUDNN_STATUS_BAD_PARAM;
  dnn::ConvShape s;
  if (const cudnnStatus_t st = resolve(call, x, w, conv, y, &s); st != CUDNN_STATUS_SUCCESS) return st;
  const Algo* a = nullptr;
  if (const cudnnStatus_t st = lookup(d, algo, s, &a); st != CUDNN_STATUS_SUCCESS) return st;
  const size_t need = a->workspace(s);
  if (ws_bytes < need)
    return bad(std::string(call) + ": algorithm " + std::to_string(algo) + " needs " + std::to_string(need) +
               " bytes of workspace, got " + std::to_string(ws_bytes));
  if (!buffers_ok(d, s, buf, call) || !device_arg(ws, need, call, "workSpace")) return CUDNN_STATUS_BAD_PARAM;
  // alpha and beta are host floats for float data, read at call time.
  const Args args{static_cast<const float*>(buf.a), static_cast<const float*>(buf.b), static_cast<float*>(buf.out),
                  *static_cast<const float*>(alpha), *static_cast<const float*>(beta), ws, next_seed()};
  const auto run = a->run;
  if (kiln_emu::enqueue(h->stream, [run, s, args] { run(s, args); }) != cudaSuccess)
    return CUDNN_STATUS_EXECUTION_FAILED;
  return CUDNN_STATUS_SUCCESS;
}

// One row of a Get*_v7 or Find*Ex answer (the three Perf structs differ only in the algo's type).
struct Result {
  int algo;
  cudnnStatus_t status;
  float time;  // ms; -1 when not measured
  size_t memory;
  cudnnDeterminism_t determinism;
};

// Every id of the direction: the emulated ones first, in table order, then the rest as NOT_SUPPORTED.
std::vector<Result> candidates(const Direction& d, const dnn::ConvShape& s) {
  std::vector<Result> out;
  for (const Algo* a = d.begin; a != d.end; ++a) {
    const bool ok = a->supported(s);
    out.push_back({a->id, ok ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED, -1.0f, ok ? a->workspace(s) : 0,
                   a->determinism});
  }
  for (int id = 0; id < d.algo_count; ++id)
    if (!find_algo(d, id)) out.push_back({id, CUDNN_STATUS_NOT_SUPPORTED, -1.0f, 0, CUDNN_DETERMINISTIC});
  return out;
}

template <class Perf, class AlgoEnum>
cudnnStatus_t write_results(const std::vector<Result>& rows, const cudnnConvolutionStruct* conv, int requested,
                            int* returned, Perf* perf) {
  const int n = std::min(requested, static_cast<int>(rows.size()));
  for (int i = 0; i < n; ++i) {
    Perf p{};
    p.algo = static_cast<AlgoEnum>(rows[i].algo);
    p.status = rows[i].status;
    p.time = rows[i].time;
    p.memory = rows[i].memory;
    p.determinism = rows[i].determinism;
    p.mathType = conv->math;  // the emulator runs FP32 math whatever the descriptor asks
    perf[i] = p;
  }
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

template <class Perf, class AlgoEnum>
cudnnStatus_t heuristics(const Direction& d, cudnnHandle_t h, const char* call, const cudnnTensorStruct* x,
                         const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y,
                         int requested, int* returned, Perf* perf) {
  if (const cudnnStatus_t st = check_handle(h, call); st != CUDNN_STATUS_SUCCESS) return st;
  if (!returned || !perf || requested < 1) return CUDNN_STATUS_BAD_PARAM;
  dnn::ConvShape s;
  if (const cudnnStatus_t st = resolve(call, x, w, conv, y, &s); st != CUDNN_STATUS_SUCCESS) return st;
  return write_results<Perf, AlgoEnum>(candidates(d, s), conv, requested, returned, perf);
}

// Runs every supported algorithm that fits the workspace on the call's buffers (alpha 1, beta 0),
// in stream order, timing each; the answer is sorted fastest first, failures last.
template <class Perf, class AlgoEnum>
cudnnStatus_t search(const Direction& d, cudnnHandle_t h, const char* call, const cudnnTensorStruct* x,
                     const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y,
                     const Buffers& buf, int requested, int* returned, Perf* perf, void* ws, size_t ws_bytes) {
  if (const cudnnStatus_t st = check_handle(h, call); st != CUDNN_STATUS_SUCCESS) return st;
  if (!returned || !perf || requested < 1) return CUDNN_STATUS_BAD_PARAM;
  dnn::ConvShape s;
  if (const cudnnStatus_t st = resolve(call, x, w, conv, y, &s); st != CUDNN_STATUS_SUCCESS) return st;
  if (!buffers_ok(d, s, buf, call) || !device_arg(ws, ws_bytes, call, "workSpace")) return CUDNN_STATUS_BAD_PARAM;

  auto rows = std::make_shared<std::vector<Result>>(candidates(d, s));
  const Args base{static_cast<const float*>(buf.a), static_cast<const float*>(buf.b), static_cast<float*>(buf.out),
                  1.0f, 0.0f, ws, 0};
  const Direction* dir = &d;
  // Every algorithm really runs (on the call's buffers, as cuDNN's do), but the time reported is a
  // model: the heuristics rank, workspace-hungry GEMM algorithms first as on a GPU. Measured CPU
  // times would reorder the plans from run to run, and they say nothing about a GPU.
  const cudaError_t e = run_and_wait(h->stream, [rows, base, dir, s, ws_bytes] {
    for (std::size_t rank = 0; rank < rows->size(); ++rank) {
      Result& r = (*rows)[rank];
      if (r.status != CUDNN_STATUS_SUCCESS) continue;
      if (r.memory > ws_bytes) {  // cuDNN's answer for a workspace too small to try the algorithm
        r.status = CUDNN_STATUS_ALLOC_FAILED;
        continue;
      }
      Args args = base;
      args.seed = next_seed();
      find_algo(*dir, r.algo)->run(s, args);
      r.time = 0.5f * static_cast<float>(rank + 1);
    }
  });
  if (e != cudaSuccess) return CUDNN_STATUS_EXECUTION_FAILED;
  std::stable_sort(rows->begin(), rows->end(), [](const Result& a, const Result& b) {
    const bool ok_a = a.status == CUDNN_STATUS_SUCCESS, ok_b = b.status == CUDNN_STATUS_SUCCESS;
    if (ok_a != ok_b) return ok_a;
    return ok_a && a.time < b.time;
  });
  return write_results<Perf, AlgoEnum>(*rows, conv, requested, returned, perf);
}

}  // namespace

// ---- library -----------------------------------------------------------------------------------

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

cudnnStatus_t cudnnGetProperty(libraryPropertyType type, int* value) {
  if (!value) return CUDNN_STATUS_BAD_PARAM;
  switch (type) {
    case MAJOR_VERSION: *value = CUDNN_MAJOR; return CUDNN_STATUS_SUCCESS;
    case MINOR_VERSION: *value = CUDNN_MINOR; return CUDNN_STATUS_SUCCESS;
    case PATCH_LEVEL: *value = CUDNN_PATCHLEVEL; return CUDNN_STATUS_SUCCESS;
  }
  return CUDNN_STATUS_BAD_PARAM;
}

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: break;
  }
  // Other codes: by category (the thousands), as cuDNN 9 groups them.
  switch (CUDNN_STATUS_CATEGORY(status)) {
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: return "CUDNN_STATUS_UNKNOWN";
  }
}

// ---- handles -----------------------------------------------------------------------------------

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  *handle = Live<cudnnContext>::create();
  return CUDNN_STATUS_SUCCESS;
}

// Queued work holds copies of what it needs, never the handle.
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (const cudnnStatus_t st = check_handle(handle, "cudnnDestroy"); st != CUDNN_STATUS_SUCCESS) return st;
  Live<cudnnContext>::destroy(handle);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (const cudnnStatus_t st = check_handle(handle, "cudnnSetStream"); st != CUDNN_STATUS_SUCCESS) return st;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (const cudnnStatus_t st = check_handle(handle, "cudnnGetStream"); st != CUDNN_STATUS_SUCCESS) return st;
  if (!stream) return CUDNN_STATUS_BAD_PARAM;
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- tensor descriptors ------------------------------------------------------------------------

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  *desc = Live<cudnnTensorStruct>::create();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  if (!desc) return CUDNN_STATUS_SUCCESS;  // like free(NULL)
  if (!Live<cudnnTensorStruct>::destroy(desc))
    return bad("cudnnDestroyTensorDescriptor: the descriptor was destroyed or never created");
  return CUDNN_STATUS_SUCCESS;
}

// Dimensions must be positive and the tensor under 2^31 elements (cuDNN's limit, NOT_SUPPORTED).
cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t desc, cudnnDataType_t type, int n, int c, int h,
                                           int w, int n_stride, int c_stride, int h_stride, int w_stride) {
  static const char* call = "cudnnSetTensor4dDescriptorEx";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (!valid_type(type) || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (n_stride <= 0 || c_stride <= 0 || h_stride <= 0 || w_stride <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (static_cast<long long>(n) * c * h * w > INT_MAX) return CUDNN_STATUS_NOT_SUPPORTED;
  *desc = cudnnTensorStruct{true, type, n, c, h, w, n_stride, c_stride, h_stride, w_stride};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
  // The packed strides below must not overflow: the Ex call rejects these anyway.
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return cudnnSetTensor4dDescriptorEx(desc, type, n, c, h, w, 1, 1, 1, 1);
  if (static_cast<long long>(n) * c * h * w > INT_MAX) return CUDNN_STATUS_NOT_SUPPORTED;
  if (format == CUDNN_TENSOR_NCHW) return cudnnSetTensor4dDescriptorEx(desc, type, n, c, h, w, c * h * w, h * w, w, 1);
  if (format == CUDNN_TENSOR_NHWC) return cudnnSetTensor4dDescriptorEx(desc, type, n, c, h, w, h * w * c, 1, w * c, c);
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_NOT_SUPPORTED;  // vector types: not emulated
  return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t desc, cudnnDataType_t* type, int* n, int* c,
                                         int* h, int* w, int* n_stride, int* c_stride, int* h_stride,
                                         int* w_stride) {
  static const char* call = "cudnnGetTensor4dDescriptor";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", true); st != CUDNN_STATUS_SUCCESS) return st;
  if (!type || !n || !c || !h || !w || !n_stride || !c_stride || !h_stride || !w_stride) return CUDNN_STATUS_BAD_PARAM;
  *type = desc->type;
  *n = desc->n, *c = desc->c, *h = desc->h, *w = desc->w;
  *n_stride = desc->n_stride, *c_stride = desc->c_stride, *h_stride = desc->h_stride, *w_stride = desc->w_stride;
  return CUDNN_STATUS_SUCCESS;
}

// ---- filter descriptors ------------------------------------------------------------------------

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  *desc = Live<cudnnFilterStruct>::create();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  if (!desc) return CUDNN_STATUS_SUCCESS;
  if (!Live<cudnnFilterStruct>::destroy(desc))
    return bad("cudnnDestroyFilterDescriptor: the descriptor was destroyed or never created");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  static const char* call = "cudnnSetFilter4dDescriptor";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (!valid_type(type) || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW_VECT_C)
    return CUDNN_STATUS_BAD_PARAM;
  if (static_cast<long long>(k) * c * h * w > INT_MAX) return CUDNN_STATUS_NOT_SUPPORTED;
  *desc = cudnnFilterStruct{true, type, format, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t desc, cudnnDataType_t* type,
                                         cudnnTensorFormat_t* format, int* k, int* c, int* h, int* w) {
  static const char* call = "cudnnGetFilter4dDescriptor";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", true); st != CUDNN_STATUS_SUCCESS) return st;
  if (!type || !format || !k || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM;
  *type = desc->type;
  *format = desc->format;
  *k = desc->k, *c = desc->c, *h = desc->r, *w = desc->s;
  return CUDNN_STATUS_SUCCESS;
}

// ---- convolution descriptors -------------------------------------------------------------------

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  *desc = Live<cudnnConvolutionStruct>::create();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  if (!desc) return CUDNN_STATUS_SUCCESS;
  if (!Live<cudnnConvolutionStruct>::destroy(desc))
    return bad("cudnnDestroyConvolutionDescriptor: the descriptor was destroyed or never created");
  return CUDNN_STATUS_SUCCESS;
}

// Keeps the group count and math type set before (they have their own setters).
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
  static const char* call = "cudnnSetConvolution2dDescriptor";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if ((mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) || !valid_type(compute))
    return CUDNN_STATUS_BAD_PARAM;
  desc->set = true;
  desc->pad_h = pad_h, desc->pad_w = pad_w, desc->stride_h = u, desc->stride_w = v;
  desc->dil_h = dilation_h, desc->dil_w = dilation_w;
  desc->mode = mode;
  desc->compute = compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dDescriptor(const cudnnConvolutionDescriptor_t desc, int* pad_h, int* pad_w, int* u,
                                              int* v, int* dilation_h, int* dilation_w, cudnnConvolutionMode_t* mode,
                                              cudnnDataType_t* compute) {
  static const char* call = "cudnnGetConvolution2dDescriptor";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", true); st != CUDNN_STATUS_SUCCESS) return st;
  if (!pad_h || !pad_w || !u || !v || !dilation_h || !dilation_w || !mode || !compute) return CUDNN_STATUS_BAD_PARAM;
  *pad_h = desc->pad_h, *pad_w = desc->pad_w, *u = desc->stride_h, *v = desc->stride_w;
  *dilation_h = desc->dil_h, *dilation_w = desc->dil_w;
  *mode = desc->mode;
  *compute = desc->compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int groups) {
  static const char* call = "cudnnSetConvolutionGroupCount";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (groups < 1) return CUDNN_STATUS_BAD_PARAM;
  desc->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int* groups) {
  static const char* call = "cudnnGetConvolutionGroupCount";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (!groups) return CUDNN_STATUS_BAD_PARAM;
  *groups = desc->groups;
  return CUDNN_STATUS_SUCCESS;
}

// Recorded and reported back in the perf results; the arithmetic is FP32 whatever the type.
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
  static const char* call = "cudnnSetConvolutionMathType";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (math != CUDNN_DEFAULT_MATH && math != CUDNN_TENSOR_OP_MATH && math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
      math != CUDNN_FMA_MATH)
    return CUDNN_STATUS_BAD_PARAM;
  desc->math = math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t* math) {
  static const char* call = "cudnnGetConvolutionMathType";
  if (const cudnnStatus_t st = check_obj(desc, call, "the descriptor", false); st != CUDNN_STATUS_SUCCESS) return st;
  if (!math) return CUDNN_STATUS_BAD_PARAM;
  *math = desc->math;
  return CUDNN_STATUS_SUCCESS;
}

// out = (in + 2 pad - ((k - 1) dilation + 1)) / stride + 1 per spatial dimension; n and K carry over.
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t conv,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
                                                    int* n, int* c, int* h, int* wo) {
  static const char* call = "cudnnGetConvolution2dForwardOutputDim";
  for (cudnnStatus_t st : {check_obj(conv, call, "the convolution descriptor", true),
                           check_obj(x, call, "the input tensor descriptor", true),
                           check_obj(w, call, "the filter descriptor", true)})
    if (st != CUDNN_STATUS_SUCCESS) return st;
  if (!n || !c || !h || !wo) return CUDNN_STATUS_BAD_PARAM;
  if (w->c * conv->groups != x->c)
    return bad(std::string(call) + ": " + std::to_string(x->c) + " input channels do not match a filter of " +
               std::to_string(w->c) + " channels in " + std::to_string(conv->groups) + " groups");
  const int P = kiln_emu::dnn::conv_out_dim(x->h, conv->pad_h, w->r, conv->dil_h, conv->stride_h);
  const int Q = kiln_emu::dnn::conv_out_dim(x->w, conv->pad_w, w->s, conv->dil_w, conv->stride_w);
  if (P <= 0 || Q <= 0) return bad(std::string(call) + ": the dilated filter is larger than the padded input");
  *n = x->n, *c = w->k, *h = P, *wo = Q;
  return CUDNN_STATUS_SUCCESS;
}

// ---- forward -----------------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (const cudnnStatus_t st = check_handle(handle, "cudnnGetConvolutionForwardAlgorithmMaxCount");
      st != CUDNN_STATUS_SUCCESS)
    return st;
  if (!count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                     const cudnnFilterDescriptor_t wDesc,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t yDesc, const int requested,
                                                     int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
  return heuristics<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      kFwd, handle, "cudnnGetConvolutionForwardAlgorithm_v7", xDesc, wDesc, convDesc, yDesc, requested, returned, perf);
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                     const void* x, const cudnnFilterDescriptor_t wDesc,
                                                     const void* w, const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t yDesc, void* y, const int requested,
                                                     int* returned, cudnnConvolutionFwdAlgoPerf_t* perf,
                                                     void* workSpace, size_t workSpaceSizeInBytes) {
  return search<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      kFwd, handle, "cudnnFindConvolutionForwardAlgorithmEx", xDesc, wDesc, convDesc, yDesc, {x, w, y}, requested,
      returned, perf, workSpace, workSpaceSizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes) {
  return workspace_size(kFwd, handle, "cudnnGetConvolutionForwardWorkspaceSize", xDesc, wDesc, convDesc, yDesc, algo,
                        sizeInBytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void* x, const cudnnFilterDescriptor_t wDesc, const void* w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
                                      const cudnnTensorDescriptor_t yDesc, void* y) {
  return convolve(kFwd, handle, "cudnnConvolutionForward", alpha, beta, xDesc, wDesc, convDesc, yDesc, {x, w, y}, algo,
                  workSpace, workSpaceSizeInBytes);
}

// ---- backward data -----------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (const cudnnStatus_t st = check_handle(handle, "cudnnGetConvolutionBackwardDataAlgorithmMaxCount");
      st != CUDNN_STATUS_SUCCESS)
    return st;
  if (!count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                          const cudnnTensorDescriptor_t dyDesc,
                                                          const cudnnConvolutionDescriptor_t convDesc,
                                                          const cudnnTensorDescriptor_t dxDesc, const int requested,
                                                          int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  return heuristics<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      kBwdData, handle, "cudnnGetConvolutionBackwardDataAlgorithm_v7", dxDesc, wDesc, convDesc, dyDesc, requested,
      returned, perf);
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                          const void* w, const cudnnTensorDescriptor_t dyDesc,
                                                          const void* dy, const cudnnConvolutionDescriptor_t convDesc,
                                                          const cudnnTensorDescriptor_t dxDesc, void* dx,
                                                          const int requested, int* returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t* perf, void* workSpace,
                                                          size_t workSpaceSizeInBytes) {
  return search<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      kBwdData, handle, "cudnnFindConvolutionBackwardDataAlgorithmEx", dxDesc, wDesc, convDesc, dyDesc, {w, dy, dx},
      requested, returned, perf, workSpace, workSpaceSizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                           const cudnnTensorDescriptor_t dyDesc,
                                                           const cudnnConvolutionDescriptor_t convDesc,
                                                           const cudnnTensorDescriptor_t dxDesc,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes) {
  return workspace_size(kBwdData, handle, "cudnnGetConvolutionBackwardDataWorkspaceSize", dxDesc, wDesc, convDesc,
                        dyDesc, algo, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha, const cudnnFilterDescriptor_t wDesc,
                                           const void* w, const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workSpace,
                                           size_t workSpaceSizeInBytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxDesc, void* dx) {
  return convolve(kBwdData, handle, "cudnnConvolutionBackwardData", alpha, beta, dxDesc, wDesc, convDesc, dyDesc,
                  {w, dy, dx}, algo, workSpace, workSpaceSizeInBytes);
}

// ---- backward filter ---------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (const cudnnStatus_t st = check_handle(handle, "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount");
      st != CUDNN_STATUS_SUCCESS)
    return st;
  if (!count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                            const cudnnTensorDescriptor_t dyDesc,
                                                            const cudnnConvolutionDescriptor_t convDesc,
                                                            const cudnnFilterDescriptor_t dwDesc, const int requested,
                                                            int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  return heuristics<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      kBwdFilter, handle, "cudnnGetConvolutionBackwardFilterAlgorithm_v7", xDesc, dwDesc, convDesc, dyDesc, requested,
      returned, perf);
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                            const void* x, const cudnnTensorDescriptor_t dyDesc,
                                                            const void* dy,
                                                            const cudnnConvolutionDescriptor_t convDesc,
                                                            const cudnnFilterDescriptor_t dwDesc, void* dw,
                                                            const int requested, int* returned,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* workSpace,
                                                            size_t workSpaceSizeInBytes) {
  return search<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      kBwdFilter, handle, "cudnnFindConvolutionBackwardFilterAlgorithmEx", xDesc, dwDesc, convDesc, dyDesc,
      {x, dy, dw}, requested, returned, perf, workSpace, workSpaceSizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                             const cudnnTensorDescriptor_t dyDesc,
                                                             const cudnnConvolutionDescriptor_t convDesc,
                                                             const cudnnFilterDescriptor_t dwDesc,
                                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                                             size_t* sizeInBytes) {
  return workspace_size(kBwdFilter, handle, "cudnnGetConvolutionBackwardFilterWorkspaceSize", xDesc, dwDesc, convDesc,
                        dyDesc, algo, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void* x,
                                             const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace,
                                             size_t workSpaceSizeInBytes, const void* beta,
                                             const cudnnFilterDescriptor_t dwDesc, void* dw) {
  return convolve(kBwdFilter, handle, "cudnnConvolutionBackwardFilter", alpha, beta, xDesc, dwDesc, convDesc, dyDesc,
                  {x, dy, dw}, algo, workSpace, workSpaceSizeInBytes);
}

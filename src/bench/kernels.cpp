// `kiln bench --kernels`: effective bandwidth of kiln's memory-bound kernels against a copy.
//
// Method (the kernel lab's, applied to the kernels kiln ships): every case allocates its tensors,
// runs once untimed, then `repeat` times. On a GPU each timed run is preceded by an L2 flush (a
// memset of twice the L2 size) and timed with CUDA events on kiln's compute stream; on the CPU
// with a steady clock (the tensors are far larger than the last-level cache). Bandwidth is
// effective: the compulsory bytes (each input read once, each output written once) over the median
// time. The ceiling is a device-to-device copy of the same large buffer (cudaMemcpyAsync; on the
// CPU, memcpy split over the OpenMP threads).
//
// The kernels are the twins of src/backend/twins.inc, in its order, the list expanded from it: each
// bandwidth, window or launch twin has its cases in bench_<twin>() below (a twin without them does
// not compile); compute twins are listed as not timed.
#include "bench/kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "ops/dispatch.h"
#include "kiln/error.h"
#include "kiln/random.h"
#include "kiln/tensor.h"

#if defined(KILN_WITH_CUDA)
#include "cuda/runtime.h"
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace kiln::bench {

namespace {

using std::int64_t;

struct Case {
  std::string label;   // after the twin's name in the table: "(linear)", "3x3/2"; may be empty
  std::string shape;   // for the table
  double bytes;        // compulsory bytes moved per run
  std::function<void()> run;
};

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Times `fn` (median of `repeat` runs, after one untimed run) on `dev`.
class Timer {
 public:
  explicit Timer(Device dev) : dev_(dev) {
#if defined(KILN_WITH_CUDA)
    if (dev_.is_cuda()) {
      cuda::set_device(dev_.index);
      stream_ = cuda::current_stream(dev_.index);
      cudaDeviceProp prop{};
      KILN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev_.index));
      flush_bytes_ = std::max<std::size_t>(2 * static_cast<std::size_t>(prop.l2CacheSize), std::size_t{64} << 20);
      flush_ = Tensor::empty({static_cast<int64_t>(flush_bytes_)}, DType::UInt8, dev_);
      KILN_CUDA_CHECK(cudaEventCreate(&start_));
      KILN_CUDA_CHECK(cudaEventCreate(&stop_));
    }
#endif
  }
  ~Timer() {
#if defined(KILN_WITH_CUDA)
    if (start_) KILN_CUDA_WARN(cudaEventDestroy(start_));
    if (stop_) KILN_CUDA_WARN(cudaEventDestroy(stop_));
#endif
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  double time_ms(const std::function<void()>& fn, int repeat) {
    std::vector<double> ms;
    fn();
    sync();
    for (int r = 0; r < repeat; ++r) {
#if defined(KILN_WITH_CUDA)
      if (dev_.is_cuda()) {
        KILN_CUDA_CHECK(cudaMemsetAsync(flush_.raw_data(), r & 0xff, flush_bytes_, stream_));
        KILN_CUDA_CHECK(cudaEventRecord(start_, stream_));
        fn();
        KILN_CUDA_CHECK(cudaEventRecord(stop_, stream_));
        KILN_CUDA_CHECK(cudaEventSynchronize(stop_));
        float t = 0.0f;
        KILN_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
        ms.push_back(t);
        continue;
      }
#endif
      const double t0 = now_ms();
      fn();
      ms.push_back(now_ms() - t0);
    }
    return median(ms);
  }

  // The ceiling: a copy of `bytes` between two buffers on the device.
  void copy(void* dst, const void* src, std::size_t bytes) {
#if defined(KILN_WITH_CUDA)
    if (dev_.is_cuda()) {
      KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
      return;
    }
#endif
    auto* d = static_cast<char*>(dst);
    const auto* s = static_cast<const char*>(src);
#if defined(_OPENMP)
    const int parts = omp_get_max_threads();
#pragma omp parallel for schedule(static)
    for (int p = 0; p < parts; ++p) {
      const std::size_t begin = bytes * static_cast<std::size_t>(p) / static_cast<std::size_t>(parts);
      const std::size_t end = bytes * static_cast<std::size_t>(p + 1) / static_cast<std::size_t>(parts);
      std::memcpy(d + begin, s + begin, end - begin);
    }
#else
    std::memcpy(d, s, bytes);
#endif
  }

  std::string describe() const {
#if defined(KILN_WITH_CUDA)
    if (dev_.is_cuda()) {
      cudaDeviceProp prop{};
      KILN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev_.index));
      char buf[160];
      std::snprintf(buf, sizeof buf, " (cuda:%d, sm_%d%d, %d SMs, L2 %d MiB); CUDA events, L2 flushed before each run",
                    dev_.index, prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize >> 20);
      return std::string(prop.name) + buf;
    }
#endif
#if defined(_OPENMP)
    return "CPU (" + std::to_string(omp_get_max_threads()) + " OpenMP threads); steady clock";
#else
    return "CPU (1 thread); steady clock";
#endif
  }

 private:
  void sync() {
#if defined(KILN_WITH_CUDA)
    if (dev_.is_cuda()) KILN_CUDA_CHECK(cudaStreamSynchronize(stream_));
#endif
  }

  Device dev_;
#if defined(KILN_WITH_CUDA)
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  std::size_t flush_bytes_ = 0;
  Tensor flush_;
#endif
};

// ---- the cases, one function per twin ------------------------------------------------------------
// bench_<twin>() makes the twin's tensors and returns its cases (one per shape). The tensors live as
// long as the cases, which run right after the function returns and are then dropped, so the peak
// memory is one twin's (at most five large tensors). `n` is the target number of floats per large
// tensor; shapes are rounded down to whole rows/images, and the bytes are computed from the actual
// shapes.
struct Env {
  Device dev;
  int64_t n;
  Generator& gen;
  Tensor rnd(const Shape& s, float lo = -1.0f, float hi = 1.0f) const { return Tensor::rand(s, gen, dev, lo, hi); }
  Tensor out(const Shape& s, DType t = DType::Float32) const { return Tensor::empty(s, t, dev); }
  Tensor labels(int64_t rows, int64_t classes) const {
    Tensor l = Tensor::empty({rows}, DType::Int32);
    for (int64_t i = 0; i < rows; ++i) l.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7919) % classes);
    return l.to(dev);
  }
};
using Cases = std::vector<Case>;
constexpr double F = 4.0;  // bytes per float

// ---- fill, random, elementwise: flat tensors of n floats ------------------------------------------
Case flat(const Env& e, const char* label, double floats_moved, std::function<void()> run) {
  return {label, shape_str({e.n}), F * floats_moved * static_cast<double>(e.n), std::move(run)};
}
Cases bench_fill(const Env& e) {
  Tensor y = e.out({e.n});
  return {flat(e, "", 1, [=]() mutable { KILN_DISPATCH(e.dev, fill, y, 1.5f); })};
}
Cases bench_uniform(const Env& e) {
  Tensor y = e.out({e.n});
  return {flat(e, "", 1, [=]() mutable { KILN_DISPATCH(e.dev, uniform, y, 1, 0, -1.0f, 1.0f); })};
}
Cases bench_normal(const Env& e) {
  Tensor y = e.out({e.n});
  return {flat(e, "", 1, [=]() mutable { KILN_DISPATCH(e.dev, normal, y, 1, 0, 0.0f, 1.0f); })};
}
Cases bench_add(const Env& e) {
  Tensor a = e.rnd({e.n}), b = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 3, [=]() mutable { KILN_DISPATCH(e.dev, add, 1.0f, a, -0.5f, b, y); })};
}
Cases bench_mul(const Env& e) {
  Tensor a = e.rnd({e.n}), b = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 3, [=]() mutable { KILN_DISPATCH(e.dev, mul, a, b, y); })};
}
Cases bench_scale(const Env& e) {
  Tensor a = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 2, [=]() mutable { KILN_DISPATCH(e.dev, scale, a, 0.5f, y); })};
}
Cases bench_axpy(const Env& e) {
  Tensor a = e.rnd({e.n}), y = e.rnd({e.n});
  return {flat(e, "", 3, [=]() mutable { KILN_DISPATCH(e.dev, axpy, 1e-3f, a, y); })};
}
Cases bench_relu(const Env& e) {
  Tensor a = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 2, [=]() mutable { KILN_DISPATCH(e.dev, relu, a, y); })};
}
Cases bench_relu_backward(const Env& e) {
  Tensor a = e.rnd({e.n}), b = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 3, [=]() mutable { KILN_DISPATCH(e.dev, relu_backward, a, b, y); })};
}
Cases bench_dropout_forward(const Env& e) {
  Tensor a = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 2, [=]() mutable { KILN_DISPATCH(e.dev, dropout_forward, a, 0.5f, 7, 0, y); })};
}
Cases bench_dropout_backward(const Env& e) {
  Tensor a = e.rnd({e.n}), y = e.out({e.n});
  return {flat(e, "", 2, [=]() mutable { KILN_DISPATCH(e.dev, dropout_backward, a, 0.5f, 7, 0, y); })};
}
Cases bench_sum_all(const Env& e) {
  Tensor a = e.rnd({e.n}), r = e.out({1});
  return {flat(e, "", 1, [=]() mutable { KILN_DISPATCH(e.dev, sum_all, a, r); })};
}

// ---- bias: a linear layer's [rows, 4096] and a convolution's [N, 64, 55, 55] -----------------------
Shape bias_linear(const Env& e) { return {std::max<int64_t>(1, e.n / 4096), 4096}; }
Shape bias_conv(const Env& e) { return {std::max<int64_t>(1, e.n / (64 * 55 * 55)), 64, 55, 55}; }
Cases bench_bias_add(const Env& e) {
  Cases cases;
  for (const Shape& sh : {bias_linear(e), bias_conv(e)}) {
    const int64_t C = sh[1];
    Tensor x = e.rnd(sh), bias = e.rnd({C}), y = e.out(sh);
    const double N = static_cast<double>(shape_numel(sh));
    cases.push_back({sh.size() == 2 ? "(linear)" : "(conv)", shape_str(sh), 2 * F * N + F * C,
                     [=]() mutable { KILN_DISPATCH(e.dev, bias_add, x, bias, y); }});
  }
  return cases;
}
Cases bench_bias_grad(const Env& e) {
  Cases cases;
  for (const Shape& sh : {bias_linear(e), bias_conv(e)}) {
    const int64_t C = sh[1];
    Tensor dy = e.rnd(sh), db = e.out({C});
    const double N = static_cast<double>(shape_numel(sh));
    cases.push_back({sh.size() == 2 ? "(linear)" : "(conv)", shape_str(sh), F * N + F * C,
                     [=]() mutable { KILN_DISPATCH(e.dev, bias_grad, dy, db); }});
  }
  return cases;
}

// ---- reductions over an axis: [rows, 4096] (inner 1) and [outer, 256, 1024] (strided) --------------
struct AxisShape {
  const char* label;
  int64_t outer, n, inner;
};
std::vector<AxisShape> axis_shapes(const Env& e) {
  return {{"(rows)", std::max<int64_t>(1, e.n / 4096), 4096, 1},
          {"(strided)", std::max<int64_t>(1, e.n / (256 * 1024)), 256, 1024}};
}
Shape axis_shape(const AxisShape& a) { return a.inner == 1 ? Shape{a.outer, a.n} : Shape{a.outer, a.n, a.inner}; }
Cases bench_sum_axis(const Env& e) {
  Cases cases;
  for (const AxisShape& a : axis_shapes(e)) {
    Tensor x = e.rnd(axis_shape(a)), y = e.out({a.outer * a.inner});
    const double N = static_cast<double>(a.outer * a.n * a.inner), R = static_cast<double>(a.outer * a.inner);
    cases.push_back({a.label, shape_str(axis_shape(a)), F * N + F * R,
                     [=]() mutable { KILN_DISPATCH(e.dev, sum_axis, x, a.outer, a.n, a.inner, y); }});
  }
  return cases;
}
Cases bench_broadcast_axis(const Env& e) {
  Cases cases;
  for (const AxisShape& a : axis_shapes(e)) {
    Tensor dy = e.rnd({a.outer * a.inner}), dx = e.out(axis_shape(a));
    const double N = static_cast<double>(a.outer * a.n * a.inner), R = static_cast<double>(a.outer * a.inner);
    cases.push_back({a.label, shape_str(axis_shape(a)), F * N + F * R,
                     [=]() mutable { KILN_DISPATCH(e.dev, broadcast_axis, dy, 0.5f, a.outer, a.n, a.inner, dx); }});
  }
  return cases;
}

// ---- classification rows: ImageNet's 1000 classes (and MNIST's 10 for the loss) ---------------------
Shape class_rows(const Env& e, int64_t C) { return {std::max<int64_t>(1, e.n / C), C}; }
Tensor logits(const Env& e, const Shape& sh) { return e.rnd(sh, -4.0f, 4.0f); }
std::string classes_label(int64_t C) { return "(C=" + std::to_string(C) + ")"; }
Cases bench_log_softmax(const Env& e) {
  const Shape sh = class_rows(e, 1000);
  Tensor x = logits(e, sh), y = e.out(sh);
  return {{classes_label(1000), shape_str(sh), 2 * F * static_cast<double>(shape_numel(sh)),
           [=]() mutable { KILN_DISPATCH(e.dev, log_softmax, x, y); }}};
}
Cases bench_log_softmax_backward(const Env& e) {
  const Shape sh = class_rows(e, 1000);
  Tensor y = e.out(sh), dy = e.rnd(sh), dx = e.out(sh);
  KILN_DISPATCH(e.dev, log_softmax, logits(e, sh), y);
  return {{classes_label(1000), shape_str(sh), 3 * F * static_cast<double>(shape_numel(sh)),
           [=]() mutable { KILN_DISPATCH(e.dev, log_softmax_backward, y, dy, dx); }}};
}
// The loss at ImageNet's 1000 classes and MNIST's 10: logits, labels and the forward's outputs.
struct XentInputs {
  Shape shape;
  Tensor x, labels, losses, lse;
};
XentInputs xent_inputs(const Env& e, int64_t C) {
  const Shape sh = class_rows(e, C);
  return {sh, logits(e, sh), e.labels(sh[0], C), e.out({sh[0]}), e.out({sh[0]})};
}
constexpr int64_t kLossClasses[] = {1000, 10};
Cases bench_softmax_xent(const Env& e) {
  Cases cases;
  for (const int64_t C : kLossClasses) {
    XentInputs in = xent_inputs(e, C);
    const double N = static_cast<double>(shape_numel(in.shape)), R = static_cast<double>(in.shape[0]);
    cases.push_back({classes_label(C), shape_str(in.shape), F * N + 3 * F * R,
                     [=]() mutable { KILN_DISPATCH(e.dev, softmax_xent, in.x, in.labels, in.losses, in.lse); }});
  }
  return cases;
}
Cases bench_softmax_xent_backward(const Env& e) {
  Cases cases;
  for (const int64_t C : kLossClasses) {
    XentInputs in = xent_inputs(e, C);
    KILN_DISPATCH(e.dev, softmax_xent, in.x, in.labels, in.losses, in.lse);
    Tensor dloss = Tensor::full({1}, 1.0f, e.dev), dl = e.out(in.shape);
    const double N = static_cast<double>(shape_numel(in.shape)), R = static_cast<double>(in.shape[0]);
    const float s = static_cast<float>(1.0 / R);
    cases.push_back({classes_label(C), shape_str(in.shape), 2 * F * N + 2 * F * R, [=]() mutable {
                       KILN_DISPATCH(e.dev, softmax_xent_backward, in.x, in.labels, in.lse, dloss, s, dl);
                     }});
  }
  return cases;
}
Cases bench_argmax(const Env& e) {
  const Shape sh = class_rows(e, 1000);
  Tensor x = logits(e, sh), idx = e.out({sh[0]}, DType::Int64);
  return {{classes_label(1000), shape_str(sh), F * static_cast<double>(shape_numel(sh)) + 8.0 * sh[0],
           [=]() mutable { KILN_DISPATCH(e.dev, argmax, x, idx); }}};
}
Cases bench_count_correct(const Env& e) {
  const Shape sh = class_rows(e, 1000);
  Tensor x = logits(e, sh), lab = e.labels(sh[0], 1000), count = Tensor::zeros({1}, DType::Int64, e.dev);
  return {{classes_label(1000), shape_str(sh), F * static_cast<double>(shape_numel(sh)) + F * sh[0],
           [=]() mutable { KILN_DISPATCH(e.dev, count_correct, x, lab, count); }}};
}

// ---- data and optimizers ---------------------------------------------------------------------------
Cases bench_normalize_u8(const Env& e) {
  const Shape sh{std::max<int64_t>(1, e.n / (3 * 224 * 224)), 3, 224, 224};
  Tensor x = Tensor::zeros(sh, DType::UInt8, e.dev), y = e.out(sh);
  const double N = static_cast<double>(shape_numel(sh));
  return {{"", shape_str(sh), N + F * N, [=]() mutable {
             const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
             KILN_DISPATCH(e.dev, normalize_u8, x, mean, std, y);
           }}};
}
// The device-resident step scalars {lr, bc1, bc2, unused} of the updates, fixed here.
Tensor step_scalars(const Env& e) { return Tensor::from_vector<float>({1e-6f, 0.5f, 0.5f, 0.0f}, {4}, e.dev); }
Cases bench_optim_advance(const Env& e) {
  Tensor step = Tensor::zeros({1}, DType::Int64, e.dev), scalars = step_scalars(e);
  const optim::Schedule schedule = optim::Schedule::constant(1e-6f);
  return {{"", shape_str({1}), 16.0,
           [=]() mutable { KILN_DISPATCH(e.dev, optim_advance, step, scalars, schedule, 0.9f, 0.999f); }}};
}
Cases bench_sgd_update(const Env& e) {
  Tensor p = e.rnd({e.n}), g = e.rnd({e.n}), buf = e.rnd({e.n}), sc = step_scalars(e);
  return {flat(e, "(momentum)", 5,
               [=]() mutable { KILN_DISPATCH(e.dev, sgd_update, p, g, buf, sc, 0.9f, 0.0f, false); }),
          flat(e, "(plain)", 3,
               [=]() mutable { KILN_DISPATCH(e.dev, sgd_update, p, g, buf, sc, 0.0f, 0.0f, false); })};
}
Cases bench_adam_update(const Env& e) {
  Tensor p = e.rnd({e.n}), g = e.rnd({e.n}), m = e.rnd({e.n}), v = e.rnd({e.n}, 0.0f, 1.0f), sc = step_scalars(e);
  return {flat(e, "", 7, [=]() mutable {
    KILN_DISPATCH(e.dev, adam_update, p, g, m, v, sc, 0.9f, 0.999f, 1e-8f, 0.01f, true);
  })};
}

// ---- pooling, normalisation, resize (window kernels: reported, not held to the target) -------------
struct PoolCase {
  Shape in, out;
  Pool2dParams p;
};
PoolCase max_pool_3x3s2(const Env& e) {  // AlexNet's first pooling: 64 x 55 x 55
  const int64_t C = 64, H = 55, imgs = std::max<int64_t>(1, e.n / (C * H * H)), P = (H - 3) / 2 + 1;
  Pool2dParams pp;
  pp.kernel_h = pp.kernel_w = 3;
  pp.stride_h = pp.stride_w = 2;
  return {{imgs, C, H, H}, {imgs, C, P, P}, pp};
}
Cases bench_max_pool2d_forward(const Env& e) {
  const PoolCase c = max_pool_3x3s2(e);
  Tensor x = e.rnd(c.in), y = e.out(c.out), am = e.out(c.out, DType::Int32);
  const double IN = static_cast<double>(shape_numel(c.in)), ON = static_cast<double>(shape_numel(c.out));
  return {{"3x3/2", shape_str(c.in), F * IN + 2 * F * ON,
           [=]() mutable { KILN_DISPATCH(e.dev, max_pool2d_forward, x, c.p, y, am); }}};
}
Cases bench_max_pool2d_backward(const Env& e) {
  const PoolCase c = max_pool_3x3s2(e);
  Tensor y = e.out(c.out), am = e.out(c.out, DType::Int32), dy = e.rnd(c.out), dx = e.out(c.in);
  KILN_DISPATCH(e.dev, max_pool2d_forward, e.rnd(c.in), c.p, y, am);
  const double IN = static_cast<double>(shape_numel(c.in)), ON = static_cast<double>(shape_numel(c.out));
  return {{"3x3/2", shape_str(c.in), 2 * F * ON + F * IN,
           [=]() mutable { KILN_DISPATCH(e.dev, max_pool2d_backward, dy, am, c.p, dx); }}};
}
Shape lrn_shape(const Env& e) { return {std::max<int64_t>(1, e.n / (64 * 55 * 55)), 64, 55, 55}; }
Cases bench_lrn_forward(const Env& e) {
  const Shape sh = lrn_shape(e);
  Tensor x = e.rnd(sh), y = e.out(sh), scale = e.out(sh);
  return {{"(size 5)", shape_str(sh), 3 * F * static_cast<double>(shape_numel(sh)),
           [=]() mutable { KILN_DISPATCH(e.dev, lrn_forward, x, 5, 1e-4f, 0.75f, 2.0f, y, scale); }}};
}
Cases bench_lrn_backward(const Env& e) {
  const Shape sh = lrn_shape(e);
  Tensor x = e.rnd(sh), y = e.out(sh), scale = e.out(sh), dy = e.rnd(sh), dx = e.out(sh);
  KILN_DISPATCH(e.dev, lrn_forward, x, 5, 1e-4f, 0.75f, 2.0f, y, scale);
  return {{"(size 5)", shape_str(sh), 5 * F * static_cast<double>(shape_numel(sh)),
           [=]() mutable { KILN_DISPATCH(e.dev, lrn_backward, x, y, scale, dy, 5, 1e-4f, 0.75f, 2.0f, dx); }}};
}
// AlexNet's last feature map: 256 x 13 x 13 <-> 6 x 6.
Shape adaptive_in(const Env& e) { return {std::max<int64_t>(1, e.n / (256 * 13 * 13)), 256, 13, 13}; }
Shape adaptive_out(const Env& e) { return {adaptive_in(e)[0], 256, 6, 6}; }
Cases bench_adaptive_avg_pool2d_forward(const Env& e) {
  Tensor x = e.rnd(adaptive_in(e)), y = e.out(adaptive_out(e));
  return {{"13->6", shape_str(adaptive_in(e)), F * static_cast<double>(x.numel() + y.numel()),
           [=]() mutable { KILN_DISPATCH(e.dev, adaptive_avg_pool2d_forward, x, y); }}};
}
Cases bench_adaptive_avg_pool2d_backward(const Env& e) {
  Tensor dy = e.rnd(adaptive_out(e)), dx = e.out(adaptive_in(e));
  return {{"6->13", shape_str(adaptive_in(e)), F * static_cast<double>(dx.numel() + dy.numel()),
           [=]() mutable { KILN_DISPATCH(e.dev, adaptive_avg_pool2d_backward, dy, dx); }}};
}
Cases bench_resize_bilinear(const Env& e) {  // MNIST digits up to AlexNet's input
  const int64_t imgs = std::max<int64_t>(1, e.n / (224 * 224));
  const Shape osh{imgs, 1, 224, 224};
  Tensor x = e.rnd({imgs, 1, 28, 28}), y = e.out(osh);
  return {{"28->224", shape_str(osh), F * static_cast<double>(imgs) * (28 * 28 + 224 * 224),
           [=]() mutable { KILN_DISPATCH(e.dev, resize_bilinear, x, y); }}};
}

// ---- the list: every twin of twins.inc, in its order ----------------------------------------------
enum class Bench { bandwidth, window, launch, compute };
struct Twin {
  const char* name;
  Bench bench;
  Cases (*cases)(const Env&);  // null for compute twins
};
// A bandwidth, window or launch twin refers to its bench_<name>: a twin added without one does not
// compile.
#define KILN_BENCH_ENTRY_bandwidth(name) {#name, Bench::bandwidth, &bench_##name},
#define KILN_BENCH_ENTRY_window(name) {#name, Bench::window, &bench_##name},
#define KILN_BENCH_ENTRY_launch(name) {#name, Bench::launch, &bench_##name},
#define KILN_BENCH_ENTRY_compute(name) {#name, Bench::compute, nullptr},
#define KILN_TWIN(name, bench, params) KILN_BENCH_ENTRY_##bench(name)
const Twin kTwins[] = {
#include "backend/twins.inc"
};
#undef KILN_TWIN
#undef KILN_BENCH_ENTRY_bandwidth
#undef KILN_BENCH_ENTRY_window
#undef KILN_BENCH_ENTRY_launch
#undef KILN_BENCH_ENTRY_compute

}  // namespace

int kernel_bandwidth(Device dev, const KernelBenchOptions& o) {
  check_in_range("--repeat", o.repeat, 0, 10000);  // 0: the device's default
  KILN_CHECK(o.min_fraction >= 0.0 && o.min_fraction <= 2.0, "--min-fraction must be in [0, 2], got ", o.min_fraction);
  const int64_t n = o.elements;
  const int repeat = o.repeat > 0 ? o.repeat : (dev.is_cuda() ? 20 : 5);
  KILN_CHECK(n >= 4096 * 16 && n <= (int64_t{1} << 31), "--elements must be in [65536, 2^31], got ", n);

  Timer timer(dev);
  std::printf("kiln kernel bandwidth on %s\n", timer.describe().c_str());
#if defined(KILN_CUDA_EMULATED)
  if (dev.is_cuda())
    std::printf("NOTE: cuda:%d is the emulated device (KILN_CUDA=EMULATE): this runs every kernel on the CPU, and its "
                "figures mean nothing about a GPU\n", dev.index);
#endif
  std::printf("large tensors: %lld floats (%.1f MiB); median of %d runs; effective GB/s = compulsory bytes / time\n",
              static_cast<long long>(n), static_cast<double>(n) * 4 / (1 << 20), repeat);

  // The ceiling: a copy of one large tensor.
  Tensor src = Tensor::zeros({n}, DType::Float32, dev), dst = Tensor::zeros({n}, DType::Float32, dev);
  const std::size_t bytes = static_cast<std::size_t>(n) * 4;
  const double copy_ms =
      timer.time_ms([&] { timer.copy(dst.raw_data(), src.raw_data(), bytes); }, std::max(repeat, 20));
  const double copy_gbs = 2.0 * static_cast<double>(bytes) / (copy_ms * 1e6);
  std::printf("ceiling: copy of %.1f MiB: %.3f ms, %.1f GB/s (read + write)\n\n", static_cast<double>(bytes) / (1 << 20),
              copy_ms, copy_gbs);

  Generator gen(1234);
  const Env env{dev, n, gen};
  const double target = o.min_fraction > 0 ? o.min_fraction : 0.8;
  if (o.markdown) {
    std::printf("| kernel | shape | MiB moved | ms | GB/s | %% of copy |\n|---|---|---|---|---|---|\n");
  } else {
    std::printf("%-34s %-22s %10s %10s %10s %8s\n", "kernel", "shape", "MiB moved", "ms", "GB/s", "% copy");
  }
  int held = 0, below = 0, ran = 0;
  std::string below_names;
  std::string untimed;
  for (const Twin& twin : kTwins) {
    if (twin.bench == Bench::compute) {
      untimed += std::string(untimed.empty() ? "" : ", ") + twin.name;
      continue;
    }
    const bool held_to_target = twin.bench == Bench::bandwidth;
    for (const Case& c : twin.cases(env)) {
      const std::string name = c.label.empty() ? twin.name : std::string(twin.name) + " " + c.label;
      if (!o.filter.empty() && name.find(o.filter) == std::string::npos) continue;
      ++ran;
      const double ms = timer.time_ms(c.run, repeat);
      const double gbs = c.bytes / (ms * 1e6);
      const double frac = gbs / copy_gbs;
      const char* mark = "";
      if (held_to_target) {
        ++held;
        if (frac < target) {
          ++below;
          below_names += (below_names.empty() ? "" : ", ") + name;
          mark = "  < target";
        }
      } else {
        mark = twin.bench == Bench::window ? "  (window kernel)" : "  (one-element launch)";
      }
      if (o.markdown) {
        const char* md_mark = !held_to_target ? mark + 1 : *mark ? " **(below target)**" : "";
        std::printf("| %s%s | %s | %.1f | %.3f | %.1f | %.1f%% |\n", name.c_str(), md_mark, c.shape.c_str(),
                    c.bytes / (1 << 20), ms, gbs, 100 * frac);
      } else {
        std::printf("%-34s %-22s %10.1f %10.3f %10.1f %7.1f%%%s\n", name.c_str(), c.shape.c_str(), c.bytes / (1 << 20),
                    ms, gbs, 100 * frac, mark);
      }
      std::fflush(stdout);
    }
  }
  KILN_CHECK(ran > 0, "--filter '", o.filter, "' matches no kernel");
  std::printf("\n%d of %d elementwise/reduction kernels at >= %.0f%% of the copy bandwidth%s%s\n", held - below, held,
              100 * target, below ? "; below: " : "", below_names.c_str());
  std::printf("not timed here (compute-bound; `kiln bench --model` times them): %s\n", untimed.c_str());
  return o.min_fraction > 0 && below > 0 ? 1 : 0;
}

}  // namespace kiln::bench

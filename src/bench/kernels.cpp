// `kiln bench --kernels`: effective bandwidth of kiln's memory-bound kernels against a copy.
//
// Method (the kernel lab's, applied to the kernels kiln ships): every case allocates its tensors,
// runs once untimed, then `repeat` times. On a GPU each timed run is preceded by an L2 flush (a
// memset of twice the L2 size) and timed with CUDA events on kiln's compute stream; on the CPU
// with a steady clock (the tensors are far larger than the last-level cache). Bandwidth is
// effective: the compulsory bytes (each input read once, each output written once) over the median
// time. The ceiling is a device-to-device copy of the same large buffer (cudaMemcpyAsync; on the
// CPU, memcpy split over the OpenMP threads).
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
  const char* name;
  std::string shape;   // for the table
  double bytes;        // compulsory bytes moved per run
  bool target;         // an elementwise/reduction kernel: held to the copy-bandwidth target
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

// The cases, in groups that share tensors; a group's tensors are made when the group runs and freed
// after it, so the peak memory is one group's (at most ~10 large tensors). `n` is the target number
// of floats per large tensor; shapes are rounded down to whole rows/images, and the bytes are
// computed from the actual shapes.
using Group = std::function<std::vector<Case>()>;
std::vector<Group> make_groups(Device dev, int64_t n, Generator& gen) {
  std::vector<Group> groups;
  auto rnd = [dev, &gen](const Shape& s, float lo = -1.0f, float hi = 1.0f) { return Tensor::rand(s, gen, dev, lo, hi); };
  auto out = [dev](const Shape& s, DType t = DType::Float32) { return Tensor::empty(s, t, dev); };
  auto labels = [dev](int64_t rows, int64_t classes) {
    Tensor l = Tensor::empty({rows}, DType::Int32);
    for (int64_t i = 0; i < rows; ++i) l.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7919) % classes);
    return l.to(dev);
  };
  const double F = 4.0;  // bytes per float

  // ---- elementwise -------------------------------------------------------------------------------
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    Tensor a = rnd({n}), b = rnd({n}), y = out({n});
    const std::string s = shape_str({n});
    const double N = static_cast<double>(n);
    cases.push_back({"fill", s, F * N, true, [=]() mutable { KILN_DISPATCH(dev, fill, y, 1.5f); }});
    cases.push_back({"add", s, 3 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, add, 1.0f, a, -0.5f, b, y); }});
    cases.push_back({"mul", s, 3 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, mul, a, b, y); }});
    cases.push_back({"scale", s, 2 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, scale, a, 0.5f, y); }});
    cases.push_back({"axpy", s, 3 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, axpy, 1e-3f, a, y); }});
    cases.push_back({"relu", s, 2 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, relu, a, y); }});
    cases.push_back({"relu_backward", s, 3 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, relu_backward, a, b, y); }});
    cases.push_back({"uniform", s, F * N, true, [=]() mutable { KILN_DISPATCH(dev, uniform, y, 1, 0, -1.0f, 1.0f); }});
    cases.push_back({"normal", s, F * N, true, [=]() mutable { KILN_DISPATCH(dev, normal, y, 1, 0, 0.0f, 1.0f); }});
    cases.push_back({"dropout_forward", s, 2 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, dropout_forward, a, 0.5f, 7, 0, y); }});
    cases.push_back({"dropout_backward", s, 2 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, dropout_backward, a, 0.5f, 7, 0, y); }});
    Tensor r = out({1});
    cases.push_back({"sum_all", s, F * N, true, [=]() mutable { KILN_DISPATCH(dev, sum_all, a, r); }});
    return cases;
  });
  // ---- bias: a linear layer's [rows, 4096] and a convolution's [N, 64, 55, 55] ---------------------
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t C = 4096, rows = std::max<int64_t>(1, n / C);
    Tensor x = rnd({rows, C}), bias = rnd({C}), y = out({rows, C}), db = out({C});
    const double N = static_cast<double>(rows * C);
    const std::string s = shape_str({rows, C});
    cases.push_back({"bias_add (linear)", s, 2 * F * N + F * C, true, [=]() mutable { KILN_DISPATCH(dev, bias_add, x, bias, y); }});
    cases.push_back({"bias_grad (linear)", s, F * N + F * C, true, [=]() mutable { KILN_DISPATCH(dev, bias_grad, x, db); }});
    return cases;
  });
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t C = 64, HW = 55, imgs = std::max<int64_t>(1, n / (C * HW * HW));
    const Shape sh{imgs, C, HW, HW};
    Tensor x = rnd(sh), bias = rnd({C}), y = out(sh), db = out({C});
    const double N = static_cast<double>(imgs * C * HW * HW);
    cases.push_back({"bias_add (conv)", shape_str(sh), 2 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, bias_add, x, bias, y); }});
    cases.push_back({"bias_grad (conv)", shape_str(sh), F * N, true, [=]() mutable { KILN_DISPATCH(dev, bias_grad, x, db); }});
    return cases;
  });
  // ---- reductions over an axis -------------------------------------------------------------------------
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t cols = 4096, rows = std::max<int64_t>(1, n / cols);
    Tensor x = rnd({rows, cols}), y = out({rows});
    const double N = static_cast<double>(rows * cols);
    cases.push_back({"sum_axis (rows)", shape_str({rows, cols}), F * N + F * rows, true,
                     [=]() mutable { KILN_DISPATCH(dev, sum_axis, x, rows, cols, 1, y); }});
    Tensor dx = out({rows, cols});
    cases.push_back({"broadcast_axis (rows)", shape_str({rows, cols}), F * N + F * rows, true,
                     [=]() mutable { KILN_DISPATCH(dev, broadcast_axis, y, 0.5f, rows, cols, 1, dx); }});
    return cases;
  });
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t mid = 256, inner = 1024, outer = std::max<int64_t>(1, n / (mid * inner));
    Tensor x = rnd({outer, mid, inner}), y = out({outer, inner});
    const double N = static_cast<double>(outer * mid * inner);
    cases.push_back({"sum_axis (strided)", shape_str({outer, mid, inner}), F * N + F * outer * inner, true,
                     [=]() mutable { KILN_DISPATCH(dev, sum_axis, x, outer, mid, inner, y); }});
    Tensor dx = out({outer, mid, inner});
    cases.push_back({"broadcast_axis (strided)", shape_str({outer, mid, inner}), F * N + F * outer * inner, true,
                     [=]() mutable { KILN_DISPATCH(dev, broadcast_axis, y, 0.5f, outer, mid, inner, dx); }});
    return cases;
  });
  // ---- classification rows: ImageNet's 1000 classes and MNIST's 10 ---------------------------------------
  for (const int64_t C : {int64_t{1000}, int64_t{10}}) groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t rows = std::max<int64_t>(1, n / C);
    const Shape sh{rows, C};
    const double N = static_cast<double>(rows * C), R = static_cast<double>(rows);
    Tensor x = rnd(sh, -4.0f, 4.0f), lab = labels(rows, C);
    Tensor losses = out({rows}), lse = out({rows}), dl = out(sh), y = out(sh), dy = rnd(sh);
    Tensor dloss = Tensor::full({1}, 1.0f, dev), idx = out({rows}, DType::Int64);
    Tensor count = Tensor::zeros({1}, DType::Int64, dev);
    KILN_DISPATCH(dev, softmax_xent, x, lab, losses, lse);
    KILN_DISPATCH(dev, log_softmax, x, y);
    const bool big = C == 1000;
    cases.push_back({big ? "softmax_xent (C=1000)" : "softmax_xent (C=10)", shape_str(sh), F * N + 3 * F * R, true,
                     [=]() mutable { KILN_DISPATCH(dev, softmax_xent, x, lab, losses, lse); }});
    cases.push_back({big ? "softmax_xent_backward (C=1000)" : "softmax_xent_backward (C=10)", shape_str(sh),
                     2 * F * N + 2 * F * R, true,
                     [=]() mutable { KILN_DISPATCH(dev, softmax_xent_backward, x, lab, lse, dloss, 1.0f / R, dl); }});
    if (!big) return cases;
    cases.push_back({"log_softmax (C=1000)", shape_str(sh), 2 * F * N, true, [=]() mutable { KILN_DISPATCH(dev, log_softmax, x, y); }});
    cases.push_back({"log_softmax_backward (C=1000)", shape_str(sh), 3 * F * N, true,
                     [=]() mutable { KILN_DISPATCH(dev, log_softmax_backward, y, dy, dl); }});
    cases.push_back({"argmax (C=1000)", shape_str(sh), F * N + 8 * R, true, [=]() mutable { KILN_DISPATCH(dev, argmax, x, idx); }});
    cases.push_back({"count_correct (C=1000)", shape_str(sh), F * N + F * R, true,
                     [=]() mutable { KILN_DISPATCH(dev, count_correct, x, lab, count); }});
    return cases;
  });
  // ---- data and optimizers -------------------------------------------------------------------------------
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t C = 3, HW = 224, imgs = std::max<int64_t>(1, n / (C * HW * HW));
    const Shape sh{imgs, C, HW, HW};
    Tensor x = Tensor::zeros(sh, DType::UInt8, dev), y = out(sh);
    const double N = static_cast<double>(imgs * C * HW * HW);
    cases.push_back({"normalize_u8", shape_str(sh), N + F * N, true, [=]() mutable {
                       const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
                       KILN_DISPATCH(dev, normalize_u8, x, mean, std, y);
                     }});
    return cases;
  });
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    Tensor p = rnd({n}), g = rnd({n}), buf = rnd({n}), v = rnd({n}, 0.0f, 1.0f);
    const double N = static_cast<double>(n);
    Tensor step = Tensor::zeros({1}, DType::Int64, dev);
    Tensor sc = Tensor::from_vector<float>({1e-6f, 0.5f, 0.5f, 0.0f}, {4}, dev);
    cases.push_back({"sgd_update (momentum)", shape_str({n}), 5 * F * N, true,
                     [=]() mutable { KILN_DISPATCH(dev, sgd_update, p, g, buf, sc, 0.9f, 0.0f, false); }});
    cases.push_back({"sgd_update (plain)", shape_str({n}), 3 * F * N, true,
                     [=]() mutable { KILN_DISPATCH(dev, sgd_update, p, g, buf, sc, 0.0f, 0.0f, false); }});
    cases.push_back({"adam_update", shape_str({n}), 7 * F * N, true,
                     [=]() mutable { KILN_DISPATCH(dev, adam_update, p, g, buf, v, sc, 0.9f, 0.999f, 1e-8f, 0.01f, true); }});
    Tensor advanced = sc.clone();  // its own scalars: the update cases keep their bias corrections at 0.5
    cases.push_back({"optim_advance", shape_str({1}), 16.0, false,
                     [=]() mutable { KILN_DISPATCH(dev, optim_advance, step, advanced, 1e-6f, 0.9f, 0.999f); }});
    return cases;
  });
  // ---- pooling, normalisation, resize (window kernels: reported, not held to the target) -------------------
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t C = 64, H = 55, imgs = std::max<int64_t>(1, n / (C * H * H));
    const Shape sh{imgs, C, H, H};
    Pool2dParams pp;
    pp.kernel_h = pp.kernel_w = 3;
    pp.stride_h = pp.stride_w = 2;
    const int64_t P = (H - 3) / 2 + 1;
    const Shape osh{imgs, C, P, P};
    Tensor x = rnd(sh), y = out(osh), am = out(osh, DType::Int32), dy = rnd(osh), dx = out(sh);
    const double IN = static_cast<double>(imgs * C * H * H), ON = static_cast<double>(imgs * C * P * P);
    KILN_DISPATCH(dev, max_pool2d_forward, x, pp, y, am);
    cases.push_back({"max_pool2d_forward 3x3/2", shape_str(sh), F * IN + 2 * F * ON, false,
                     [=]() mutable { KILN_DISPATCH(dev, max_pool2d_forward, x, pp, y, am); }});
    cases.push_back({"max_pool2d_backward 3x3/2", shape_str(sh), 2 * F * ON + F * IN, false,
                     [=]() mutable { KILN_DISPATCH(dev, max_pool2d_backward, dy, am, pp, dx); }});
    Tensor ly = out(sh), ls = out(sh), ldx = out(sh), ldy = rnd(sh);
    KILN_DISPATCH(dev, lrn_forward, x, 5, 1e-4f, 0.75f, 2.0f, ly, ls);
    cases.push_back({"lrn_forward (size 5)", shape_str(sh), 3 * F * IN, false,
                     [=]() mutable { KILN_DISPATCH(dev, lrn_forward, x, 5, 1e-4f, 0.75f, 2.0f, ly, ls); }});
    cases.push_back({"lrn_backward (size 5)", shape_str(sh), 5 * F * IN, false,
                     [=]() mutable { KILN_DISPATCH(dev, lrn_backward, x, ly, ls, ldy, 5, 1e-4f, 0.75f, 2.0f, ldx); }});
    return cases;
  });
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t C = 256, H = 13, imgs = std::max<int64_t>(1, n / (C * H * H));
    const Shape sh{imgs, C, H, H}, osh{imgs, C, 6, 6};
    Tensor x = rnd(sh), y = out(osh), dy = rnd(osh), dx = out(sh);
    const double IN = static_cast<double>(imgs * C * H * H), ON = static_cast<double>(imgs * C * 36);
    cases.push_back({"adaptive_avg_pool2d_forward 13->6", shape_str(sh), F * (IN + ON), false,
                     [=]() mutable { KILN_DISPATCH(dev, adaptive_avg_pool2d_forward, x, y); }});
    cases.push_back({"adaptive_avg_pool2d_backward 6->13", shape_str(sh), F * (IN + ON), false,
                     [=]() mutable { KILN_DISPATCH(dev, adaptive_avg_pool2d_backward, dy, dx); }});
    return cases;
  });
  groups.push_back([=, &gen]() {
    std::vector<Case> cases;
    const int64_t imgs = std::max<int64_t>(1, n / (224 * 224));
    const Shape sh{imgs, 1, 28, 28}, osh{imgs, 1, 224, 224};
    Tensor x = rnd(sh), y = out(osh);
    cases.push_back({"resize_bilinear 28->224", shape_str(osh), F * static_cast<double>(imgs) * (28 * 28 + 224 * 224),
                     false, [=]() mutable { KILN_DISPATCH(dev, resize_bilinear, x, y); }});
    return cases;
  });
  return groups;
}

}  // namespace

int kernel_bandwidth(Device dev, const KernelBenchOptions& o) {
  KILN_CHECK(o.repeat >= 0, "--repeat must be at least 1, got ", o.repeat);
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
  const std::vector<Group> groups = make_groups(dev, n, gen);
  const double target = o.min_fraction > 0 ? o.min_fraction : 0.8;
  if (o.markdown) {
    std::printf("| kernel | shape | MiB moved | ms | GB/s | %% of copy |\n|---|---|---|---|---|---|\n");
  } else {
    std::printf("%-34s %-22s %10s %10s %10s %8s\n", "kernel", "shape", "MiB moved", "ms", "GB/s", "% copy");
  }
  int held = 0, below = 0, ran = 0;
  std::string below_names;
  for (const Group& group : groups) {
    for (const Case& c : group()) {
      if (!o.filter.empty() && std::string(c.name).find(o.filter) == std::string::npos) continue;
      ++ran;
      const double ms = timer.time_ms(c.run, repeat);
      const double gbs = c.bytes / (ms * 1e6);
      const double frac = gbs / copy_gbs;
      const char* mark = "";
      if (c.target) {
        ++held;
        if (frac < target) {
          ++below;
          below_names += std::string(below_names.empty() ? "" : ", ") + c.name;
          mark = "  < target";
        }
      } else {
        mark = "  (window kernel)";
      }
      if (o.markdown) {
        const char* md_mark = !c.target ? " (window kernel)" : *mark ? " **(below target)**" : "";
        std::printf("| %s%s | %s | %.1f | %.3f | %.1f | %.1f%% |\n", c.name, md_mark, c.shape.c_str(),
                    c.bytes / (1 << 20), ms, gbs, 100 * frac);
      } else {
        std::printf("%-34s %-22s %10.1f %10.3f %10.1f %7.1f%%%s\n", c.name, c.shape.c_str(), c.bytes / (1 << 20), ms,
                    gbs, 100 * frac, mark);
      }
      std::fflush(stdout);
    }
  }
  KILN_CHECK(ran > 0, "--filter '", o.filter, "' matches no kernel");
  std::printf("\n%d of %d elementwise/reduction kernels at >= %.0f%% of the copy bandwidth%s%s\n", held - below, held,
              100 * target, below ? "; below: " : "", below_names.c_str());
  return o.min_fraction > 0 && below > 0 ? 1 : 0;
}

}  // namespace kiln::bench

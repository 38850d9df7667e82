#include "test_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace kt {

namespace {
// Fraction of the budget the worst element of the last all_close used; printed by the
// expect_close family when KILN_TEST_BUDGET is set (to see how much headroom a tolerance leaves).
double g_last_worst_ratio = 0;
void report_budget(const std::string& what) {
  static const bool on = std::getenv("KILN_TEST_BUDGET") != nullptr;
  if (on) std::printf("[ budget   ] %6.2f%%  %s\n", 100.0 * g_last_worst_ratio, what.c_str());
}
}  // namespace

bool full_size_tests() {
  static const bool full = [] {
    const char* s = std::getenv("KILN_TEST_SIZE");
    if (s && std::string(s) == "full") return true;
#if defined(KILN_CUDA_EMULATED)
    return false;
#else
    return true;
#endif
  }();
  return full;
}

std::string device_param_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param.is_cuda() ? "gpu" : "cpu";
}

// ---- conversions --------------------------------------------------------------------------------

DVec to_doubles(const Tensor& t) {
  DVec out;
  switch (t.dtype()) {
    case DType::Float32: for (float v : t.to_vector<float>()) out.push_back(v); break;
    case DType::Int32: for (std::int32_t v : t.to_vector<std::int32_t>()) out.push_back(v); break;
    case DType::Int64: for (std::int64_t v : t.to_vector<std::int64_t>()) out.push_back(static_cast<double>(v)); break;
    case DType::UInt8: for (std::uint8_t v : t.to_vector<std::uint8_t>()) out.push_back(v); break;
    default: ADD_FAILURE() << "to_doubles: unsupported dtype " << kiln::dtype_name(t.dtype()); break;
  }
  return out;
}

std::string index_str(std::size_t flat, const Shape& shape) {
  std::vector<std::int64_t> idx(shape.size());
  std::size_t rest = flat;
  for (std::size_t d = shape.size(); d-- > 0;) {
    std::size_t n = static_cast<std::size_t>(std::max<std::int64_t>(shape[d], 1));
    idx[d] = static_cast<std::int64_t>(rest % n);
    rest /= n;
  }
  std::ostringstream os;
  os << "[";
  for (std::size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  os << "]";
  return os.str();
}

Tensor randn_cpu(const Shape& shape, std::uint64_t seed, float stddev, float mean) {
  kiln::Generator gen(seed);
  return Tensor::randn(shape, gen, Device::cpu(), mean, stddev);
}

Tensor rand_cpu(const Shape& shape, std::uint64_t seed, float lo, float hi) {
  kiln::Generator gen(seed);
  return Tensor::rand(shape, gen, Device::cpu(), lo, hi);
}

Tensor small_ints_cpu(const Shape& shape, std::uint64_t seed, int lo, int hi) {
  std::int64_t n = kiln::shape_numel(shape);
  std::vector<float> v(static_cast<std::size_t>(n));
  const std::uint64_t span = static_cast<std::uint64_t>(hi - lo + 1);
  for (std::int64_t i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] =
        static_cast<float>(lo + static_cast<int>(kiln::philox::philox4x32(static_cast<std::uint64_t>(i), seed).x % span));
  return Tensor::from_vector(v, shape);
}

Tensor labels_cpu(std::int64_t n, std::int64_t classes, DType dtype, std::uint64_t seed) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] =
        static_cast<std::int64_t>(kiln::philox::philox4x32(static_cast<std::uint64_t>(i), seed).y % classes);
  if (dtype == DType::Int64) return Tensor::from_vector(v, {n});
  std::vector<std::int32_t> w(v.begin(), v.end());
  return Tensor::from_vector(w, {n});
}

Tensor fresh_on(const Tensor& t, Device device) {
  Tensor out = t.to(device);
  if (out.shares_storage(t)) out = t.clone();
  return out;
}

void poison_allocator(Device device, const std::vector<std::size_t>& bytes, int copies) {
  std::vector<Tensor> hold;
  for (std::size_t b : bytes)
    for (int i = 0; i < copies; ++i)
      hold.push_back(Tensor::full({static_cast<std::int64_t>((b + 3) / 4)}, std::numeric_limits<float>::quiet_NaN(), device));
  if (device.is_cuda()) kiln::cuda::synchronize(device.index);
}  // the tensors die here: their NaN-filled blocks go back to the free lists

// ---- compare ------------------------------------------------------------------------------------

::testing::AssertionResult all_close(const DVec& actual, const Shape& actual_shape, const DVec& expected,
                                     const Shape& expected_shape, const DVec* scale, double rtol, double atol) {
  if (actual_shape != expected_shape)
    return ::testing::AssertionFailure() << "shape " << kiln::shape_str(actual_shape) << ", expected "
                                         << kiln::shape_str(expected_shape);
  if (actual.size() != expected.size() || (scale && scale->size() != expected.size()))
    return ::testing::AssertionFailure() << "element counts differ: " << actual.size() << " vs "
                                         << expected.size() << (scale ? " (or scale)" : "");
  std::size_t bad = 0, nonfinite = 0, worst = 0;
  double worst_ratio = -1;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    const double s = scale ? (*scale)[i] : std::fabs(e);
    const double budget = atol + rtol * s + kUnderflowAtol;
    double ratio;
    if (std::isnan(a) || std::isnan(e)) {
      ratio = std::numeric_limits<double>::infinity();
      ++nonfinite;
    } else if (std::isinf(a) || std::isinf(e)) {
      ratio = (a == e) ? 0.0 : std::numeric_limits<double>::infinity();
      if (a != e) ++nonfinite;
    } else {
      const double diff = std::fabs(a - e);
      ratio = diff <= budget ? (budget > 0 ? diff / budget : 0.0) : (budget > 0 ? diff / budget : std::numeric_limits<double>::infinity());
    }
    const bool ok = ratio <= 1.0;
    if (!ok) ++bad;
    if (ratio > worst_ratio) {  // the first NaN/inf stays the worst
      worst_ratio = ratio;
      worst = i;
    }
  }
  g_last_worst_ratio = worst_ratio;
  if (bad == 0) return ::testing::AssertionSuccess();
  const double a = actual[worst], e = expected[worst];
  const double s = scale ? (*scale)[worst] : std::fabs(e);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%zu of %zu elements outside |a-e| <= atol + rtol*scale (rtol=%.3g, atol=%.3g)%s; worst at %s "
                "(flat %zu): actual=%.9g expected=%.9g |diff|=%.3g scale=%.3g budget=%.3g, %.3g%% of the budget used",
                bad, actual.size(), rtol, atol, nonfinite ? " [non-finite values present]" : "",
                index_str(worst, expected_shape).c_str(), worst, a, e, std::fabs(a - e), s, atol + rtol * s + kUnderflowAtol,
                100.0 * worst_ratio);
  return ::testing::AssertionFailure() << buf;
}

bool expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol, const std::string& what) {
  auto r = all_close(to_doubles(actual), actual.shape(), to_doubles(expected), expected.shape(), nullptr, rtol, atol);
  EXPECT_TRUE(r) << what;
  report_budget(what);
  return static_cast<bool>(r);
}

bool expect_close(const Tensor& actual, const Ref& expected, double rtol, double atol, const std::string& what) {
  auto r = all_close(to_doubles(actual), actual.shape(), expected.v, expected.shape,
                     expected.scale.empty() ? nullptr : &expected.scale, rtol, atol);
  EXPECT_TRUE(r) << what;
  report_budget(what);
  return static_cast<bool>(r);
}

bool expect_close(const Tensor& actual, const Tensor& expected, const DVec& scale, double rtol, double atol,
                  const std::string& what) {
  auto r = all_close(to_doubles(actual), actual.shape(), to_doubles(expected), expected.shape(),
                     scale.empty() ? nullptr : &scale, rtol, atol);
  EXPECT_TRUE(r) << what;
  report_budget(what);
  return static_cast<bool>(r);
}

bool expect_equal_values(const Tensor& actual, const DVec& expected, const Shape& shape, const std::string& what) {
  auto r = all_close(to_doubles(actual), actual.shape(), expected, shape, nullptr, 0.0, 0.0);
  EXPECT_TRUE(r) << what;
  report_budget(what);
  return static_cast<bool>(r);
}

// ---- gradient checking --------------------------------------------------------------------------

DVec numeric_grad(const LossFn& loss, std::vector<DVec> inputs, std::size_t which, double h) {
  DVec& x = inputs[which];
  DVec g(x.size());
  for (std::size_t e = 0; e < x.size(); ++e) {
    const double saved = x[e];
    x[e] = saved + h;
    const double lp = loss(inputs);
    x[e] = saved - h;
    const double lm = loss(inputs);
    x[e] = saved;
    g[e] = (lp - lm) / (2 * h);
  }
  return g;
}

namespace {

// Zeroes skipped elements in all three vectors so they cannot fail; returns how many.
std::size_t mask_skipped(const DVec& x, std::size_t which, const SkipFn& skip, DVec& a, DVec& b, DVec& s) {
  if (!skip) return 0;
  std::size_t n = 0;
  for (std::size_t e = 0; e < x.size(); ++e)
    if (skip(which, e, x[e])) {
      a[e] = b[e] = s[e] = 0;
      ++n;
    }
  return n;
}

double max_abs(const DVec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace

bool check_numeric_grad(const Tensor& analytic, const LossFn& loss, const std::vector<DVec>& inputs,
                        std::size_t which, double rtol, double atol_rel, const std::string& what,
                        const SkipFn& skip, const DVec* scale, double h) {
  if (!analytic.defined()) {
    ADD_FAILURE() << what << ": no gradient";
    return false;
  }
  DVec num = numeric_grad(loss, inputs, which, h);
  DVec ana = to_doubles(analytic);
  DVec s = scale ? *scale : DVec(num.size());
  if (!scale)
    for (std::size_t i = 0; i < num.size(); ++i) s[i] = std::fabs(num[i]);
  if (ana.size() != num.size()) {
    ADD_FAILURE() << what << ": gradient has " << ana.size() << " elements, input has " << num.size();
    return false;
  }
  std::size_t skipped = mask_skipped(inputs[which], which, skip, ana, num, s);
  // Central-difference noise: ~1e-16 |L| / h; 1e-8 (1 + |L|) is far above it and far below float budgets.
  const double floor = 1e-8 * (1.0 + std::fabs(loss(inputs)));
  const double atol = atol_rel * max_abs(num) + floor;
  auto r = all_close(ana, analytic.shape(), num, analytic.shape(), &s, rtol, atol);
  EXPECT_TRUE(r) << what << " (analytic vs central differences, " << skipped << " elements skipped at kinks)";
  report_budget(what + " vs central differences");
  return static_cast<bool>(r);
}

// ---- one op case ----------------------------------------------------------------------------------

namespace {

struct RunOut {
  Tensor out;
  std::vector<Tensor> grads;    // first backward
  std::vector<Tensor> grads2;   // after set_grad(P) and a second backward
};

bool wants_grad(const OpCase& c, std::size_t i) { return i < c.wrt.size() && c.wrt[i]; }

RunOut run_case(const OpCase& c, Device device, const Tensor& r_cpu, const std::vector<Tensor>& prefill_cpu,
                const Shape& out_shape) {
  RunOut res;
  std::vector<Tensor> leaves;
  std::vector<std::size_t> sizes{static_cast<std::size_t>(kiln::shape_numel(out_shape)) * 8};  // fits int64 too
  for (std::size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = fresh_on(c.inputs[i], device);
    if (wants_grad(c, i)) t.set_requires_grad(true);
    leaves.push_back(t);
    sizes.push_back(t.nbytes());
  }
  sizes.push_back(static_cast<std::size_t>(kiln::shape_numel(out_shape)) * 4);
  poison_allocator(device, sizes);
  res.out = c.op(leaves);
  EXPECT_TRUE(res.out.defined()) << c.name << ": op returned an undefined tensor";
  if (!res.out.defined()) return res;
  EXPECT_EQ(res.out.device(), device) << c.name << ": output on the wrong device";
  if (!r_cpu.defined()) return res;

  EXPECT_TRUE(res.out.requires_grad()) << c.name << ": output of an op on a requires_grad input must require grad";
  EXPECT_FALSE(res.out.is_leaf()) << c.name << ": output should carry a grad_fn";
  Tensor r = fresh_on(r_cpu, device);
  Tensor loss = kiln::sum(kiln::mul(res.out, r));
  poison_allocator(device, sizes);  // gradient buffers too
  loss.backward();
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    if (!wants_grad(c, i)) {
      res.grads.emplace_back();
      continue;
    }
    Tensor g = leaves[i].grad();
    EXPECT_TRUE(g.defined()) << c.name << ": input " << i << " got no gradient";
    if (g.defined()) {
      EXPECT_EQ(g.shape(), leaves[i].shape()) << c.name << ": gradient shape of input " << i;
      EXPECT_EQ(g.device(), device) << c.name << ": gradient device of input " << i;
      EXPECT_EQ(g.dtype(), DType::Float32) << c.name << ": gradient dtype of input " << i;
      g = g.clone();  // the second pass may accumulate into the leaf's buffer
    }
    res.grads.push_back(g);
  }
  // Second pass over a fresh graph with pre-filled gradients: must accumulate onto them.
  for (std::size_t i = 0; i < leaves.size(); ++i)
    if (wants_grad(c, i)) leaves[i].set_grad(fresh_on(prefill_cpu[i], device));
  Tensor out2 = c.op(leaves);
  kiln::sum(kiln::mul(out2, r)).backward();
  for (std::size_t i = 0; i < leaves.size(); ++i) res.grads2.push_back(wants_grad(c, i) ? leaves[i].grad() : Tensor());
  return res;
}

}  // namespace

void check_op(const OpCase& c, Device device) {
  SCOPED_TRACE(c.name + " on " + device.str());
  std::vector<DVec> x;
  for (const Tensor& t : c.inputs) x.push_back(to_doubles(t));
  const Ref ref = c.ref(x);

  bool any_grad = false;
  for (std::size_t i = 0; i < c.inputs.size(); ++i) any_grad = any_grad || wants_grad(c, i);
  Tensor r_cpu;
  std::vector<Tensor> prefill;
  if (any_grad) {
    r_cpu = c.integer_r ? small_ints_cpu(ref.shape, c.seed) : randn_cpu(ref.shape, c.seed);
    for (std::size_t i = 0; i < c.inputs.size(); ++i)
      prefill.push_back(c.integer_r ? small_ints_cpu(c.inputs[i].shape(), c.seed + 1 + i)
                                    : randn_cpu(c.inputs[i].shape(), c.seed + 1 + i));
  }
  RunOut run = run_case(c, device, r_cpu, prefill, ref.shape);
  if (!run.out.defined()) return;

  // 1. forward vs the double reference
  if (c.exact) {
    expect_equal_values(run.out, ref.v, ref.shape, c.name + ": forward (exact)");
  } else {
    EXPECT_EQ(run.out.dtype(), DType::Float32) << c.name;
    expect_close(run.out, ref, c.fwd_rtol, c.fwd_atol, c.name + ": forward vs double reference");
  }

  std::vector<Ref> gref;
  if (any_grad) {
    const DVec r = to_doubles(r_cpu);
    gref = c.vjp(x, r);
    const LossFn loss = [&](const std::vector<DVec>& xs) {
      Ref o = c.ref(xs);
      double l = 0;
      for (std::size_t i = 0; i < o.v.size(); ++i) l += o.v[i] * r[i];
      return l;
    };
    const SkipFn skip = c.kink > 0 ? SkipFn([&](std::size_t, std::size_t, double v) { return std::fabs(v) < c.kink; })
                                   : SkipFn();
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      if (!wants_grad(c, i) || !run.grads[i].defined()) continue;
      const std::string what = c.name + ": gradient of input " + std::to_string(i);
      // 2a. vs the double vjp
      expect_close(run.grads[i], gref[i], c.grad_rtol, c.grad_atol, what + " vs double reference");
      // 2b. vs central differences (anchors both kiln and the reference vjp)
      if (c.numeric) {
        const DVec num = numeric_grad(loss, x, i);
        const double floor = 1e-8 * (1.0 + std::fabs(loss(x)));
        DVec a = to_doubles(run.grads[i]), n1 = num, s1 = gref[i].scale;
        const std::size_t skipped = mask_skipped(x[i], i, skip, a, n1, s1);
        EXPECT_TRUE(all_close(a, run.grads[i].shape(), n1, gref[i].shape, &s1, c.grad_rtol, c.grad_atol + floor))
            << what << " vs central differences (" << skipped << " elements skipped at kinks)";
        report_budget(what + " vs central differences");
        DVec v = gref[i].v, n2 = num, s2 = gref[i].scale;
        mask_skipped(x[i], i, skip, v, n2, s2);
        EXPECT_TRUE(all_close(v, gref[i].shape, n2, gref[i].shape, &s2, 1e-7, floor))
            << what << ": the test's own double vjp disagrees with central differences";
      }
      // 3. pre-filled gradient: expect P + g
      if (run.grads2[i].defined()) {
        const DVec p = to_doubles(prefill[i]), g = to_doubles(run.grads[i]);
        DVec expect(p.size()), budget(p.size());
        for (std::size_t e = 0; e < p.size(); ++e) {
          expect[e] = p[e] + g[e];
          // rounding of the addition, plus the gradient's own budget (the second pass may
          // reduce in another order on a GPU)
          budget[e] = kElementwiseRtol * (std::fabs(p[e]) + std::fabs(g[e])) + c.grad_atol + c.grad_rtol * gref[i].scale[e];
        }
        EXPECT_TRUE(all_close(to_doubles(run.grads2[i]), run.grads2[i].shape(), expect, gref[i].shape, &budget, 1.0, 0.0))
            << what << ": with a pre-filled gradient P, backward must give P + g (accumulate, not overwrite)";
      } else {
        ADD_FAILURE() << what << ": no gradient after the second (pre-filled) backward";
      }
    }
  }

  // 4. device vs CPU on the same inputs
  if (device.is_cuda()) {
    RunOut cpu = run_case(c, Device::cpu(), r_cpu, prefill, ref.shape);
    if (!cpu.out.defined()) return;
    if (c.exact) {
      expect_equal_values(run.out, to_doubles(cpu.out), cpu.out.shape(), c.name + ": gpu vs cpu forward");
    } else {
      DVec s = ref.scale;
      if (s.empty())
        for (double v : ref.v) s.push_back(std::fabs(v));
      expect_close(run.out, cpu.out, s, 2 * c.fwd_rtol, 2 * c.fwd_atol, c.name + ": gpu vs cpu forward");
    }
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      if (!wants_grad(c, i) || !run.grads[i].defined() || !cpu.grads[i].defined()) continue;
      expect_close(run.grads[i], cpu.grads[i], gref[i].scale, 2 * c.grad_rtol, 2 * c.grad_atol,
                   c.name + ": gpu vs cpu gradient of input " + std::to_string(i));
    }
  }
}

}  // namespace kt

// Optimizers (SGD with momentum / Nesterov / weight decay, Adam, AdamW) against a double-precision
// reference with PyTorch's update rules, on both devices; optimizer state round trips; learning-rate
// schedules; option checks; and normalize_images (the uint8 -> float input transform).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "test_util.h"
#include "train_fixtures.h"

namespace {

using kiln::Device;
using kiln::DType;
using kiln::Shape;
using kiln::Tensor;
using kiln::io::NamedTensors;
using kt::DVec;
using kt::kEps;

// ---- the double-precision reference ----------------------------------------------------------------
//
// Every reference value v carries a magnitude s: the same recursion run on the absolute values of
// every term. Each float32 operation errs by at most u = kEps/2 relative to its result, whose size the
// magnitude bounds, and errors of earlier steps propagate through the same (contracting) linear
// recursion, so after T steps |kiln - ref| <= c * T * u * s, with c the number of roundings on the
// longest chain of one step (SGD: 4; Adam: ~10, counting the bias corrections rounded to float32).

struct Options {
  // SGD
  double lr = 0.1, momentum = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  // Adam
  bool adam = false, decoupled = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct RefParam {
  DVec p, sp;    // value and magnitude
  DVec b1, sb1;  // SGD momentum buffer / Adam first moment
  DVec b2, sb2;  // Adam second moment
};

RefParam ref_init(const DVec& p0) {
  RefParam r;
  r.p = p0;
  for (double v : p0) r.sp.push_back(std::fabs(v));
  r.b1.assign(p0.size(), 0.0);
  r.sb1 = r.b2 = r.sb2 = r.b1;
  return r;
}

// One step t (1-based) of the reference on parameter `r` with gradient `g`.
void ref_step(const Options& o, RefParam& r, const DVec& g, int t) {
  // The optimizer works in float32: its hyper-parameters are the float32 values.
  const double lr = static_cast<float>(o.lr), wd = static_cast<float>(o.weight_decay);
  for (std::size_t i = 0; i < r.p.size(); ++i) {
    if (!o.adam) {
      const double mom = static_cast<float>(o.momentum);
      double d = g[i] + wd * r.p[i], sd = std::fabs(g[i]) + wd * r.sp[i];
      if (mom > 0) {
        r.b1[i] = mom * r.b1[i] + d;
        r.sb1[i] = mom * r.sb1[i] + sd;
        if (o.nesterov) {
          d = d + mom * r.b1[i];
          sd = sd + mom * r.sb1[i];
        } else {
          d = r.b1[i];
          sd = r.sb1[i];
        }
      }
      r.p[i] -= lr * d;
      r.sp[i] += lr * sd;
    } else {
      const double b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2),
                   eps = static_cast<float>(o.eps);
      const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
      double d = g[i], sd = std::fabs(g[i]);
      if (o.decoupled) {
        r.p[i] *= 1.0 - lr * wd;
      } else {
        d += wd * r.p[i];
        sd += wd * r.sp[i];
      }
      r.b1[i] = b1 * r.b1[i] + (1 - b1) * d;
      r.sb1[i] = b1 * r.sb1[i] + (1 - b1) * sd;
      r.b2[i] = b2 * r.b2[i] + (1 - b2) * d * d;
      r.sb2[i] = b2 * r.sb2[i] + (1 - b2) * sd * sd;
      const double den = std::sqrt(r.b2[i] / bc2) + eps;
      r.p[i] -= lr * (r.b1[i] / bc1) / den;
      // error of the numerator (~ its magnitude) and of the denominator (~ sqrt of v's magnitude)
      r.sp[i] += lr * (r.sb1[i] / bc1 / den + std::fabs(r.b1[i]) / bc1 * std::sqrt(r.sb2[i] / bc2) / (den * den));
    }
  }
}

// ---- the kiln side -------------------------------------------------------------------------------

struct Problem {
  std::vector<Shape> shapes{{7, 5}, {5}, {3, 4}};  // the last one never gets a gradient
  int steps = 5;
  std::uint64_t seed = 100;
  Tensor p0(std::size_t k) const { return kt::randn_cpu(shapes[k], seed + k); }
  // The gradient of parameter k at step t (0-based): fixed inputs, independent of the parameters.
  Tensor grad(std::size_t k, int t) const { return kt::randn_cpu(shapes[k], seed + 1000 + 100 * t + k, 0.7f); }
};

std::unique_ptr<kiln::optim::Optimizer> make(const Options& o, NamedTensors params) {
  if (o.adam) {
    kiln::optim::AdamOptions a;
    a.lr = static_cast<float>(o.lr), a.beta1 = static_cast<float>(o.beta1), a.beta2 = static_cast<float>(o.beta2);
    a.eps = static_cast<float>(o.eps), a.weight_decay = static_cast<float>(o.weight_decay), a.decoupled = o.decoupled;
    return kiln::optim::adam(std::move(params), a);
  }
  kiln::optim::SGDOptions s;
  s.lr = static_cast<float>(o.lr), s.momentum = static_cast<float>(o.momentum);
  s.weight_decay = static_cast<float>(o.weight_decay), s.nesterov = o.nesterov;
  return kiln::optim::sgd(std::move(params), s);
}

NamedTensors make_params(const Problem& pb, Device dev) {
  NamedTensors params;
  const char* names[] = {"w", "b", "frozen"};
  for (std::size_t k = 0; k < pb.shapes.size(); ++k) {
    Tensor p = kt::fresh_on(pb.p0(k), dev);
    p.set_requires_grad(true);
    params.emplace_back(names[k], p);
  }
  return params;
}

// Runs steps [from, to) of the problem on `params` with `opt`.
void run_steps(const Problem& pb, NamedTensors& params, kiln::optim::Optimizer& opt, int from, int to, Device dev) {
  for (int t = from; t < to; ++t) {
    opt.zero_grad();
    for (std::size_t k = 0; k + 1 < params.size(); ++k) params[k].second.set_grad(pb.grad(k, t).to(dev));
    opt.step();
  }
}

// Per-step rounding count (see above) times the number of steps.
double rtol_for(const Options& o, int steps) { return (o.adam ? 10.0 : 4.0) * steps * kEps; }

struct OptCase {
  std::string name;
  Options o;
};

class OptimUpdate : public kt::DeviceTest {
 protected:
  void check(const OptCase& c) {
    SCOPED_TRACE(c.name);
    const Problem pb;
    NamedTensors params = make_params(pb, dev());
    auto opt = make(c.o, params);
    EXPECT_EQ(opt->steps(), 0);
    run_steps(pb, params, *opt, 0, pb.steps, dev());
    EXPECT_EQ(opt->steps(), pb.steps);
    const double rtol = rtol_for(c.o, pb.steps);

    std::vector<Tensor> cpu_result;
    if (on_gpu()) {  // the same updates on the CPU, for the device-vs-CPU comparison
      NamedTensors cp = make_params(pb, Device::cpu());
      auto co = make(c.o, cp);
      run_steps(pb, cp, *co, 0, pb.steps, Device::cpu());
      for (auto& [n, t] : cp) cpu_result.push_back(t);
    }

    for (std::size_t k = 0; k + 1 < pb.shapes.size(); ++k) {
      RefParam r = ref_init(kt::to_doubles(pb.p0(k)));
      for (int t = 0; t < pb.steps; ++t) ref_step(c.o, r, kt::to_doubles(pb.grad(k, t)), t + 1);
      const Tensor& p = params[k].second;
      EXPECT_EQ(p.device(), dev());
      kt::Ref ref{pb.shapes[k], r.p, r.sp};
      kt::expect_close(p, ref, rtol, 0.0, c.name + ": " + params[k].first + " vs double reference");
      if (on_gpu())
        kt::expect_close(p, cpu_result[k], r.sp, 2 * rtol, 0.0, c.name + ": " + params[k].first + " gpu vs cpu");
      // The update must have moved the parameter (a no-op optimizer fails the reference check, but
      // say so plainly).
      EXPECT_NE(kt::to_doubles(p), kt::to_doubles(pb.p0(k))) << c.name << ": parameter did not change";
    }
    // A parameter without a gradient is left exactly as it was.
    const std::size_t f = pb.shapes.size() - 1;
    EXPECT_EQ(kt::to_doubles(params[f].second), kt::to_doubles(pb.p0(f))) << c.name << ": frozen parameter changed";
  }
};

TEST_P(OptimUpdate, SgdPlain) {
  Options o;
  o.lr = 0.1;
  check({"sgd", o});
}

TEST_P(OptimUpdate, SgdWeightDecay) {
  Options o;
  o.lr = 0.05, o.weight_decay = 0.1;
  check({"sgd+wd", o});
}

TEST_P(OptimUpdate, SgdMomentum) {
  Options o;
  o.lr = 0.1, o.momentum = 0.9;
  check({"sgd momentum", o});
}

TEST_P(OptimUpdate, SgdMomentumWeightDecay) {
  Options o;
  o.lr = 0.1, o.momentum = 0.8, o.weight_decay = 0.01;
  check({"sgd momentum+wd", o});
}

TEST_P(OptimUpdate, SgdNesterov) {
  Options o;
  o.lr = 0.1, o.momentum = 0.9, o.nesterov = true, o.weight_decay = 0.01;
  check({"sgd nesterov+wd", o});
}

TEST_P(OptimUpdate, Adam) {
  Options o;
  o.adam = true, o.lr = 0.01;
  check({"adam", o});
}

TEST_P(OptimUpdate, AdamWeightDecay) {
  Options o;
  o.adam = true, o.lr = 0.01, o.weight_decay = 0.05, o.beta1 = 0.8, o.beta2 = 0.99;
  check({"adam (L2 weight decay)", o});
}

TEST_P(OptimUpdate, AdamW) {
  Options o;
  o.adam = true, o.decoupled = true, o.lr = 0.01, o.weight_decay = 0.1;
  check({"adamw", o});
}

// Adam's first step moves every element by about lr (m/bc1 = g, sqrt(v/bc2) = |g|): a sign check
// independent of the reference implementation above.
TEST_P(OptimUpdate, AdamFirstStepIsLrTimesSign) {
  const Problem pb;
  NamedTensors params = make_params(pb, dev());
  Options o;
  o.adam = true, o.lr = 0.01;
  auto opt = make(o, params);
  run_steps(pb, params, *opt, 0, 1, dev());
  const DVec p0 = kt::to_doubles(pb.p0(0)), g = kt::to_doubles(pb.grad(0, 0)), p1 = kt::to_doubles(params[0].second);
  for (std::size_t i = 0; i < p0.size(); ++i) {
    const double expect = p0[i] - 0.01 * (g[i] > 0 ? 1.0 : -1.0) * std::fabs(g[i]) / (std::fabs(g[i]) + 1e-8);
    EXPECT_NEAR(p1[i], expect, 1e-6) << "element " << i;
  }
}

// set_lr between steps changes the size of the next update.
TEST_P(OptimUpdate, SetLrAppliesToTheNextStep) {
  const Problem pb;
  NamedTensors params = make_params(pb, dev());
  Options o;
  o.lr = 0.1;
  auto opt = make(o, params);
  EXPECT_FLOAT_EQ(opt->lr(), 0.1f);
  opt->set_lr(0.375f);
  EXPECT_FLOAT_EQ(opt->lr(), 0.375f);
  run_steps(pb, params, *opt, 0, 1, dev());
  Options ref_o = o;
  ref_o.lr = 0.375;
  RefParam r = ref_init(kt::to_doubles(pb.p0(0)));
  ref_step(ref_o, r, kt::to_doubles(pb.grad(0, 0)), 1);
  kt::expect_close(params[0].second, kt::Ref{pb.shapes[0], r.p, r.sp}, rtol_for(ref_o, 1), 0.0,
                   "sgd step after set_lr(0.375)");
}

// state() -> save_safetensors -> load_safetensors -> load_state into a fresh optimizer over copies
// of the parameters: both continue bit-identically.
TEST_P(OptimUpdate, StateRoundTripContinuesIdentically) {
  std::vector<OptCase> cases;
  {
    Options o;
    o.momentum = 0.9, o.nesterov = true, o.weight_decay = 0.01;
    cases.push_back({"sgd nesterov", o});
  }
  {
    Options o;
    cases.push_back({"sgd plain", o});
  }
  {
    Options o;
    o.adam = true, o.lr = 0.01;
    cases.push_back({"adam", o});
  }
  {
    Options o;
    o.adam = true, o.decoupled = true, o.lr = 0.01, o.weight_decay = 0.1;
    cases.push_back({"adamw", o});
  }
  kt::TempDir tmp("kiln_optim");
  for (const OptCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Problem pb;
    NamedTensors a = make_params(pb, dev());
    auto oa = make(c.o, a);
    run_steps(pb, a, *oa, 0, 3, dev());

    const std::string path = tmp.file(c.name + ".safetensors");
    NamedTensors saved = oa->state();
    bool has_step = false;
    for (auto& [n, t] : saved) has_step = has_step || n == "optim.step";
    EXPECT_TRUE(has_step) << "state() has no optim.step";
    if (c.o.adam) {
      EXPECT_EQ(saved.size(), 1 + 2 * a.size()) << "adam state: step plus exp_avg and exp_avg_sq per parameter";
    } else if (c.o.momentum > 0) {
      EXPECT_EQ(saved.size(), 1 + a.size()) << "sgd momentum state: step plus one buffer per parameter";
    }
    for (const auto& [n, t] : a) saved.emplace_back(n, t);  // the parameters travel in the same file
    kiln::io::save_safetensors(path, saved);
    const kiln::io::SafetensorsFile f = kiln::io::load_safetensors(path);

    NamedTensors b;
    for (const auto& [n, t] : a) {
      const Tensor* st = f.find(n);
      ASSERT_NE(st, nullptr) << n;
      Tensor p = kt::fresh_on(*st, dev());
      p.set_requires_grad(true);
      b.emplace_back(n, p);
    }
    Options other = c.o;
    auto ob = make(other, b);
    ob->load_state(f.tensors);
    EXPECT_EQ(ob->steps(), 3);
    EXPECT_EQ(ob->name(), oa->name());

    run_steps(pb, a, *oa, 3, 6, dev());
    run_steps(pb, b, *ob, 3, 6, dev());
    for (std::size_t k = 0; k < a.size(); ++k)
      EXPECT_EQ(a[k].second.to_vector<float>(), b[k].second.to_vector<float>())
          << c.name << ": parameter " << a[k].first << " differs after resuming from the saved state";
    // And the resumed run is not a fresh one: a fresh optimizer from the same weights diverges
    // (momentum / moment estimates / bias correction carry over).
    if (c.o.adam || c.o.momentum > 0) {
      NamedTensors fresh;
      for (const auto& [n, t] : b) {
        Tensor p = kt::fresh_on(*f.find(n), dev());
        p.set_requires_grad(true);
        fresh.emplace_back(n, p);
      }
      auto of = make(c.o, fresh);
      run_steps(pb, fresh, *of, 3, 6, dev());
      EXPECT_NE(fresh[0].second.to_vector<float>(), b[0].second.to_vector<float>())
          << c.name << ": state apparently has no effect (test would not detect a lost state)";
    }
  }
}

TEST_P(OptimUpdate, LoadStateRejectsMissingOrMisshapenTensors) {
  const Problem pb;
  NamedTensors a = make_params(pb, dev());
  Options o;
  o.momentum = 0.9;
  auto opt = make(o, a);
  NamedTensors st = opt->state();

  NamedTensors missing;
  for (auto& [n, t] : st)
    if (n != "optim.w.momentum") missing.emplace_back(n, t);
  try {
    opt->load_state(missing);
    ADD_FAILURE() << "load_state without optim.w.momentum did not throw";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim.w.momentum"), std::string::npos) << e.what();
  }

  NamedTensors bad;
  for (auto& [n, t] : st) bad.emplace_back(n, n == "optim.b.momentum" ? Tensor::zeros({6}) : t);
  try {
    opt->load_state(bad);
    ADD_FAILURE() << "load_state with a [6] buffer for a [5] parameter did not throw";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim.b.momentum"), std::string::npos) << e.what();
  }

  NamedTensors no_step;
  for (auto& [n, t] : st)
    if (n != "optim.step") no_step.emplace_back(n, t);
  EXPECT_THROW(opt->load_state(no_step), kiln::Error);

  // An SGD state does not load into Adam.
  Options ad;
  ad.adam = true;
  auto adam = make(ad, a);
  EXPECT_THROW(adam->load_state(st), kiln::Error);
}

KILN_INSTANTIATE_DEVICES(OptimUpdate);

// ---- option checks ---------------------------------------------------------------------------------

NamedTensors one_param() {
  Tensor p = Tensor::zeros({3});
  p.set_requires_grad(true);
  return {{"p", p}};
}

TEST(OptimOptions, SgdRejectsBadValues) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto sgd = [](float lr, float momentum, float wd, bool nesterov) {
    kiln::optim::SGDOptions s;
    s.lr = lr, s.momentum = momentum, s.weight_decay = wd, s.nesterov = nesterov;
    return kiln::optim::sgd(one_param(), s);
  };
  EXPECT_THROW(sgd(nan, 0, 0, false), kiln::Error) << "lr NaN";
  EXPECT_THROW(sgd(inf, 0, 0, false), kiln::Error) << "lr inf";
  EXPECT_THROW(sgd(-0.1f, 0, 0, false), kiln::Error) << "lr negative";
  EXPECT_THROW(sgd(0.1f, 1.0f, 0, false), kiln::Error) << "momentum 1";
  EXPECT_THROW(sgd(0.1f, -0.5f, 0, false), kiln::Error) << "momentum negative";
  EXPECT_THROW(sgd(0.1f, nan, 0, false), kiln::Error) << "momentum NaN";
  EXPECT_THROW(sgd(0.1f, 0, 0, true), kiln::Error) << "nesterov without momentum";
  EXPECT_THROW(sgd(0.1f, 0, -1e-4f, false), kiln::Error) << "weight decay negative";
  // and the valid corners are accepted
  EXPECT_NO_THROW(sgd(0.0f, 0, 0, false));
  EXPECT_NO_THROW(sgd(0.1f, 0.99f, 0.1f, true));
}

TEST(OptimOptions, AdamRejectsBadValues) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto adam = [](float lr, float b1, float b2, float eps, float wd) {
    kiln::optim::AdamOptions a;
    a.lr = lr, a.beta1 = b1, a.beta2 = b2, a.eps = eps, a.weight_decay = wd;
    return kiln::optim::adam(one_param(), a);
  };
  EXPECT_THROW(adam(nan, 0.9f, 0.999f, 1e-8f, 0), kiln::Error) << "lr NaN";
  EXPECT_THROW(adam(-1e-3f, 0.9f, 0.999f, 1e-8f, 0), kiln::Error) << "lr negative";
  EXPECT_THROW(adam(1e-3f, 1.0f, 0.999f, 1e-8f, 0), kiln::Error) << "beta1 1";
  EXPECT_THROW(adam(1e-3f, 0.9f, 1.0f, 1e-8f, 0), kiln::Error) << "beta2 1";
  EXPECT_THROW(adam(1e-3f, 0.9f, nan, 1e-8f, 0), kiln::Error) << "beta2 NaN";
  EXPECT_THROW(adam(1e-3f, 0.9f, 0.999f, 0.0f, 0), kiln::Error) << "eps 0";
  EXPECT_THROW(adam(1e-3f, 0.9f, 0.999f, 1e-8f, -0.1f), kiln::Error) << "weight decay negative";
  EXPECT_NO_THROW(adam(1e-3f, 0.0f, 0.0f, 1e-8f, 0.1f));
}

// ---- schedules ------------------------------------------------------------------------------------

using kiln::optim::Schedule;

void expect_lr(const Schedule& s, std::int64_t step, double expected) {
  EXPECT_NEAR(s.lr_at(step), expected, 4 * kEps * std::fabs(expected) + 1e-12) << "step " << step;
}

TEST(Schedule, Constant) {
  Schedule s;
  s.kind = Schedule::Kind::Constant;
  s.base_lr = 0.05f;
  for (std::int64_t t : {0, 1, 7, 1000}) expect_lr(s, t, 0.05f);
}

TEST(Schedule, StepDecay) {
  Schedule s;
  s.kind = Schedule::Kind::Step;
  s.base_lr = 0.1f, s.step_size = 3, s.gamma = 0.5f;
  // steps 0-2: 0.1, 3-5: 0.05, 6-8: 0.025, 9: 0.0125
  const double expected[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125};
  for (int t = 0; t < 10; ++t) expect_lr(s, t, static_cast<double>(0.1f) * expected[t] / 0.1);
}

TEST(Schedule, Cosine) {
  Schedule s;
  s.kind = Schedule::Kind::Cosine;
  s.base_lr = 0.2f, s.total_steps = 8, s.min_lr = 0.0f;
  const double base = 0.2f;
  expect_lr(s, 0, base);                                   // cos(0) = 1
  expect_lr(s, 2, base * (1 + std::sqrt(0.5)) / 2);        // cos(pi/4)
  expect_lr(s, 4, base / 2);                               // cos(pi/2) = 0
  expect_lr(s, 6, base * (1 - std::sqrt(0.5)) / 2);        // cos(3pi/4)
  EXPECT_NEAR(s.lr_at(8), 0.0, 1e-7);                      // cos(pi) = -1: the floor
  EXPECT_NEAR(s.lr_at(20), 0.0, 1e-7) << "past the end stays at the floor";
  for (int t = 1; t <= 8; ++t) EXPECT_LT(s.lr_at(t), s.lr_at(t - 1)) << "cosine must decrease, step " << t;

  s.min_lr = 0.02f;
  const double lo = 0.02f;
  expect_lr(s, 0, base);
  expect_lr(s, 4, lo + (base - lo) / 2);
  expect_lr(s, 8, lo);
  expect_lr(s, 100, lo);
}

TEST(Schedule, WarmupThenConstantStepCosine) {
  Schedule s;
  s.base_lr = 0.1f, s.warmup_steps = 4;
  const double base = 0.1f;
  // linear from base/4 up to base over the first 4 steps
  for (Schedule::Kind k : {Schedule::Kind::Constant, Schedule::Kind::Step, Schedule::Kind::Cosine}) {
    s.kind = k;
    s.step_size = 2, s.gamma = 0.5f, s.total_steps = 12;
    expect_lr(s, 0, base * 1 / 4);
    expect_lr(s, 1, base * 2 / 4);
    expect_lr(s, 2, base * 3 / 4);
    expect_lr(s, 3, base);  // the last warm-up step reaches base_lr
  }
  s.kind = Schedule::Kind::Constant;
  expect_lr(s, 4, base);
  expect_lr(s, 50, base);
  s.kind = Schedule::Kind::Step;  // steps counted after warm-up: 4,5 -> base; 6,7 -> base/2; 8 -> base/4
  expect_lr(s, 4, base);
  expect_lr(s, 5, base);
  expect_lr(s, 6, base * 0.5);
  expect_lr(s, 7, base * 0.5);
  expect_lr(s, 8, base * 0.25);
  s.kind = Schedule::Kind::Cosine;  // the cosine spans total - warm-up = 8 steps after warm-up
  expect_lr(s, 4, base);
  expect_lr(s, 8, base / 2);
  EXPECT_NEAR(s.lr_at(12), 0.0, 1e-7);
}

TEST(Schedule, Parse) {
  EXPECT_EQ(Schedule::parse("constant"), Schedule::Kind::Constant);
  EXPECT_EQ(Schedule::parse("step"), Schedule::Kind::Step);
  EXPECT_EQ(Schedule::parse("cosine"), Schedule::Kind::Cosine);
  try {
    Schedule::parse("linear");
    ADD_FAILURE() << "parse(\"linear\") did not throw";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos) << e.what();
  }
}

// ---- normalize_images -------------------------------------------------------------------------------

// uint8 images with every byte value present, from a fixed seed.
Tensor u8_images(const Shape& shape, std::uint64_t seed) {
  std::vector<std::uint8_t> v(static_cast<std::size_t>(kiln::shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<std::uint8_t>(i < 256 ? i : kiln::philox::philox4x32(i, seed).x & 0xFF);
  return Tensor::from_vector(v, shape);
}

// (x / 255 - mean[c]) / std[c] in double, with the magnitude |x / 255 / std| + |mean / std| of the
// two terms (the kernel may compute x * (1 / (255 std)) + (-mean / std): ~4 roundings of that size).
kt::Ref normalize_ref(const Tensor& images, const std::vector<float>& mean, const std::vector<float>& std) {
  const Shape& s = images.shape();
  const std::int64_t N = s[0], C = s[1], inner = images.numel() / (N * C);
  const DVec x = kt::to_doubles(images);
  kt::Ref r{s, DVec(x.size()), DVec(x.size())};
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) {
      const double m = mean[mean.size() == 1 ? 0 : c], sd = std[std.size() == 1 ? 0 : c];
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::size_t k = static_cast<std::size_t>((n * C + c) * inner + i);
        r.v[k] = (x[k] / 255.0 - m) / sd;
        r.scale[k] = std::fabs(x[k] / 255.0 / sd) + std::fabs(m / sd);
      }
    }
  return r;
}

class NormalizeImages : public kt::DeviceTest {
 protected:
  void check(const Shape& shape, const std::vector<float>& mean, const std::vector<float>& std,
             const std::string& what) {
    SCOPED_TRACE(what);
    const Tensor x = u8_images(shape, 7);
    const Tensor y = kiln::normalize_images(kt::fresh_on(x, dev()), mean, std);
    EXPECT_EQ(y.dtype(), DType::Float32);
    EXPECT_EQ(y.device(), dev());
    const kt::Ref ref = normalize_ref(x, mean, std);
    kt::expect_close(y, ref, kt::kElementwiseRtol, 0.0, what + " vs double reference");
    if (on_gpu())
      kt::expect_close(y, kiln::normalize_images(x, mean, std), ref.scale, 2 * kt::kElementwiseRtol, 0.0,
                       what + ": gpu vs cpu");
  }
};

TEST_P(NormalizeImages, OneChannel) { check({4, 1, 9, 11}, {0.1307f}, {0.3081f}, "1 channel, MNIST stats"); }

TEST_P(NormalizeImages, ThreeChannelsPerChannelStats) {
  check({3, 3, 8, 13}, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, "3 channels, per-channel stats");
}

TEST_P(NormalizeImages, ThreeChannelsSharedStats) { check({2, 3, 5, 7}, {0.5f}, {0.25f}, "3 channels, one mean/std"); }

TEST_P(NormalizeImages, ExactValuesForUnitStats) {
  // mean 0, std 1: y = x / 255, whose float32 rounding is the only error.
  const Tensor x = u8_images({1, 1, 16, 16}, 3);
  const Tensor y = kiln::normalize_images(kt::fresh_on(x, dev()), {0.0f}, {1.0f});
  const DVec xv = kt::to_doubles(x), yv = kt::to_doubles(y);
  ASSERT_EQ(xv.size(), yv.size());
  for (std::size_t i = 0; i < xv.size(); ++i) ASSERT_NEAR(yv[i], xv[i] / 255.0, 2 * kEps * xv[i] / 255.0) << i;
}

TEST_P(NormalizeImages, Errors) {
  const Tensor x = kt::fresh_on(u8_images({2, 3, 4, 4}, 1), dev());
  EXPECT_THROW(kiln::normalize_images(kt::fresh_on(kt::rand_cpu({2, 3, 4, 4}, 1), dev()), {0.5f}, {0.5f}), kiln::Error)
      << "float32 input";
  EXPECT_THROW(kiln::normalize_images(x, {0.5f}, {0.0f}), kiln::Error) << "std 0";
  EXPECT_THROW(kiln::normalize_images(x, {0.5f, 0.5f, 0.5f}, {0.2f, 0.0f, 0.2f}), kiln::Error) << "one std 0";
  EXPECT_THROW(kiln::normalize_images(x, {0.5f}, {-0.2f}), kiln::Error) << "negative std";
  EXPECT_THROW(kiln::normalize_images(x, {0.5f, 0.5f}, {0.2f}), kiln::Error) << "2 means for 3 channels";
  EXPECT_THROW(kiln::normalize_images(kt::fresh_on(u8_images({1, 5, 2, 2}, 1), dev()), {0.5f}, {0.2f}), kiln::Error)
      << "5 channels";
  try {
    kiln::normalize_images(x, {0.5f}, {0.0f});
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("normalize_images"), std::string::npos) << e.what();
  }
}

KILN_INSTANTIATE_DEVICES(NormalizeImages);

}  // namespace

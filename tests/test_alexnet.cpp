// AlexNet (models::alexnet, torchvision's layout, and models::alexnet2012, the paper's with LRN and
// optional two-tower grouping): parameter names and shapes against torchvision, forward shapes,
// eval determinism and dropout reproducibility, a whole-model forward + backward on the device
// against the CPU (and against directional differences on the CPU), the input pipeline
// (prepare_input's resize, build_model's refusal of small inputs), weights-only loading, and a
// short training run on a generated image folder.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/image.h"
#include "kiln/kiln.h"
#include "kiln/train.h"
#include "test_util.h"
#include "train_fixtures.h"

#include "stb_write.h"

namespace {

using kiln::Device;
using kiln::DType;
using kiln::Generator;
using kiln::Shape;
using kiln::Tensor;
using kiln::nn::Module;
using kt::DVec;
using kt::TempDir;
namespace models = kiln::models;

using Layout = std::vector<std::pair<std::string, Shape>>;

std::shared_ptr<Generator> dropout_gen(std::uint64_t seed) { return std::make_shared<Generator>(seed); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Weights [out, in, k, k] + bias [out] of a conv layer, or [out, in] + [out] of a linear one.
void add_layer(Layout& l, const std::string& name, Shape weight) {
  const std::int64_t out = weight[0];
  l.emplace_back(name + ".weight", std::move(weight));
  l.emplace_back(name + ".bias", Shape{out});
}

// torchvision.models.alexnet(num_classes=classes), with `in` input channels.
Layout torchvision_alexnet(std::int64_t in, std::int64_t classes) {
  Layout l;
  add_layer(l, "features.0", {64, in, 11, 11});
  add_layer(l, "features.3", {192, 64, 5, 5});
  add_layer(l, "features.6", {384, 192, 3, 3});
  add_layer(l, "features.8", {256, 384, 3, 3});
  add_layer(l, "features.10", {256, 256, 3, 3});
  add_layer(l, "classifier.1", {4096, 9216});
  add_layer(l, "classifier.4", {4096, 4096});
  add_layer(l, "classifier.6", {classes, 4096});
  return l;
}

// The 2012 layout: conv, relu, lrn, pool, conv, relu, lrn, pool, conv, relu, conv, relu, conv, relu, pool.
Layout alexnet2012_layout(std::int64_t in, std::int64_t classes, std::int64_t g) {
  Layout l;
  add_layer(l, "features.0", {96, in, 11, 11});
  add_layer(l, "features.4", {256, 96 / g, 5, 5});
  add_layer(l, "features.8", {384, 256, 3, 3});
  add_layer(l, "features.10", {384, 384 / g, 3, 3});
  add_layer(l, "features.12", {256, 384 / g, 3, 3});
  add_layer(l, "classifier.1", {4096, 9216});
  add_layer(l, "classifier.4", {4096, 4096});
  add_layer(l, "classifier.6", {classes, 4096});
  return l;
}

std::int64_t layout_count(const Layout& l) {
  std::int64_t n = 0;
  for (const auto& [name, shape] : l) n += kiln::shape_numel(shape);
  return n;
}

// Names, order and shapes of the model's parameters; all float32, on the CPU, requiring grad.
void expect_layout(Module& m, const Layout& expected, const std::string& what) {
  SCOPED_TRACE(what);
  const auto params = m.named_parameters();
  ASSERT_EQ(params.size(), expected.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].first, expected[i].first) << "parameter " << i;
    EXPECT_EQ(params[i].second.shape(), expected[i].second) << params[i].first;
    EXPECT_EQ(params[i].second.dtype(), DType::Float32) << params[i].first;
    EXPECT_TRUE(params[i].second.requires_grad()) << params[i].first;
  }
  EXPECT_EQ(m.parameter_count(), layout_count(expected));
}

// Bitwise equality of two float tensors (copied to the host if needed).
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

bool all_finite(const Tensor& t) {
  for (float v : t.to_vector<float>())
    if (!std::isfinite(v)) return false;
  return true;
}

// ---- layout -------------------------------------------------------------------------------------

TEST(AlexNet, ParametersMatchTorchvision) {
  Generator gen(1);
  auto m = models::alexnet(3, 1000, gen, dropout_gen(2));
  const Layout expected = torchvision_alexnet(3, 1000);
  ASSERT_EQ(expected.size(), 16u);
  ASSERT_EQ(layout_count(expected), 61100840);  // torchvision's documented parameter count
  expect_layout(*m, expected, "alexnet(3, 1000)");
  EXPECT_EQ(m->parameter_count(), 61100840);

  // Every parameter got initialised (torchvision's default: uniform in +-1/sqrt(fan_in)).
  for (const auto& [name, t] : m->named_parameters()) {
    const auto v = t.to_vector<float>();
    float lo = v[0], hi = v[0];
    for (float x : v) lo = std::min(lo, x), hi = std::max(hi, x);
    EXPECT_LT(lo, hi) << name << " is constant (" << lo << "): not initialised";
  }
}

TEST(AlexNet, WeightInitIsTorchDefault) {
  Generator gen(3);
  auto m = models::alexnet(3, 10, gen, dropout_gen(4));
  // fan_in per weight: in / groups * k * k for convs, in for linears; biases use their weight's fan_in.
  const std::map<std::string, double> fan_in{{"features.0", 3 * 121},   {"features.3", 64 * 25},
                                             {"features.6", 192 * 9},   {"features.8", 384 * 9},
                                             {"features.10", 256 * 9},  {"classifier.1", 9216},
                                             {"classifier.4", 4096},    {"classifier.6", 4096}};
  for (const auto& [name, t] : m->named_parameters()) {
    const std::string layer = name.substr(0, name.rfind('.'));
    ASSERT_TRUE(fan_in.count(layer)) << name;
    const double bound = 1.0 / std::sqrt(fan_in.at(layer));
    double max_abs = 0, sum_sq = 0;
    const auto v = t.to_vector<float>();
    for (float x : v) max_abs = std::max(max_abs, std::fabs(static_cast<double>(x))), sum_sq += static_cast<double>(x) * x;
    EXPECT_LE(max_abs, bound * (1 + 1e-6)) << name << ": outside +-1/sqrt(fan_in)";
    if (v.size() >= 1000) {  // the standard deviation of U(-b, b) is b / sqrt(3)
      const double sd = std::sqrt(sum_sq / static_cast<double>(v.size()));
      EXPECT_NEAR(sd, bound / std::sqrt(3.0), 0.1 * bound) << name;
    }
  }
}

TEST(AlexNet, Alexnet2012Layouts) {
  for (std::int64_t g : {1, 2}) {
    Generator gen(5);
    auto m = models::alexnet2012(3, 1000, g, gen, dropout_gen(6));
    const Layout expected = alexnet2012_layout(3, 1000, g);
    expect_layout(*m, expected, "alexnet2012(3, 1000, groups " + std::to_string(g) + ")");
  }
  // The counts by hand: grouping halves conv2, conv4 and conv5's weights.
  const std::int64_t convs1 = 96 * 3 * 121 + 96 + 256 * 96 * 25 + 256 + 384 * 256 * 9 + 384 + 384 * 384 * 9 + 384 +
                              256 * 384 * 9 + 256;
  const std::int64_t fc = 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 1000 * 4096 + 1000;
  EXPECT_EQ(layout_count(alexnet2012_layout(3, 1000, 1)), convs1 + fc);
  EXPECT_EQ(layout_count(alexnet2012_layout(3, 1000, 2)),
            convs1 + fc - (256 * 96 * 25 + 384 * 384 * 9 + 256 * 384 * 9) / 2);
  Generator gen(7);
  EXPECT_THROW(models::alexnet2012(3, 10, 3, gen, dropout_gen(8)), kiln::Error);
}

TEST(AlexNet, SingleChannelInput) {
  Generator gen(9);
  auto m = models::alexnet(1, 10, gen, dropout_gen(10));
  expect_layout(*m, torchvision_alexnet(1, 10), "alexnet(1, 10)");
  Generator gen2(11);
  auto m2 = models::alexnet2012(1, 10, 2, gen2, dropout_gen(12));
  expect_layout(*m2, alexnet2012_layout(1, 10, 2), "alexnet2012(1, 10, 2)");
  kiln::NoGradGuard no_grad;
  m->set_training(false);
  m2->set_training(false);
  const Tensor x = kt::randn_cpu({2, 1, 64, 64}, 13);
  EXPECT_EQ((*m)(x).shape(), (Shape{2, 10}));
  EXPECT_EQ((*m2)(x).shape(), (Shape{2, 10}));
  // A 3-channel batch is refused by a 1-channel model.
  EXPECT_THROW((*m)(kt::randn_cpu({1, 3, 64, 64}, 14)), kiln::Error);
}

// ---- forward ------------------------------------------------------------------------------------

TEST(AlexNet, ForwardShapes) {
  kiln::NoGradGuard no_grad;
  Generator gen(15);
  auto m = models::alexnet(3, 17, gen, dropout_gen(16));
  Generator gen2(17);
  auto m2 = models::alexnet2012(3, 5, 2, gen2, dropout_gen(18));
  m->set_training(false);
  m2->set_training(false);
  struct Case { std::int64_t n, hw; };
  for (const Case c : {Case{2, 224}, Case{3, 64}, Case{1, 63}, Case{2, 100}}) {
    const Tensor x = kt::randn_cpu({c.n, 3, c.hw, c.hw}, 19 + static_cast<std::uint64_t>(c.hw));
    const Tensor y = (*m)(x);
    EXPECT_EQ(y.shape(), (Shape{c.n, 17})) << "alexnet at " << c.hw;
    EXPECT_TRUE(all_finite(y)) << "alexnet at " << c.hw;
    const Tensor y2 = (*m2)(x);
    EXPECT_EQ(y2.shape(), (Shape{c.n, 5})) << "alexnet2012 at " << c.hw;
    EXPECT_TRUE(all_finite(y2)) << "alexnet2012 at " << c.hw;
  }
  // Samples of a batch are independent: the first row of a batch equals that sample alone.
  const Tensor x = kt::randn_cpu({2, 3, 64, 64}, 23);
  const Tensor both = (*m)(x), first = (*m)(x.narrow0(0, 1));
  kt::expect_close(both.narrow0(0, 1), first, kt::reduction_rtol(9216) * 8, 1e-6, "row 0 of a batch vs alone");
}

TEST(AlexNet, EvalIsDeterministicTrainDropoutIsReproducible) {
  kiln::NoGradGuard no_grad;
  Generator gen(25);
  auto dgen = dropout_gen(26);
  auto m = models::alexnet(3, 10, gen, dgen);
  const Tensor x = kt::randn_cpu({2, 3, 64, 64}, 27);

  m->set_training(false);
  const Tensor e1 = (*m)(x), e2 = (*m)(x);
  EXPECT_TRUE(same_values(e1, e2)) << "two eval forwards differ";

  m->set_training(true);
  const std::uint64_t seed = dgen->seed(), offset = dgen->offset();
  const Tensor t1 = (*m)(x);
  EXPECT_GT(dgen->offset(), offset) << "train-mode dropout drew no random numbers";
  const Tensor t2 = (*m)(x);
  EXPECT_FALSE(same_values(t1, t2)) << "two train forwards gave the same output: dropout masks did not change";
  EXPECT_FALSE(same_values(t1, e1)) << "train forward equals eval forward: dropout inactive";
  EXPECT_EQ(t1.shape(), (Shape{2, 10}));
  EXPECT_TRUE(all_finite(t1));

  dgen->set_state(seed, offset);
  const Tensor t3 = (*m)(x);
  EXPECT_TRUE(same_values(t1, t3)) << "same dropout generator state, different output";

  // A second model with the same weights and a generator in the same state drops the same units.
  Generator gen2(25);
  auto dgen2 = dropout_gen(26);
  auto m2 = models::alexnet(3, 10, gen2, dgen2);
  m2->set_training(true);
  EXPECT_TRUE(same_values(t1, (*m2)(x))) << "same seeds, another model instance";

  // Back to eval: dropout off again, the generator untouched.
  m->set_training(false);
  const std::uint64_t before = dgen->offset();
  EXPECT_TRUE(same_values((*m)(x), e1));
  EXPECT_EQ(dgen->offset(), before) << "eval forward consumed dropout random numbers";
}

// ---- forward + backward: device vs CPU ----------------------------------------------------------
//
// Two comparisons of a whole AlexNet (eval mode: no dropout, graph recorded) on the device under
// test against the CPU, with the same weights and batch:
//  1. module by module ("teacher forced"): every module of the model gets the CPU's input and,
//     backwards, the CPU's output gradient, so each result differs from the CPU's by the rounding
//     of that one operation. Budgets per element: reduction_rtol(K) of the op's reduction length K
//     times the op's term magnitude (the same op on |input|, |weights|, |output gradient|: the sum
//     of the absolute values of the terms), twice (both devices round). ReLU, flatten and the
//     max-pool's selection are exact on identical inputs; the max-pool's backward sums the
//     gradients of overlapping windows (in any order) and may send a window of equal values
//     (zeros after a ReLU) anywhere among them, so it is compared at nonzero inputs only.
//  2. free running: the device computes everything itself. The logits carry the rounding of every
//     layer: budget sum_l reduction_rtol(K_l) times the last layer's term magnitude, twice. The
//     gradients are compared normwise and loosely (5%): a pre-activation within rounding of zero
//     may take the other side of a ReLU on the device, which legitimately moves one position's
//     contribution to the weight gradients by far more than rounding; check 1 is the precise one.

// Absolute values of a CPU tensor.
Tensor abs_of(const Tensor& t) {
  auto v = t.to_vector<float>();
  for (float& x : v) x = std::fabs(x);
  return Tensor::from_vector(v, t.shape());
}

// The model's leaf modules in execution order (Sequentials flattened).
void leaf_modules(Module& m, std::vector<Module*>& out) {
  if (auto* s = dynamic_cast<kiln::nn::Sequential*>(&m)) {
    for (std::size_t i = 0; i < s->size(); ++i) leaf_modules((*s)[i], out);
  } else {
    out.push_back(&m);
  }
}

// A module's weight and bias (undefined for parameterless modules).
std::pair<Tensor, Tensor> weight_bias(Module& m) {
  if (auto* c = dynamic_cast<kiln::nn::Conv2d*>(&m)) return {c->weight, c->bias};
  if (auto* l = dynamic_cast<kiln::nn::Linear*>(&m)) return {l->weight, l->bias};
  return {};
}

// One module's part of a layer-by-layer forward and backward.
struct Step {
  Tensor in, out, grad_out, grad_in, grad_w, grad_b;  // CPU copies
};

// Runs `m` on `in` (a fresh leaf on device d); with `grad_out` also backwards. Parameter gradients
// must be clear beforehand.
Step run_module(Module& m, const Tensor& in_cpu, const Tensor& grad_out_cpu, Device d) {
  Step s;
  s.in = in_cpu;
  Tensor in = kt::fresh_on(in_cpu, d);
  in.set_requires_grad(true);
  const Tensor out = m(in);
  s.out = out.detach().to(Device::cpu());
  if (!grad_out_cpu.defined()) return s;
  s.grad_out = grad_out_cpu;
  if (out.shares_storage(in) && out.is_leaf()) {  // identity (dropout in eval mode)
    s.grad_in = grad_out_cpu;
    return s;
  }
  out.backward(kt::fresh_on(grad_out_cpu, d));
  s.grad_in = in.grad().defined() ? in.grad().to(Device::cpu()) : Tensor();
  auto [w, b] = weight_bias(m);
  if (w.defined()) {
    s.grad_w = w.grad().defined() ? w.grad().to(Device::cpu()) : Tensor();
    s.grad_b = b.grad().defined() ? b.grad().to(Device::cpu()) : Tensor();
  }
  return s;
}

// d loss / d logits of the mean cross entropy, on the CPU.
Tensor logits_grad(const Tensor& logits_cpu, const Tensor& labels_cpu) {
  Tensor z = logits_cpu.detach().clone();
  z.set_requires_grad(true);
  kiln::cross_entropy(z, labels_cpu).backward();
  return z.grad().clone();
}

// The CPU trace: forward module by module, then backward module by module.
std::vector<Step> cpu_trace(const std::vector<Module*>& mods, const Tensor& x, const Tensor& labels) {
  std::vector<Step> steps;
  Tensor a = x;
  for (Module* m : mods) {
    steps.push_back(run_module(*m, a, Tensor(), Device::cpu()));
    a = steps.back().out;
  }
  Tensor g = logits_grad(a, labels);
  for (std::size_t i = mods.size(); i-- > 0;) {
    for (auto& [name, p] : mods[i]->named_parameters()) p.zero_grad();
    steps[i] = run_module(*mods[i], steps[i].in, g, Device::cpu());
    g = steps[i].grad_in;
  }
  return steps;
}

// Term magnitudes of one module: the same op on |input| (and |weight|, |bias|), and its backward
// seeded with |output gradient|.
struct Scales {
  Tensor out, grad_in, grad_w, grad_b;
  double rtol_out = 0, rtol_in = 0, rtol_w = 0;  // reduction budgets of the forward, dgrad and wgrad
  bool exact = false;                            // ReLU, max-pool, flatten, identity
};

Scales module_scales(Module& m, const Step& s) {
  Scales sc;
  Tensor a = abs_of(s.in);
  a.set_requires_grad(true);
  Tensor w, b, y;
  const std::string kind = m.kind();
  if (auto* c = dynamic_cast<kiln::nn::Conv2d*>(&m)) {
    w = abs_of(c->weight.detach().to(Device::cpu())).set_requires_grad(true);
    b = abs_of(c->bias.detach().to(Device::cpu())).set_requires_grad(true);
    y = kiln::conv2d(a, w, b, c->params);
    const std::int64_t g = c->params.groups, k = c->weight.size(2) * c->weight.size(3);
    // As in test_conv.cpp: both gradients get the budget of the longer of their reductions.
    sc.rtol_out = kt::reduction_rtol(c->weight.size(1) * k + 1);
    sc.rtol_in = sc.rtol_w =
        kt::reduction_rtol(std::max(c->weight.size(0) / g * k, s.out.size(0) * s.out.size(2) * s.out.size(3)));
  } else if (auto* l = dynamic_cast<kiln::nn::Linear*>(&m)) {
    w = abs_of(l->weight.detach().to(Device::cpu())).set_requires_grad(true);
    b = abs_of(l->bias.detach().to(Device::cpu())).set_requires_grad(true);
    y = kiln::linear(a, w, b);
    sc.rtol_out = kt::reduction_rtol(l->weight.size(1) + 1);
    sc.rtol_in = sc.rtol_w = kt::reduction_rtol(std::max(l->weight.size(0), s.out.size(0)));
  } else if (kind == "AdaptiveAvgPool2d") {
    y = m(a);
    // Each output averages at most ceil(H / h) x ceil(W / w) inputs; each input feeds at most
    // as many outputs.
    const std::int64_t wh = (s.in.size(2) + s.out.size(2) - 1) / s.out.size(2) + 1;
    const std::int64_t ww = (s.in.size(3) + s.out.size(3) - 1) / s.out.size(3) + 1;
    const std::int64_t fh = (s.out.size(2) + s.in.size(2) - 1) / s.in.size(2) + 1;
    const std::int64_t fw = (s.out.size(3) + s.in.size(3) - 1) / s.in.size(3) + 1;
    sc.rtol_out = kt::reduction_rtol(wh * ww) + kt::kElementwiseRtol;
    sc.rtol_in = kt::reduction_rtol(wh * ww * fh * fw) + kt::kElementwiseRtol;
  } else if (kind == "MaxPool2d") {
    // The forward selects (exact); backward sums the gradients of up to ceil(k / stride)^2
    // overlapping windows that chose the same input, in any order.
    y = m(a);
    sc.rtol_out = 0;
    sc.rtol_in = kt::reduction_rtol(4);
  } else {
    sc.exact = true;  // ReLU, Flatten, Dropout (eval): no arithmetic on the values
    return sc;
  }
  sc.out = y.detach().clone();
  kiln::sum(kiln::mul(y, abs_of(s.grad_out))).backward();
  sc.grad_in = a.grad();
  if (w.defined()) sc.grad_w = w.grad(), sc.grad_b = b.grad();
  return sc;
}

// Zeroes `t` where `mask` is zero (max-pool input gradients: a window of equal values, zeros after
// a ReLU, may send its gradient to any of them; those positions get no gradient through the ReLU).
Tensor where_nonzero(const Tensor& t, const Tensor& mask) {
  auto v = t.to_vector<float>();
  const auto m = mask.to_vector<float>();
  for (std::size_t i = 0; i < v.size(); ++i)
    if (m[i] == 0.0f) v[i] = 0.0f;
  return Tensor::from_vector(v, t.shape());
}

// ||a - b|| (b undefined: ||a||) of float tensors, without copies on the CPU.
double frobenius(const Tensor& a, const Tensor& b = Tensor()) {
  const Tensor ha = a.to(Device::cpu()), hb = b.defined() ? b.to(Device::cpu()) : Tensor();
  const float* pa = ha.data<float>();
  const float* pb = hb.defined() ? hb.data<float>() : nullptr;
  double s = 0;
  for (std::int64_t i = 0; i < ha.numel(); ++i) {
    const double d = static_cast<double>(pa[i]) - (pb ? pb[i] : 0.0);
    s += d * d;
  }
  return std::sqrt(s);
}

struct RunResult {
  Tensor logits;
  float loss = 0;
  std::vector<std::pair<std::string, Tensor>> grads;  // host copies
};

// Free-running forward and backward of the mean cross entropy, the whole batch at once.
RunResult forward_backward(Module& m, const Tensor& x, const Tensor& labels, Device d) {
  RunResult r;
  const Tensor logits = m(kt::fresh_on(x, d));
  const Tensor loss = kiln::cross_entropy(logits, kt::fresh_on(labels, d));
  loss.backward();
  r.logits = logits.detach().to(Device::cpu());
  r.loss = loss.item();
  for (auto& [name, p] : m.named_parameters())
    r.grads.emplace_back(name, p.grad().defined() ? p.grad().to(Device::cpu()) : Tensor());
  return r;
}

// The same, one sample at a time: each backward of (loss_i / N) accumulates into the parameters'
// gradients, so the sum is the batch's gradient, reduced in another order.
RunResult forward_backward_per_sample(Module& m, const Tensor& x, const Tensor& labels, Device d) {
  const std::int64_t n = x.size(0);
  RunResult r;
  std::vector<float> logits;
  double loss = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const Tensor li = m(kt::fresh_on(x.narrow0(i, 1), d));
    const Tensor ci = kiln::cross_entropy(li, kt::fresh_on(labels.narrow0(i, 1), d));
    kiln::scale(ci, 1.0f / static_cast<float>(n)).backward();
    for (float v : li.detach().to_vector<float>()) logits.push_back(v);
    loss += ci.item();
  }
  r.logits = Tensor::from_vector(logits, {n, static_cast<std::int64_t>(logits.size()) / n});
  r.loss = static_cast<float>(loss / static_cast<double>(n));
  for (auto& [name, p] : m.named_parameters())
    r.grads.emplace_back(name, p.grad().defined() ? p.grad().to(Device::cpu()) : Tensor());
  return r;
}

class AlexNetDevice : public kt::DeviceTest {};

TEST_P(AlexNetDevice, ForwardBackwardMatchesCpu) {
  constexpr std::int64_t N = 2, C = 3, S = 64, K = 10;
  Generator gen(31);
  auto ref = models::alexnet(C, K, gen, dropout_gen(32));  // CPU reference
  Generator other(99);
  auto m = models::alexnet(C, K, other, dropout_gen(32), dev());
  // Differently initialised until the weights are copied over.
  EXPECT_FALSE(same_values(m->named_parameters()[0].second, ref->named_parameters()[0].second));
  m->load_state(ref->named_parameters());
  for (const auto& [name, p] : m->named_parameters()) {
    EXPECT_EQ(p.device(), dev()) << name;
    EXPECT_TRUE(p.requires_grad()) << name;
  }
  ref->set_training(false);
  m->set_training(false);
  const Tensor x = kt::randn_cpu({N, C, S, S}, 33);
  const Tensor labels = kt::labels_cpu(N, K, DType::Int32, 34);

  // The CPU reference, whole model and module by module; the two must agree exactly.
  const RunResult cpu = forward_backward(*ref, x, labels, Device::cpu());
  for (auto& [name, p] : ref->named_parameters()) p.zero_grad();
  std::vector<Module*> ref_mods, mods;
  leaf_modules(*ref, ref_mods);
  leaf_modules(*m, mods);
  ASSERT_EQ(ref_mods.size(), 22u);  // 13 features + avgpool + flatten + 7 classifier modules
  ASSERT_EQ(mods.size(), ref_mods.size());
  const std::vector<Step> trace = cpu_trace(ref_mods, x, labels);
  EXPECT_TRUE(same_values(trace.back().out, cpu.logits)) << "module-by-module forward differs from the model's";
  {
    std::size_t k = 0;
    for (std::size_t i = 0; i < ref_mods.size(); ++i)
      if (trace[i].grad_w.defined()) {
        ASSERT_LT(k + 1, cpu.grads.size());
        EXPECT_TRUE(same_values(trace[i].grad_w, cpu.grads[k].second)) << cpu.grads[k].first;
        EXPECT_TRUE(same_values(trace[i].grad_b, cpu.grads[k + 1].second)) << cpu.grads[k + 1].first;
        k += 2;
      }
    EXPECT_EQ(k, 16u);
  }

  // 1. Module by module on the device, from the CPU's inputs and output gradients.
  double rtol_chain = 0;  // the forward budgets of all layers, for check 2
  Tensor last_scale;
  for (std::size_t i = 0; i < mods.size(); ++i) {
    const std::string what = ref_mods[i]->path() + " " + ref_mods[i]->kind() + " on " + dev().str();
    EXPECT_EQ(mods[i]->path(), ref_mods[i]->path());
    for (auto& [name, p] : mods[i]->named_parameters()) p.zero_grad();
    const Step got = run_module(*mods[i], trace[i].in, trace[i].grad_out, dev());
    const Step& want = trace[i];
    const Scales sc = module_scales(*ref_mods[i], want);
    ASSERT_TRUE(got.grad_in.defined()) << what << ": no input gradient";
    if (sc.exact) {
      kt::expect_close(got.out, want.out, 0, 0, what + ": forward (exact)");
      kt::expect_close(got.grad_in, want.grad_in, 0, 0, what + ": input gradient (exact)");
      continue;
    }
    if (ref_mods[i]->kind() == "MaxPool2d") {
      kt::expect_close(got.out, want.out, 0, 0, what + ": forward (exact)");
      kt::expect_close(where_nonzero(got.grad_in, want.in), where_nonzero(want.grad_in, want.in),
                       kt::to_doubles(sc.grad_in), 2 * sc.rtol_in, 0, what + ": input gradient at nonzero inputs");
      continue;
    }
    rtol_chain += sc.rtol_out;
    if (want.grad_w.defined()) last_scale = sc.out;
    kt::expect_close(got.out, want.out, kt::to_doubles(sc.out), 2 * sc.rtol_out, 0, what + ": forward");
    kt::expect_close(got.grad_in, want.grad_in, kt::to_doubles(sc.grad_in), 2 * sc.rtol_in, 0,
                     what + ": input gradient");
    if (want.grad_w.defined()) {
      ASSERT_TRUE(got.grad_w.defined() && got.grad_b.defined()) << what << ": no parameter gradients";
      EXPECT_GT(frobenius(want.grad_w), 0.0) << what << ": weight gradient identically zero";
      kt::expect_close(got.grad_w, want.grad_w, kt::to_doubles(sc.grad_w), 2 * sc.rtol_w, 0,
                       what + ": weight gradient");
      kt::expect_close(got.grad_b, want.grad_b, kt::to_doubles(sc.grad_b), 2 * sc.rtol_w, 0,
                       what + ": bias gradient");
    }
  }

  // 2. Free running. On the CPU, where the same batch would reproduce the reference bit for bit,
  // the samples go one at a time with the gradients accumulated: another summation order, and a
  // check that backward accumulates.
  for (auto& [name, p] : m->named_parameters()) p.zero_grad();
  const RunResult got =
      on_gpu() ? forward_backward(*m, x, labels, dev()) : forward_backward_per_sample(*m, x, labels, dev());
  ASSERT_TRUE(last_scale.defined());
  EXPECT_TRUE(std::isfinite(cpu.loss) && std::isfinite(got.loss));
  EXPECT_NEAR(got.loss, cpu.loss, 2 * (rtol_chain + kt::lse_rtol(K)) * (std::fabs(cpu.loss) + 1)) << "loss";
  kt::expect_close(got.logits, cpu.logits, kt::to_doubles(last_scale), 2 * rtol_chain, 0,
                   "free-running logits on " + dev().str() + " vs cpu");
  ASSERT_EQ(got.grads.size(), 16u);
  for (std::size_t i = 0; i < got.grads.size(); ++i) {
    const std::string& name = got.grads[i].first;
    ASSERT_TRUE(got.grads[i].second.defined()) << name << ": no gradient on " << dev().str();
    ASSERT_EQ(got.grads[i].second.shape(), cpu.grads[i].second.shape()) << name;
    const double ref_norm = frobenius(cpu.grads[i].second);
    const double diff = frobenius(got.grads[i].second, cpu.grads[i].second);
    EXPECT_GT(ref_norm, 0.0) << name;
    EXPECT_LE(diff, 0.05 * ref_norm) << "free-running gradient of " << name << " on " << dev().str()
                                     << ": relative error " << diff / ref_norm;
  }
}

KILN_INSTANTIATE_DEVICES(AlexNetDevice);

// The CPU model's gradient against the change of its own loss: L(p + h g) - L(p - h g) ~ 2 h |g|^2
// (central differences along the gradient; its curvature error is O(h^3)).
TEST(AlexNet, GradientMatchesDirectionalDifference) {
  for (const std::string arch : {"alexnet", "alexnet2012"}) {
    SCOPED_TRACE(arch);
    Generator gen(41);
    auto m = arch == "alexnet" ? models::alexnet(3, 10, gen, dropout_gen(42))
                               : models::alexnet2012(3, 10, 2, gen, dropout_gen(42));
    m->set_training(false);
    const Tensor x = kt::randn_cpu({2, 3, 64, 64}, 43);
    const Tensor labels = kt::labels_cpu(2, 10, DType::Int32, 44);
    const Tensor loss = kiln::cross_entropy((*m)(x), labels);
    loss.backward();
    const double l0 = loss.item();
    auto params = m->named_parameters();
    std::vector<Tensor> g;
    double g2 = 0;
    for (auto& [name, p] : params) {
      ASSERT_TRUE(p.grad().defined()) << name;
      g.push_back(p.grad().clone());
      for (float v : g.back().to_vector<float>()) g2 += static_cast<double>(v) * v;
    }
    ASSERT_GT(g2, 0.0);
    // Step so that the loss moves by about 1% either way: far above float32 noise (~1e-7 |L|).
    const double h = 0.01 * l0 / g2;
    auto loss_at = [&](double step) {
      kiln::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) kiln::axpy_(static_cast<float>(step), g[i], params[i].second);
      const double l = kiln::cross_entropy((*m)(x), labels).item();
      for (std::size_t i = 0; i < params.size(); ++i) kiln::axpy_(static_cast<float>(-step), g[i], params[i].second);
      return l;
    };
    const double lp = loss_at(h), lm = loss_at(-h);
    const double numeric = (lp - lm) / (2 * h);
    EXPECT_GT(lp, l0) << "a step along the gradient must increase the loss";
    EXPECT_LT(lm, l0) << "a step against the gradient must decrease the loss";
    EXPECT_NEAR(numeric / g2, 1.0, 0.03) << "directional derivative " << numeric << " vs |g|^2 = " << g2
                                          << " (loss " << l0 << ", +h " << lp << ", -h " << lm << ")";
  }
}

// ---- input pipeline -------------------------------------------------------------------------------

TEST(AlexNet, PrepareInputResizesSmallImages) {
  kiln::train::ModelSpec spec;
  spec.arch = "alexnet";
  spec.input = {1, 224, 224};
  spec.classes = 10;
  spec.mean = {0.1307f};
  spec.std = {0.3081f};
  constexpr std::int64_t N = 2, H = 28, W = 28, S = 224;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(N * H * W));
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>((i * 37 + (i / 28) * 11) % 256);
  const Tensor images = Tensor::from_vector(px, {N, 1, H, W});
  const Tensor x = kiln::train::prepare_input(spec, images);
  ASSERT_EQ(x.shape(), (Shape{N, 1, S, S}));
  ASSERT_EQ(x.dtype(), DType::Float32);

  // The normalised input, by hand. Its float32 rounding is proportional to the terms
  // (x / 255 + mean) / std, not to the (possibly cancelled) result.
  DVec norm(px.size()), norm_scale(px.size());
  for (std::size_t i = 0; i < px.size(); ++i) {
    norm[i] = (px[i] / 255.0 - 0.1307) / 0.3081;
    norm_scale[i] = (px[i] / 255.0 + 0.1307) / 0.3081;
  }
  std::vector<float> normf(norm.begin(), norm.end());

  // Bilinear interpolation by hand (align_corners = false, edges clamped); the scale of an output
  // is the largest scale of its four source pixels.
  DVec ref(static_cast<std::size_t>(N * S * S)), scale(ref.size());
  const double r = static_cast<double>(H) / S;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t Y = 0; Y < S; ++Y)
      for (std::int64_t X = 0; X < S; ++X) {
        const double sy = std::max(0.0, (Y + 0.5) * r - 0.5), sx = std::max(0.0, (X + 0.5) * r - 0.5);
        const std::int64_t y0 = static_cast<std::int64_t>(sy), x0 = static_cast<std::int64_t>(sx);
        const std::int64_t y1 = std::min(y0 + 1, H - 1), x1 = std::min(x0 + 1, W - 1);
        const double ay = sy - y0, ax = sx - x0;
        auto idx = [&](std::int64_t yy, std::int64_t xx) { return static_cast<std::size_t>((n * H + yy) * W + xx); };
        auto at = [&](std::int64_t yy, std::int64_t xx) { return norm[idx(yy, xx)]; };
        const std::size_t o = static_cast<std::size_t>((n * S + Y) * S + X);
        ref[o] = (1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x1)) + ay * ((1 - ax) * at(y1, x0) + ax * at(y1, x1));
        scale[o] = std::max({norm_scale[idx(y0, x0)], norm_scale[idx(y0, x1)], norm_scale[idx(y1, x0)],
                             norm_scale[idx(y1, x1)]});
      }
  const kt::Ref rr{{N, 1, S, S}, ref, scale};
  kt::expect_close(x, rr, 16 * kt::kEps, 0, "prepare_input vs bilinear by hand");
  // kiln's own resize of the (independently) normalised batch agrees too.
  const Tensor expect = kiln::resize_bilinear(Tensor::from_vector(normf, {N, 1, H, W}), S, S);
  kt::expect_close(x, expect, scale, 16 * kt::kEps, 0, "prepare_input vs resize_bilinear of the normalised batch");

  // At the model's own size nothing is resized.
  spec.input = {1, 28, 28};
  const Tensor same = kiln::train::prepare_input(spec, images);
  ASSERT_EQ(same.shape(), (Shape{N, 1, H, W}));
  const kt::Ref plain{{N, 1, H, W}, norm, norm_scale};
  kt::expect_close(same, plain, 4 * kt::kEps, 0, "prepare_input at the model's size: normalised only");

  // A batch with the wrong channel count is refused.
  spec.input = {3, 224, 224};
  EXPECT_THROW(kiln::train::prepare_input(spec, images), kiln::Error);
}

TEST(AlexNet, BuildModelRefusesSmallInputs) {
  for (const std::string arch : {"alexnet", "alexnet2012"}) {
    kiln::train::ModelSpec spec;
    spec.arch = arch;
    spec.input = {1, 28, 28};
    spec.classes = 10;
    Generator gen(0);
    try {
      kiln::train::build_model(spec, gen, Device::cpu());
      ADD_FAILURE() << arch << " built for 28x28 inputs";
    } catch (const kiln::Error& e) {
      EXPECT_TRUE(contains(e.what(), "--resize")) << arch << ": " << e.what();
      EXPECT_TRUE(contains(e.what(), "28x28")) << arch << ": " << e.what();
    }
    spec.input = {1, 62, 62};
    EXPECT_THROW(kiln::train::build_model(spec, gen, Device::cpu()), kiln::Error) << arch << " at 62x62";
  }
  // 63x63 is the smallest size that works; the model then runs on it.
  kiln::train::ModelSpec spec;
  spec.arch = "alexnet";
  spec.input = {1, 63, 63};
  spec.classes = 4;
  Generator gen(0);
  auto m = kiln::train::build_model(spec, gen, Device::cpu());
  m->set_training(false);
  kiln::NoGradGuard no_grad;
  EXPECT_EQ((*m)(kt::randn_cpu({1, 1, 63, 63}, 1)).shape(), (Shape{1, 4}));
  EXPECT_EQ(m->named_parameters()[0].second.shape(), (Shape{64, 1, 11, 11}));
}

// ---- weights-only files ---------------------------------------------------------------------------

TEST(AlexNet, LoadModelInfersArchitectureFromWeights) {
  struct Case {
    std::string arch;
    std::int64_t in, classes, groups;
  };
  TempDir d("kiln_alexnet");
  for (const Case& c : {Case{"alexnet", 3, 7, 1}, Case{"alexnet2012", 1, 5, 1}, Case{"alexnet2012", 3, 6, 2}}) {
    const std::string what = c.arch + " in " + std::to_string(c.in) + " classes " + std::to_string(c.classes) +
                              " groups " + std::to_string(c.groups);
    SCOPED_TRACE(what);
    Generator gen(50 + static_cast<std::uint64_t>(c.classes));
    auto m = c.arch == "alexnet" ? models::alexnet(c.in, c.classes, gen, dropout_gen(1))
                                 : models::alexnet2012(c.in, c.classes, c.groups, gen, dropout_gen(1));
    const std::string path = d.file("weights.safetensors");
    const auto saved = m->named_parameters();
    kiln::io::save_safetensors(path, saved);  // no metadata: as PyTorch's save_file(state_dict) writes it
    ASSERT_TRUE(kiln::io::load_safetensors(path).metadata.empty());

    auto loaded = kiln::train::load_model(path, Device::cpu());
    EXPECT_FALSE(loaded.from_kiln);
    EXPECT_EQ(loaded.spec.arch, c.arch);
    EXPECT_EQ(loaded.spec.classes, c.classes);
    if (c.arch == "alexnet2012") {
      EXPECT_EQ(loaded.spec.groups, c.groups);
    }
    EXPECT_EQ(loaded.spec.input, (Shape{c.in, 224, 224}));
    EXPECT_EQ(loaded.spec.class_names.size(), static_cast<std::size_t>(c.classes));
    EXPECT_EQ(loaded.spec.mean.size(), static_cast<std::size_t>(c.in));
    ASSERT_NE(loaded.model, nullptr);
    EXPECT_FALSE(loaded.model->training()) << "a loaded model should be in eval mode";
    const auto params = loaded.model->named_parameters();
    ASSERT_EQ(params.size(), saved.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].first, saved[i].first);
      ASSERT_EQ(params[i].second.shape(), saved[i].second.shape()) << saved[i].first;
      EXPECT_EQ(std::memcmp(params[i].second.raw_data(), saved[i].second.raw_data(), saved[i].second.nbytes()), 0)
          << saved[i].first << " not loaded bit for bit";
    }
    // The loaded model computes what the original does.
    kiln::NoGradGuard no_grad;
    m->set_training(false);
    const Tensor x = kt::randn_cpu({1, c.in, 64, 64}, 60);
    EXPECT_TRUE(same_values((*loaded.model)(x), (*m)(x)));
  }
}

// ---- training on an image folder ------------------------------------------------------------------

// DIR/<class>/<i>.png: `per_class` w x h RGB images per class, each a solid class colour (red,
// green, blue, ...) with a little per-pixel noise.
void write_colour_folder(const std::string& dir, int classes, int per_class, int w, int h) {
  const int colours[][3] = {{220, 40, 40}, {40, 200, 60}, {50, 60, 220}, {200, 200, 40}};
  for (int c = 0; c < classes; ++c) {
    const std::string cdir = dir + "/class" + std::to_string(c);
    std::filesystem::create_directories(cdir);
    for (int i = 0; i < per_class; ++i) {
      std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h * 3));
      for (std::size_t k = 0; k < px.size(); ++k) {
        const std::uint32_t r = kiln::philox::philox4x32(k, static_cast<std::uint64_t>(c * 1000 + i)).x % 41;
        px[k] = static_cast<std::uint8_t>(std::clamp(colours[c][k % 3] + static_cast<int>(r) - 20, 0, 255));
      }
      const std::string path = cdir + "/" + std::to_string(i) + ".png";
      ASSERT_NE(stbi_write_png(path.c_str(), w, h, 3, px.data(), w * 3), 0) << path;
    }
  }
}

TEST(AlexNet, TrainsOnAnImageFolder) {
  TempDir d("kiln_alexnet_train");
  const std::string root = d.file("data");
  write_colour_folder(root, 3, 12, 48, 48);

  kiln::data::ImageFolderOptions train_opt, val_opt;
  train_opt.channels = val_opt.channels = 3;
  train_opt.size = val_opt.size = 64;
  train_opt.augment = true;
  val_opt.augment = false;
  const kiln::data::ImageFolder all(root, train_opt);
  ASSERT_EQ(all.size(), 36);
  auto [train, val] = kiln::data::ImageFolder::split(all, 0.1, 3, train_opt, val_opt);
  ASSERT_EQ(val->size(), 4);
  ASSERT_EQ(train->size(), 32);

  kiln::train::Config c;
  c.model.arch = "alexnet";
  c.model.mean = {0.5f, 0.5f, 0.5f};
  c.model.std = {0.25f, 0.25f, 0.25f};
  c.dataset = "imagefolder";
  c.epochs = 4;
  c.batch_size = 8;
  c.optimizer = "adam";
  c.lr = 1e-4f;
  c.weight_decay = 0;
  c.schedule = "constant";
  c.seed = 5;
  c.workers = 2;
  c.device = Device::cpu();
  c.out_dir = "";
  c.progress = false;
  const auto t0 = std::chrono::steady_clock::now();
  const auto history = kiln::train::fit(c, train, val);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(history.size(), 4u);
  for (const auto& m : history) {
    EXPECT_TRUE(std::isfinite(m.train_loss) && std::isfinite(m.test_loss)) << "epoch " << m.epoch;
    std::printf("[ alexnet  ] epoch %d train loss %.4f acc %.3f test loss %.4f acc %.3f (%.2f s)\n", m.epoch,
                m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.epoch_s);
  }
  EXPECT_LT(history.back().train_loss, history.front().train_loss) << "training loss did not decrease";
  EXPECT_LT(history.back().train_loss, 0.8 * history.front().train_loss);
  EXPECT_GE(history.back().test_acc, 0.75) << "held-out accuracy on a trivially separable task";
  std::printf("[ alexnet  ] %d epochs in %.1f s\n", c.epochs, secs);
}

}  // namespace

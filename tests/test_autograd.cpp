// Autograd: gradient summation over several uses, accumulation across backward calls, zero_grad,
// NoGradGuard, the errors backward() promises, release of saved tensors, and a 2-layer MLP whose
// parameter gradients match double-precision central differences (and the CPU, on the gpu instance).
#include <cmath>
#include <memory>
#include <string>

#include "core/tensor_impl.h"  // kiln::Storage, to watch intermediates being freed
#include "test_util.h"

using namespace kt;
using kiln::Shape;

class AutogradTest : public DeviceTest {
 protected:
  Tensor leaf(const Shape& s, std::uint64_t seed) {
    Tensor t = randn_cpu(s, seed).to(dev());
    t.set_requires_grad(true);
    return t;
  }
};

TEST_P(AutogradTest, TensorUsedTwiceGetsSummedGradients) {
  Tensor x = leaf({37, 53}, 1);
  Tensor y = x * x + x;  // dy/dx = 2x + 1
  kiln::sum(y).backward();
  ASSERT_TRUE(x.grad().defined());
  Ref ref{x.shape(), to_doubles(x), {}};
  for (double& v : ref.v) v = 2 * v + 1;
  // x*1 + 1*x + 1: three roundings of terms bounded by |2x| + 1
  ref.scale = ref.v;
  for (std::size_t i = 0; i < ref.v.size(); ++i) ref.scale[i] = std::fabs(ref.v[i] - 1) + 1;
  expect_close(x.grad(), ref, kElementwiseRtol, 0, "d sum(x*x + x) / dx");
}

TEST_P(AutogradTest, AccumulatesAcrossBackwardCallsAndZeroGrad) {
  Tensor x = leaf({5, 7}, 2), w = leaf({5, 7}, 3);
  auto loss = [&] { return kiln::sum(kiln::mul(x, w)); };  // d/dx = w, d/dw = x
  loss().backward();
  Tensor g1 = x.grad().clone();
  expect_close(g1, w.detach(), 0, 0, "first backward");
  loss().backward();
  DVec twice = to_doubles(w);
  for (double& v : twice) v *= 2;
  expect_close(x.grad(), Ref{x.shape(), twice, {}}, 0, 0, "two backward calls accumulate: 2w");
  expect_close(w.grad(), Ref{w.shape(), [&] { DVec v = to_doubles(x); for (double& e : v) e *= 2; return v; }(), {}},
               0, 0, "two backward calls accumulate: 2x");
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined()) << "zero_grad drops the gradient";
  EXPECT_TRUE(w.grad().defined()) << "zero_grad of x must not touch w";
  loss().backward();
  expect_close(x.grad(), w.detach(), 0, 0, "after zero_grad, a fresh gradient");
}

TEST_P(AutogradTest, NoGradGuard) {
  Tensor x = leaf({4, 3}, 4);
  EXPECT_TRUE(kiln::grad_enabled());
  {
    kiln::NoGradGuard guard;
    EXPECT_FALSE(kiln::grad_enabled());
    Tensor y = kiln::relu(x * x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.is_leaf());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      kiln::NoGradGuard nested;
      EXPECT_FALSE(kiln::grad_enabled());
    }
    EXPECT_FALSE(kiln::grad_enabled()) << "an inner guard restores the outer state";
    EXPECT_THROW(kiln::sum(y).backward(), kiln::Error);
  }
  EXPECT_TRUE(kiln::grad_enabled());
  Tensor z = x * x;
  EXPECT_TRUE(z.requires_grad());
  EXPECT_NE(z.grad_fn(), nullptr);
}

TEST_P(AutogradTest, BackwardErrors) {
  Tensor x = leaf({3, 4}, 5);
  Tensor y = x * 2.0f;
  EXPECT_THROW(y.backward(), kiln::Error) << "non-scalar output without a gradient";
  // with an explicit seed gradient it works
  y.backward(Tensor::ones({3, 4}, dev()));
  expect_close(x.grad(), Ref{{3, 4}, DVec(12, 2.0), {}}, 0, 0, "d(2x)/dx seeded with ones");
  // a tensor that does not require grad
  Tensor c = randn_cpu({3}, 6).to(dev());
  EXPECT_THROW(kiln::sum(c).backward(), kiln::Error);
  EXPECT_THROW(Tensor::scalar(1.0f, dev()).backward(), kiln::Error);
}

TEST_P(AutogradTest, SecondBackwardThroughFreedGraphThrows) {
  // The graph releases saved tensors as it runs, so the same graph cannot be run twice.
  Tensor x = leaf({3, 4}, 7);
  Tensor loss = kiln::sum(kiln::relu(x * x));
  loss.backward();
  try {
    loss.backward();
    ADD_FAILURE() << "a second backward() through a released graph did not throw";
  } catch (const kiln::Error& e) {
    std::string msg = e.what();
    EXPECT_TRUE(msg.find("free") != std::string::npos || msg.find("releas") != std::string::npos)
        << "message should say the graph was freed/released: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-kiln exception: " << e.what();
  }
}

TEST_P(AutogradTest, SavedActivationsAreReleasedByBackward) {
  Tensor x = leaf({64, 32}, 8), w = leaf({64, 32}, 9);
  Tensor r = randn_cpu({64, 32}, 10).to(dev());
  std::weak_ptr<kiln::Storage> a_storage, b_storage;
  Tensor loss;
  {
    Tensor a = kiln::mul(x, w);  // intermediates: only the graph may keep them alive
    Tensor b = kiln::relu(a);
    a_storage = a.impl()->storage;
    b_storage = b.impl()->storage;
    loss = kiln::sum(kiln::mul(b, r));
  }
  ASSERT_TRUE(!a_storage.expired() || !b_storage.expired()) << "relu's backward needs its input or output";
  loss.backward();
  EXPECT_TRUE(a_storage.expired()) << "relu's input still alive after backward";
  EXPECT_TRUE(b_storage.expired()) << "relu's output still alive after backward";
  EXPECT_TRUE(x.grad().defined());
}

TEST_P(AutogradTest, ViewsAndDetach) {
  Tensor x = leaf({4, 6}, 11);
  Tensor r = randn_cpu({24}, 12);
  kiln::sum(kiln::mul(x.reshape({-1}), r.to(dev()))).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().shape(), (Shape{4, 6}));
  expect_close(x.grad(), Ref{{4, 6}, to_doubles(r), {}}, 0, 0, "gradient through reshape");
  Tensor d = (x * 3.0f).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.grad_fn(), nullptr);
  Tensor dx = x.detach();
  EXPECT_TRUE(dx.shares_storage(x));
  EXPECT_FALSE(dx.requires_grad());
}

TEST_P(AutogradTest, GradientsOnlyWhereRequested) {
  Tensor x = leaf({3, 3}, 13), unused = leaf({3}, 14);
  Tensor w = randn_cpu({3, 3}, 15).to(dev());  // does not require grad
  kiln::sum(kiln::matmul(x, w)).backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(unused.grad().defined());
}

// ---- a 2-layer MLP against double-precision finite differences ------------------------------------

namespace {

constexpr std::int64_t kN = 6, kIn = 5, kHidden = 8, kOut = 4;

// inputs: x, w1, b1, w2, b2, labels (as doubles)
double ref_mlp_loss(const std::vector<DVec>& p, double* min_abs_preact = nullptr) {
  const DVec &x = p[0], &w1 = p[1], &b1 = p[2], &w2 = p[3], &b2 = p[4], &lab = p[5];
  double loss = 0, min_pre = 1e300;
  for (std::int64_t n = 0; n < kN; ++n) {
    DVec h(kHidden), logit(kOut);
    for (std::int64_t j = 0; j < kHidden; ++j) {
      double s = b1[j];
      for (std::int64_t i = 0; i < kIn; ++i) s += x[n * kIn + i] * w1[j * kIn + i];
      min_pre = std::min(min_pre, std::fabs(s));
      h[j] = s > 0 ? s : 0;
    }
    double m = -1e300;
    for (std::int64_t o = 0; o < kOut; ++o) {
      double s = b2[o];
      for (std::int64_t j = 0; j < kHidden; ++j) s += h[j] * w2[o * kHidden + j];
      logit[o] = s;
      m = std::max(m, s);
    }
    double se = 0;
    for (double v : logit) se += std::exp(v - m);
    loss += m + std::log(se) - logit[static_cast<std::size_t>(lab[n])];
  }
  if (min_abs_preact) *min_abs_preact = min_pre;
  return loss / kN;
}

}  // namespace

TEST_P(AutogradTest, MlpGradientsMatchFiniteDifferences) {
  std::vector<Tensor> cpu = {randn_cpu({kN, kIn}, 20),          randn_cpu({kHidden, kIn}, 21, 0.7f),
                             randn_cpu({kHidden}, 22, 0.3f),    randn_cpu({kOut, kHidden}, 23, 0.7f),
                             randn_cpu({kOut}, 24, 0.3f),       labels_cpu(kN, kOut, DType::Int64, 25)};
  std::vector<DVec> p;
  for (const Tensor& t : cpu) p.push_back(to_doubles(t));
  double min_pre = 0;
  const double ref_loss = ref_mlp_loss(p, &min_pre);
  // a finite-difference step must not cross a ReLU kink
  ASSERT_GT(min_pre, 100 * kFiniteDiffStep) << "pick another seed: a hidden pre-activation sits on the kink";

  auto run = [&](Device d, std::vector<Tensor>& params) {
    params.clear();
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      Tensor t = fresh_on(cpu[i], d);
      if (i >= 1 && i <= 4) t.set_requires_grad(true);
      params.push_back(t);
    }
    Tensor loss = mlp_loss(params[0], params[1], params[2], params[3], params[4], params[5]);
    loss.backward();
    return loss;
  };
  std::vector<Tensor> params;
  Tensor loss = run(dev(), params);
  EXPECT_EQ(loss.device(), dev());
  EXPECT_FALSE(params[0].grad().defined()) << "x does not require grad";

  // five chained ops over at most max(kIn, kHidden, kN) terms each
  const double tol = 5 * reduction_rtol(std::max({kIn, kHidden, kN}));
  EXPECT_NEAR(loss.item(), ref_loss, tol * (1 + std::fabs(ref_loss)));
  const LossFn f = [](const std::vector<DVec>& q) { return ref_mlp_loss(q); };
  const char* names[] = {"x", "w1", "b1", "w2", "b2"};
  for (std::size_t i = 1; i <= 4; ++i)
    check_numeric_grad(params[i].grad(), f, p, i, tol, tol, std::string("MLP d loss / d ") + names[i]);

  if (on_gpu()) {
    std::vector<Tensor> cparams;
    Tensor closs = run(Device::cpu(), cparams);
    EXPECT_NEAR(loss.item(), closs.item(), 2 * tol * (1 + std::fabs(ref_loss))) << "gpu vs cpu loss";
    for (std::size_t i = 1; i <= 4; ++i) {
      DVec s = to_doubles(cparams[i].grad());
      double gmax = 0;
      for (double& v : s) gmax = std::max(gmax, v = std::fabs(v));
      expect_close(params[i].grad(), cparams[i].grad(), s, 2 * tol, 2 * tol * gmax,
                   std::string("MLP gpu vs cpu gradient of ") + names[i]);
    }
  }
}

KILN_INSTANTIATE_DEVICES(AutogradTest);

// Ops, part 1: linear algebra, elementwise ops and reductions. Every case runs through
// kt::check_op: forward vs a double reference, backward vs a double vjp and central differences,
// pre-filled gradients, and on the gpu instance device-vs-CPU on the same inputs.
#include <cmath>

#include "test_util.h"

using namespace kt;
using kiln::Shape;
using kiln::shape_str;

namespace {

using Ins = std::vector<Tensor>;
using X = std::vector<DVec>;

std::int64_t prod(const Shape& s, std::size_t from, std::size_t to) {
  std::int64_t p = 1;
  for (std::size_t i = from; i < to; ++i) p *= s[i];
  return p;
}
DVec absv(const DVec& v) {
  DVec a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

// ---- double references ------------------------------------------------------------------------

// out[m,n] = sum_k a[m,k] b'[k,n] where b' = b (b [K,N]) or b^T (b [N,K], trans_b); scale = sum |terms|.
Ref ref_gemm(const DVec& a, const DVec& b, std::int64_t M, std::int64_t K, std::int64_t N, bool trans_b) {
  Ref r{{M, N}, DVec(M * N, 0.0), DVec(M * N, 0.0)};
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double s = 0, sa = 0;
      for (std::int64_t k = 0; k < K; ++k) {
        double t = a[m * K + k] * (trans_b ? b[n * K + k] : b[k * N + n]);
        s += t;
        sa += std::fabs(t);
      }
      r.v[m * N + n] = s;
      r.scale[m * N + n] = sa;
    }
  return r;
}
// a^T r for a [M,K], r [M,N] -> [K,N]
Ref ref_at_b(const DVec& a, const DVec& r, std::int64_t M, std::int64_t K, std::int64_t N) {
  Ref o{{K, N}, DVec(K * N, 0.0), DVec(K * N, 0.0)};
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t n = 0; n < N; ++n) {
        double t = a[m * K + k] * r[m * N + n];
        o.v[k * N + n] += t;
        o.scale[k * N + n] += std::fabs(t);
      }
  return o;
}
Ref transpose(const Ref& x) {  // 2-D
  std::int64_t R = x.shape[0], C = x.shape[1];
  Ref o{{C, R}, DVec(x.v.size()), DVec(x.v.size())};
  for (std::int64_t i = 0; i < R; ++i)
    for (std::int64_t j = 0; j < C; ++j) {
      o.v[j * R + i] = x.v[i * C + j];
      o.scale[j * R + i] = x.scale[i * C + j];
    }
  return o;
}
// Sums of r [rows, cols] over rows -> [cols]
Ref col_sums(const DVec& r, std::int64_t rows, std::int64_t cols) {
  Ref o{{cols}, DVec(cols, 0.0), DVec(cols, 0.0)};
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      o.v[j] += r[i * cols + j];
      o.scale[j] += std::fabs(r[i * cols + j]);
    }
  return o;
}

// ---- case builders ------------------------------------------------------------------------------

struct Dims {
  std::int64_t m, k, n;
};

OpCase matmul_case(Dims d, bool ints, std::uint64_t seed) {
  OpCase c;
  c.name = "matmul " + shape_str({d.m, d.k}) + " x " + shape_str({d.k, d.n}) + (ints ? " (integers)" : "");
  c.inputs = ints ? Ins{small_ints_cpu({d.m, d.k}, seed), small_ints_cpu({d.k, d.n}, seed + 1)}
                  : Ins{randn_cpu({d.m, d.k}, seed), randn_cpu({d.k, d.n}, seed + 1)};
  c.wrt = {true, true};
  c.op = [](const Ins& in) { return kiln::matmul(in[0], in[1]); };
  c.ref = [d](const X& x) { return ref_gemm(x[0], x[1], d.m, d.k, d.n, false); };
  c.vjp = [d](const X& x, const DVec& r) {
    // dA = R B^T: [M,N] x [N,K]; dB = A^T R
    Ref da = ref_gemm(r, x[1], d.m, d.n, d.k, true);
    return std::vector<Ref>{da, ref_at_b(x[0], r, d.m, d.k, d.n)};
  };
  c.fwd_rtol = ints ? 0 : reduction_rtol(d.k);
  c.grad_rtol = ints ? 0 : reduction_rtol(std::max(d.m, d.n));
  c.integer_r = ints;
  c.numeric = d.m * d.k * d.n <= 4000;
  c.seed = seed + 7;
  return c;
}

OpCase linear_case(Dims d, bool bias, bool ints, std::uint64_t seed) {
  // x [N=m, in=k], weight [out=n, in=k], bias [out]
  OpCase c;
  c.name = std::string("linear") + (bias ? "+bias " : " ") + shape_str({d.m, d.k}) + " -> " + std::to_string(d.n) +
           (ints ? " (integers)" : "");
  auto gen = [&](const Shape& s, std::uint64_t sd) { return ints ? small_ints_cpu(s, sd) : randn_cpu(s, sd); };
  c.inputs = {gen({d.m, d.k}, seed), gen({d.n, d.k}, seed + 1)};
  if (bias) c.inputs.push_back(gen({d.n}, seed + 2));
  c.wrt = {true, true, true};
  c.op = [bias](const Ins& in) { return bias ? kiln::linear(in[0], in[1], in[2]) : kiln::linear(in[0], in[1]); };
  c.ref = [d, bias](const X& x) {
    Ref r = ref_gemm(x[0], x[1], d.m, d.k, d.n, true);
    if (bias)
      for (std::int64_t i = 0; i < d.m; ++i)
        for (std::int64_t j = 0; j < d.n; ++j) {
          r.v[i * d.n + j] += x[2][j];
          r.scale[i * d.n + j] += std::fabs(x[2][j]);
        }
    return r;
  };
  c.vjp = [d, bias](const X& x, const DVec& r) {
    std::vector<Ref> g;
    g.push_back(ref_gemm(r, x[1], d.m, d.n, d.k, false));  // dx = R W: [N,out] x [out,in]
    g.push_back(transpose(ref_at_b(x[0], r, d.m, d.k, d.n)));  // dW = R^T x = (x^T R)^T
    if (bias) g.push_back(col_sums(r, d.m, d.n));
    return g;
  };
  c.fwd_rtol = ints ? 0 : reduction_rtol(d.k + 1);
  c.grad_rtol = ints ? 0 : reduction_rtol(std::max(d.m, d.n));
  c.integer_r = ints;
  c.numeric = d.m * d.k * d.n <= 4000;
  c.seed = seed + 11;
  return c;
}

OpCase bias_add_case(const Shape& xs, bool ints, std::uint64_t seed) {
  OpCase c;
  const std::int64_t outer = xs[0], C = xs[1], inner = prod(xs, 2, xs.size());
  c.name = "bias_add " + shape_str(xs) + (ints ? " (integers)" : "");
  c.inputs = ints ? Ins{small_ints_cpu(xs, seed), small_ints_cpu({C}, seed + 1)}
                  : Ins{randn_cpu(xs, seed), randn_cpu({C}, seed + 1)};
  c.wrt = {true, true};
  c.op = [](const Ins& in) { return kiln::bias_add(in[0], in[1]); };
  c.ref = [=](const X& x) {
    Ref r{xs, x[0], {}};
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t ch = 0; ch < C; ++ch)
        for (std::int64_t i = 0; i < inner; ++i) r.v[(o * C + ch) * inner + i] += x[1][ch];
    return r;
  };
  c.vjp = [=](const X& x, const DVec& r) {
    Ref db{{C}, DVec(C, 0.0), DVec(C, 0.0)};
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t ch = 0; ch < C; ++ch)
        for (std::int64_t i = 0; i < inner; ++i) {
          db.v[ch] += r[(o * C + ch) * inner + i];
          db.scale[ch] += std::fabs(r[(o * C + ch) * inner + i]);
        }
    return std::vector<Ref>{Ref{xs, r, absv(r)}, db};
  };
  c.fwd_rtol = ints ? 0 : kElementwiseRtol;
  c.grad_rtol = ints ? 0 : reduction_rtol(outer * inner);
  c.integer_r = ints;
  c.numeric = kiln::shape_numel(xs) <= 500;
  c.seed = seed + 13;
  return c;
}

// Elementwise binary op: f(a, b), partial derivatives fa, fb. same = use one tensor for both operands.
using F2 = double (*)(double, double);
OpCase binary_case(const std::string& name, Tensor (*op)(const Tensor&, const Tensor&), F2 f, F2 fa, F2 fb,
                   const Shape& s, bool same, std::uint64_t seed) {
  OpCase c;
  c.name = name + (same ? "(x, x) " : " ") + shape_str(s);
  c.inputs = same ? Ins{randn_cpu(s, seed)} : Ins{randn_cpu(s, seed), randn_cpu(s, seed + 1)};
  c.wrt = {true, true};
  c.op = [op, same](const Ins& in) { return op(in[0], same ? in[0] : in[1]); };
  c.ref = [=](const X& x) {
    const DVec& b = same ? x[0] : x[1];
    Ref r{s, DVec(x[0].size()), {}};
    for (std::size_t i = 0; i < r.v.size(); ++i) r.v[i] = f(x[0][i], b[i]);
    return r;
  };
  c.vjp = [=](const X& x, const DVec& r) {
    const DVec& b = same ? x[0] : x[1];
    Ref ga{s, DVec(r.size()), DVec(r.size())}, gb = ga;
    for (std::size_t i = 0; i < r.size(); ++i) {
      ga.v[i] = r[i] * fa(x[0][i], b[i]);
      gb.v[i] = r[i] * fb(x[0][i], b[i]);
      ga.scale[i] = std::fabs(ga.v[i]);
      gb.scale[i] = std::fabs(gb.v[i]);
    }
    if (!same) return std::vector<Ref>{ga, gb};
    // both edges reach the same leaf: the gradients must be summed
    for (std::size_t i = 0; i < r.size(); ++i) {
      ga.v[i] += gb.v[i];
      ga.scale[i] += gb.scale[i];
    }
    return std::vector<Ref>{ga};
  };
  c.numeric = kiln::shape_numel(s) <= 500;
  c.seed = seed + 17;
  return c;
}

OpCase unary_case(const std::string& name, std::function<Tensor(const Tensor&)> op, std::function<double(double)> f,
                  std::function<double(double)> df, const Shape& s, std::uint64_t seed) {
  OpCase c;
  c.name = name + " " + shape_str(s);
  c.inputs = {randn_cpu(s, seed)};
  c.wrt = {true};
  c.op = [op](const Ins& in) { return op(in[0]); };
  c.ref = [=](const X& x) {
    Ref r{s, DVec(x[0].size()), {}};
    for (std::size_t i = 0; i < r.v.size(); ++i) r.v[i] = f(x[0][i]);
    return r;
  };
  c.vjp = [=](const X& x, const DVec& r) {
    Ref g{s, DVec(r.size()), DVec(r.size())};
    for (std::size_t i = 0; i < r.size(); ++i) {
      g.v[i] = r[i] * df(x[0][i]);
      g.scale[i] = std::fabs(g.v[i]);
    }
    return std::vector<Ref>{g};
  };
  c.numeric = kiln::shape_numel(s) <= 500;
  c.seed = seed + 19;
  return c;
}

// sum / mean over everything (axis = none) or over one axis.
OpCase reduce_case(bool is_mean, const Shape& s, bool all, std::int64_t axis, bool ints, std::uint64_t seed,
                   bool positive = false) {
  OpCase c;
  const std::int64_t nd = static_cast<std::int64_t>(s.size());
  const std::int64_t ax = all ? 0 : (axis < 0 ? axis + nd : axis);
  const std::int64_t outer = all ? 1 : prod(s, 0, ax), n = all ? kiln::shape_numel(s) : s[ax],
                     inner = all ? 1 : prod(s, ax + 1, s.size());
  Shape out_shape;
  if (!all)
    for (std::int64_t d = 0; d < nd; ++d)
      if (d != ax) out_shape.push_back(s[d]);
  c.name = std::string(is_mean ? "mean" : "sum") + (all ? "" : "(axis " + std::to_string(axis) + ")") + " " +
           shape_str(s) + (ints ? " (integers)" : positive ? " (positive)" : "");
  c.inputs = {ints ? small_ints_cpu(s, seed) : positive ? rand_cpu(s, seed) : randn_cpu(s, seed)};
  c.wrt = {true};
  c.op = [=](const Ins& in) {
    if (all) return is_mean ? kiln::mean(in[0]) : kiln::sum(in[0]);
    return is_mean ? kiln::mean(in[0], axis) : kiln::sum(in[0], axis);
  };
  const double k = is_mean ? 1.0 / static_cast<double>(n) : 1.0;
  c.ref = [=](const X& x) {
    Ref r{out_shape, DVec(outer * inner, 0.0), DVec(outer * inner, 0.0)};
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < inner; ++i) {
          r.v[o * inner + i] += k * x[0][(o * n + j) * inner + i];
          r.scale[o * inner + i] += k * std::fabs(x[0][(o * n + j) * inner + i]);
        }
    return r;
  };
  c.vjp = [=](const X& x, const DVec& r) {
    Ref g{s, DVec(x[0].size()), DVec(x[0].size())};
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < inner; ++i) {
          g.v[(o * n + j) * inner + i] = k * r[o * inner + i];
          g.scale[(o * n + j) * inner + i] = std::fabs(k * r[o * inner + i]);
        }
    return std::vector<Ref>{g};
  };
  // integers: sums are exact (a mean may legitimately sum x_i / n, so it keeps the reduction budget)
  c.fwd_rtol = (ints && !is_mean) ? 0.0 : reduction_rtol(n);
  c.grad_rtol = (ints && !is_mean) ? 0.0 : kElementwiseRtol;
  c.integer_r = ints;
  c.numeric = kiln::shape_numel(s) <= 500;
  c.seed = seed + 23;
  return c;
}

double f_add(double a, double b) { return a + b; }
double f_sub(double a, double b) { return a - b; }
double f_mul(double a, double b) { return a * b; }
double one(double, double) { return 1.0; }
double minus_one(double, double) { return -1.0; }
double second(double, double b) { return b; }
double first(double a, double) { return a; }

Tensor op_add(const Tensor& a, const Tensor& b) { return kiln::add(a, b); }
Tensor op_sub(const Tensor& a, const Tensor& b) { return kiln::sub(a, b); }
Tensor op_mul(const Tensor& a, const Tensor& b) { return kiln::mul(a, b); }

}  // namespace

class OpsTest : public DeviceTest {};

TEST_P(OpsTest, Matmul) {
  check_op(matmul_case({1, 1, 1}, false, 100), dev());
  check_op(matmul_case({7, 13, 5}, false, 101), dev());
  check_op(matmul_case({37, 53, 29}, false, 102), dev());
  check_op(matmul_case({many_rows(), 1031, 67}, false, 103), dev());  // multi-block / multi-tile paths
  check_op(matmul_case({129, 1031, 65}, true, 104), dev());   // exact: every product counted once
}

TEST_P(OpsTest, MatmulSameOperandTwice) {
  // a @ a with one leaf: the two edges' gradients (R a^T + a^T R) must be summed.
  OpCase c = matmul_case({9, 9, 9}, false, 110);
  c.name = "matmul(a, a)";
  c.inputs = {c.inputs[0]};
  c.wrt = {true};
  c.op = [](const Ins& in) { return kiln::matmul(in[0], in[0]); };
  c.ref = [](const X& x) { return ref_gemm(x[0], x[0], 9, 9, 9, false); };
  c.vjp = [](const X& x, const DVec& r) {
    Ref g1 = ref_gemm(r, x[0], 9, 9, 9, true), g2 = ref_at_b(x[0], r, 9, 9, 9);
    for (std::size_t i = 0; i < g1.v.size(); ++i) {
      g1.v[i] += g2.v[i];
      g1.scale[i] += g2.scale[i];
    }
    return std::vector<Ref>{g1};
  };
  check_op(c, dev());
}

TEST_P(OpsTest, Linear) {
  for (bool bias : {false, true}) {
    check_op(linear_case({3, 5, 4}, bias, false, 200), dev());
    check_op(linear_case({37, 53, 29}, bias, false, 201), dev());
    check_op(linear_case({many_rows(), 1031, 67}, bias, false, 202), dev());
    check_op(linear_case({129, 1031, 65}, bias, true, 203), dev());
    check_op(linear_case({9, 13, 600}, bias, false, 204), dev());  // bias columns in several blocks
  }
}

TEST_P(OpsTest, BiasAdd) {
  check_op(bias_add_case({37, 53}, false, 300), dev());
  check_op(bias_add_case({2, 3, 4, 5}, false, 301), dev());
  check_op(bias_add_case({3, 5, 7, 9}, false, 302), dev());
  check_op(bias_add_case({many_rows(), 1031}, false, 303), dev());
  check_op(bias_add_case({5, 129, 257}, true, 304), dev());  // exact bias gradient over 1285 terms
}

TEST_P(OpsTest, AddSubMul) {
  for (const Shape& s : {Shape{}, Shape{3, 5, 7}, Shape{37, 53}, Shape{many_rows(), 1031}}) {
    check_op(binary_case("add", op_add, f_add, one, one, s, false, 400), dev());
    check_op(binary_case("sub", op_sub, f_sub, one, minus_one, s, false, 401), dev());
    check_op(binary_case("mul", op_mul, f_mul, second, first, s, false, 402), dev());
  }
}

TEST_P(OpsTest, SameTensorBothOperands) {
  for (const Shape& s : {Shape{3, 5, 7}, Shape{many_rows(), 1031}}) {
    check_op(binary_case("add", op_add, f_add, one, one, s, true, 410), dev());  // grad 2R
    check_op(binary_case("sub", op_sub, f_sub, one, minus_one, s, true, 411), dev());  // grad 0
    check_op(binary_case("mul", op_mul, f_mul, second, first, s, true, 412), dev());  // grad 2xR
  }
}

TEST_P(OpsTest, Scale) {
  for (float s : {-1.7f, 0.0f, 3.0f}) {
    for (const Shape& shape : {Shape{3, 5, 7}, Shape{many_rows(), 1031}}) {
      const double sd = s;
      check_op(unary_case("scale by " + std::to_string(s), [s](const Tensor& x) { return kiln::scale(x, s); },
                          [sd](double x) { return sd * x; }, [sd](double) { return sd; }, shape, 500),
               dev());
    }
  }
  // the operator forms
  check_op(unary_case("x * 2.5f", [](const Tensor& x) { return x * 2.5f; }, [](double x) { return 2.5 * x; },
                      [](double) { return 2.5; }, {37, 53}, 501),
           dev());
  check_op(unary_case("2.5f * x", [](const Tensor& x) { return 2.5f * x; }, [](double x) { return 2.5 * x; },
                      [](double) { return 2.5; }, {37, 53}, 502),
           dev());
}

TEST_P(OpsTest, Relu) {
  for (const Shape& s : {Shape{3, 5, 7}, Shape{37, 53}, Shape{many_rows(), 1031}}) {
    OpCase c = unary_case("relu", [](const Tensor& x) { return kiln::relu(x); },
                          [](double x) { return x > 0 ? x : 0.0; }, [](double x) { return x > 0 ? 1.0 : 0.0; }, s, 600);
    c.kink = 2 * kFiniteDiffStep;  // relu is not differentiable at 0
    c.fwd_rtol = 0;                // relu is exact
    c.grad_rtol = 0;               // dx = dy or 0, exactly
    check_op(c, dev());
  }
}

TEST_P(OpsTest, SumAll) {
  check_op(reduce_case(false, {}, true, 0, false, 700), dev());
  check_op(reduce_case(false, {3, 5, 7}, true, 0, false, 701), dev());
  check_op(reduce_case(false, {many_rows(), 1031}, true, 0, false, 702, true), dev());
  check_op(reduce_case(false, {many_rows(), 1031}, true, 0, true, 703), dev());  // exact
}

TEST_P(OpsTest, SumAxis) {
  for (std::int64_t axis : {0, 1, 2, -1, -2, -3}) check_op(reduce_case(false, {5, 7, 9}, false, axis, false, 710), dev());
  for (std::int64_t axis : {0, 1, -1}) {
    check_op(reduce_case(false, {many_rows(), 1031}, false, axis, false, 711, true), dev());
    check_op(reduce_case(false, {3, 1031, 67}, false, axis, true, 712), dev());  // exact
  }
}

TEST_P(OpsTest, MeanAll) {
  check_op(reduce_case(true, {3, 5, 7}, true, 0, false, 800), dev());
  check_op(reduce_case(true, {many_rows(), 1031}, true, 0, false, 801, true), dev());
  check_op(reduce_case(true, {many_rows(), 1031}, true, 0, true, 802), dev());
}

TEST_P(OpsTest, MeanAxis) {
  for (std::int64_t axis : {0, 1, -1}) {
    check_op(reduce_case(true, {5, 7, 9}, false, axis, false, 810), dev());
    check_op(reduce_case(true, {3, 1031, 67}, false, axis, true, 811), dev());
  }
}

KILN_INSTANTIATE_DEVICES(OpsTest);

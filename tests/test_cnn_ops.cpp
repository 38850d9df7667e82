// CNN helper ops: max_pool2d, adaptive_avg_pool2d, local_response_norm, dropout and
// resize_bilinear, through the public ops. The differentiable ones run through kt::check_op
// (forward vs a double reference, backward vs a double vjp and central differences, pre-filled
// gradients, and on the gpu instance device-vs-CPU); edge semantics (NaN, ties, -inf), dropout's
// statistics and bit-exact masks, and argument errors have their own tests. Test names carry
// Pool / Lrn / Dropout / Resize so `ctest -R` can select them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "test_util.h"

using namespace kt;
using kiln::Pool2dParams;
using kiln::Shape;
using kiln::shape_str;

namespace {

using i64 = std::int64_t;
using Ins = std::vector<Tensor>;
using X = std::vector<DVec>;

// Values step * (rank - n/2) in a pseudo-random order: all distinct, at least `step` apart, so
// max pooling has no ties and central differences (h = 1e-6) never cross a kink.
Tensor distinct_cpu(const Shape& shape, std::uint64_t seed, float step = 0.01f) {
  const i64 n = kiln::shape_numel(shape);
  std::vector<i64> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<std::uint32_t> key(order.size());
  for (i64 i = 0; i < n; ++i) key[i] = kiln::philox::philox4x32(static_cast<std::uint64_t>(i), seed).x;
  std::sort(order.begin(), order.end(), [&](i64 a, i64 b) { return key[a] < key[b] || (key[a] == key[b] && a < b); });
  std::vector<float> v(order.size());
  for (i64 r = 0; r < n; ++r) v[order[r]] = step * static_cast<float>(r - n / 2);
  return Tensor::from_vector(v, shape);
}

std::string pool_str(const Pool2dParams& p) {
  return "k" + std::to_string(p.kernel_h) + "x" + std::to_string(p.kernel_w) + " s" + std::to_string(p.stride_h) +
         "x" + std::to_string(p.stride_w) + " p" + std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w);
}

Pool2dParams pool(i64 k, i64 s, i64 pad = 0) {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = s;
  p.pad_h = p.pad_w = pad;
  return p;
}

// ---- max pooling ------------------------------------------------------------------------------

// Forward in double: per output the window maximum (first one on ties) and its flat plane index.
struct MaxPoolRef {
  i64 planes, H, W, P, Q;
  DVec y;
  std::vector<i64> arg;
};
MaxPoolRef ref_max_pool(const DVec& x, const Shape& s, const Pool2dParams& p) {
  MaxPoolRef r{s[0] * s[1], s[2], s[3], 0, 0, {}, {}};
  r.P = (r.H + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1;
  r.Q = (r.W + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
  for (i64 pl = 0; pl < r.planes; ++pl)
    for (i64 i = 0; i < r.P; ++i)
      for (i64 j = 0; j < r.Q; ++j) {
        double best = -std::numeric_limits<double>::infinity();
        i64 bi = -1;
        for (i64 kh = 0; kh < p.kernel_h; ++kh)
          for (i64 kw = 0; kw < p.kernel_w; ++kw) {
            const i64 h = i * p.stride_h - p.pad_h + kh, w = j * p.stride_w - p.pad_w + kw;
            if (h < 0 || h >= r.H || w < 0 || w >= r.W) continue;  // -inf padding
            const double v = x[(pl * r.H + h) * r.W + w];
            if (bi < 0 || v > best) {
              best = v;
              bi = h * r.W + w;
            }
          }
        r.y.push_back(best);
        r.arg.push_back(bi);
      }
  return r;
}

OpCase max_pool_case(const std::string& what, Tensor x, const Pool2dParams& p) {
  const Shape s = x.shape();
  OpCase c;
  c.name = "max_pool2d " + what + " " + shape_str(s) + " " + pool_str(p);
  c.inputs = {x};
  c.wrt = {true};
  c.op = [p](const Ins& in) { return kiln::max_pool2d(in[0], p); };
  c.ref = [=](const X& in) {
    MaxPoolRef m = ref_max_pool(in[0], s, p);
    return Ref{{s[0], s[1], m.P, m.Q}, m.y, {}};
  };
  // dx = sum of r over the windows whose maximum sits at x; scale = sum of |r| over them.
  c.vjp = [=](const X& in, const DVec& r) {
    MaxPoolRef m = ref_max_pool(in[0], s, p);
    Ref g{s, DVec(in[0].size(), 0.0), DVec(in[0].size(), 0.0)};
    for (i64 pl = 0; pl < m.planes; ++pl)
      for (i64 o = 0; o < m.P * m.Q; ++o) {
        const i64 e = pl * m.H * m.W + m.arg[pl * m.P * m.Q + o];
        g.v[e] += r[pl * m.P * m.Q + o];
        g.scale[e] += std::fabs(r[pl * m.P * m.Q + o]);
      }
    return std::vector<Ref>{g};
  };
  c.fwd_rtol = 0;  // a selection: exact
  // An input collects the dy of at most ceil(kh/sh) * ceil(kw/sw) windows.
  const i64 windows = ((p.kernel_h + p.stride_h - 1) / p.stride_h) * ((p.kernel_w + p.stride_w - 1) / p.stride_w);
  c.grad_rtol = reduction_rtol(windows);
  c.numeric = x.numel() <= 800;
  return c;
}

// ---- adaptive average pooling -------------------------------------------------------------------

i64 astart(i64 i, i64 in, i64 out) { return static_cast<i64>(std::floor(static_cast<double>(i) * in / out)); }
i64 aend(i64 i, i64 in, i64 out) { return static_cast<i64>(std::ceil(static_cast<double>(i + 1) * in / out)); }

OpCase adaptive_case(const std::string& what, Tensor x, i64 P, i64 Q) {
  const Shape s = x.shape();
  const i64 planes = s[0] * s[1], H = s[2], W = s[3];
  OpCase c;
  c.name = "adaptive_avg_pool2d " + what + " " + shape_str(s) + " -> " + std::to_string(P) + "x" + std::to_string(Q);
  c.inputs = {x};
  c.wrt = {true};
  c.op = [P, Q](const Ins& in) { return kiln::adaptive_avg_pool2d(in[0], P, Q); };
  i64 max_count = 1, max_cover = 1;
  for (i64 i = 0; i < P; ++i)
    for (i64 j = 0; j < Q; ++j)
      max_count = std::max(max_count, (aend(i, H, P) - astart(i, H, P)) * (aend(j, W, Q) - astart(j, W, Q)));
  {
    std::vector<i64> rows(H, 0), cols(W, 0);
    for (i64 i = 0; i < P; ++i)
      for (i64 h = astart(i, H, P); h < aend(i, H, P); ++h) ++rows[h];
    for (i64 j = 0; j < Q; ++j)
      for (i64 w = astart(j, W, Q); w < aend(j, W, Q); ++w) ++cols[w];
    max_cover = *std::max_element(rows.begin(), rows.end()) * *std::max_element(cols.begin(), cols.end());
  }
  c.ref = [=](const X& in) {
    Ref r{{s[0], s[1], P, Q}, {}, {}};
    for (i64 pl = 0; pl < planes; ++pl)
      for (i64 i = 0; i < P; ++i)
        for (i64 j = 0; j < Q; ++j) {
          double sum = 0, sa = 0;
          const i64 hs = astart(i, H, P), he = aend(i, H, P), ws = astart(j, W, Q), we = aend(j, W, Q);
          for (i64 h = hs; h < he; ++h)
            for (i64 w = ws; w < we; ++w) {
              sum += in[0][(pl * H + h) * W + w];
              sa += std::fabs(in[0][(pl * H + h) * W + w]);
            }
          const double cnt = static_cast<double>((he - hs) * (we - ws));
          r.v.push_back(sum / cnt);
          r.scale.push_back(sa / cnt);
        }
    return r;
  };
  c.vjp = [=](const X& in, const DVec& r) {
    Ref g{s, DVec(in[0].size(), 0.0), DVec(in[0].size(), 0.0)};
    for (i64 pl = 0; pl < planes; ++pl)
      for (i64 i = 0; i < P; ++i)
        for (i64 j = 0; j < Q; ++j) {
          const i64 hs = astart(i, H, P), he = aend(i, H, P), ws = astart(j, W, Q), we = aend(j, W, Q);
          const double t = r[(pl * P + i) * Q + j] / static_cast<double>((he - hs) * (we - ws));
          for (i64 h = hs; h < he; ++h)
            for (i64 w = ws; w < we; ++w) {
              g.v[(pl * H + h) * W + w] += t;
              g.scale[(pl * H + h) * W + w] += std::fabs(t);
            }
        }
    return std::vector<Ref>{g};
  };
  // a sum of up to max_count terms, then one division
  c.fwd_rtol = reduction_rtol(max_count) + kElementwiseRtol;
  // a sum of up to max_cover quotients, each rounded once
  c.grad_rtol = reduction_rtol(max_cover) + kElementwiseRtol;
  c.numeric = x.numel() <= 800;
  return c;
}

// ---- local response norm ----------------------------------------------------------------------------

struct LrnCfg {
  i64 size;
  double alpha, beta, k;
};

// scale[c] = k + alpha/size * sum_{c' in [c - size/2, c + (size-1)/2] ∩ [0, C)} x[c']^2 (in double).
DVec ref_lrn_scale(const DVec& x, const Shape& s, const LrnCfg& l) {
  const i64 N = s[0], C = s[1], HW = s[2] * s[3];
  DVec sc(x.size());
  for (i64 n = 0; n < N; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 e = 0; e < HW; ++e) {
        double sq = 0;
        for (i64 cc = c - l.size / 2; cc <= c + (l.size - 1) / 2; ++cc)
          if (cc >= 0 && cc < C) sq += x[(n * C + cc) * HW + e] * x[(n * C + cc) * HW + e];
        sc[(n * C + c) * HW + e] = l.k + l.alpha / l.size * sq;
      }
  return sc;
}

OpCase lrn_case(const std::string& what, Tensor x, const LrnCfg& l) {
  const Shape s = x.shape();
  const i64 N = s[0], C = s[1], HW = s[2] * s[3];
  OpCase c;
  c.name = "local_response_norm " + what + " " + shape_str(s) + " size " + std::to_string(l.size) + " alpha " +
           std::to_string(l.alpha) + " beta " + std::to_string(l.beta) + " k " + std::to_string(l.k);
  c.inputs = {x};
  c.wrt = {true};
  c.op = [l](const Ins& in) {
    return kiln::local_response_norm(in[0], l.size, static_cast<float>(l.alpha), static_cast<float>(l.beta),
                                     static_cast<float>(l.k));
  };
  c.ref = [=](const X& in) {
    const DVec sc = ref_lrn_scale(in[0], s, l);
    Ref r{s, DVec(sc.size()), {}};
    for (std::size_t e = 0; e < sc.size(); ++e) r.v[e] = in[0][e] * std::pow(sc[e], -l.beta);
    return r;
  };
  // dx_c = r_c s_c^-beta - 2 alpha beta / size * x_c * sum_{c' whose window holds c} r_c' y_c' / s_c'
  c.vjp = [=](const X& in, const DVec& r) {
    const DVec sc = ref_lrn_scale(in[0], s, l);
    const double coef = 2 * l.alpha * l.beta / l.size;
    Ref g{s, DVec(sc.size()), DVec(sc.size())};
    for (i64 n = 0; n < N; ++n)
      for (i64 ch = 0; ch < C; ++ch)
        for (i64 e = 0; e < HW; ++e) {
          const i64 f = (n * C + ch) * HW + e;
          double acc = 0, acc_abs = 0;
          for (i64 cc = ch - (l.size - 1) / 2; cc <= ch + l.size / 2; ++cc) {
            if (cc < 0 || cc >= C) continue;
            const i64 q = (n * C + cc) * HW + e;
            const double t = r[q] * in[0][q] * std::pow(sc[q], -l.beta) / sc[q];
            acc += t;
            acc_abs += std::fabs(t);
          }
          const double direct = r[f] * std::pow(sc[f], -l.beta);
          g.v[f] = direct - coef * in[0][f] * acc;
          g.scale[f] = std::fabs(direct) + coef * std::fabs(in[0][f]) * acc_abs;
        }
    return std::vector<Ref>{g};
  };
  // y = x s^-beta: s sums `size` squares (a reduction error, relative to s since every term is
  // positive, scaled by beta <= 1 through the power); CUDA documents powf to 4 ulp (<= 8u relative)
  // and the final multiply adds u: 2 kElementwiseRtol = 16u covers both.
  c.fwd_rtol = reduction_rtol(l.size) + 2 * kElementwiseRtol;
  // the gradient's terms carry y's error, a division and a second `size`-term sum
  c.grad_rtol = 2 * reduction_rtol(l.size) + 4 * kElementwiseRtol;
  c.numeric = x.numel() <= 800;
  return c;
}

// ---- dropout ----------------------------------------------------------------------------------------

float dropout_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }
bool kept(std::uint64_t seed, std::uint64_t index, float p) { return kiln::philox::uniform(seed, index) >= p; }

// check_op case: a fresh Generator(seed) on every call, so both passes of check_op and both
// devices draw the same mask, which the reference rebuilds from the same Philox stream.
OpCase dropout_case(Tensor x, float p, std::uint64_t seed) {
  const Shape s = x.shape();
  OpCase c;
  c.name = "dropout p=" + std::to_string(p) + " " + shape_str(s);
  c.inputs = {x};
  c.wrt = {true};
  c.op = [p, seed](const Ins& in) {
    kiln::Generator gen(seed);
    return kiln::dropout(in[0], p, gen, true);
  };
  c.ref = [=](const X& in) {
    Ref r{s, DVec(in[0].size()), {}};
    for (std::size_t i = 0; i < r.v.size(); ++i) r.v[i] = kept(seed, i, p) ? in[0][i] / (1.0 - p) : 0.0;
    return r;
  };
  c.vjp = [=](const X& in, const DVec& r) {
    Ref g{s, DVec(in[0].size()), DVec(in[0].size())};
    for (std::size_t i = 0; i < g.v.size(); ++i) {
      g.v[i] = kept(seed, i, p) ? r[i] / (1.0 - p) : 0.0;
      g.scale[i] = std::fabs(g.v[i]);
    }
    return std::vector<Ref>{g};
  };
  // x * fl(1 / (1 - p)): two roundings
  c.fwd_rtol = c.grad_rtol = kElementwiseRtol;
  c.numeric = x.numel() <= 800;
  return c;
}

// ---- bilinear resize ------------------------------------------------------------------------------

// PyTorch (align_corners = false) in double; scale = sum |w x| plus the sensitivity to float32's
// rounding of the source coordinate src (error ~ u (src + 1), times |x1 - x0| <= 2 max |x|).
Ref ref_resize(const DVec& x, const Shape& s, i64 OH, i64 OW) {
  const i64 planes = s[0] * s[1], H = s[2], W = s[3];
  struct T {
    i64 i0, i1;
    double w0, w1, src;
  };
  auto taps = [](i64 in, i64 out) {
    std::vector<T> t;
    for (i64 d = 0; d < out; ++d) {
      double src = (d + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
      if (src < 0) src = 0;
      const i64 i0 = std::min(static_cast<i64>(std::floor(src)), in - 1);
      const double l1 = src - i0;
      t.push_back(T{i0, std::min(i0 + 1, in - 1), 1 - l1, l1, src});
    }
    return t;
  };
  const std::vector<T> th = taps(H, OH), tw = taps(W, OW);
  Ref r{{s[0], s[1], OH, OW}, {}, {}};
  for (i64 pl = 0; pl < planes; ++pl)
    for (i64 oh = 0; oh < OH; ++oh)
      for (i64 ow = 0; ow < OW; ++ow) {
        const T& a = th[oh];
        const T& b = tw[ow];
        const double* xp = &x[pl * H * W];
        const double x00 = xp[a.i0 * W + b.i0], x01 = xp[a.i0 * W + b.i1], x10 = xp[a.i1 * W + b.i0],
                     x11 = xp[a.i1 * W + b.i1];
        r.v.push_back(a.w0 * (b.w0 * x00 + b.w1 * x01) + a.w1 * (b.w0 * x10 + b.w1 * x11));
        const double m = std::max({std::fabs(x00), std::fabs(x01), std::fabs(x10), std::fabs(x11)});
        r.scale.push_back(a.w0 * (b.w0 * std::fabs(x00) + b.w1 * std::fabs(x01)) +
                          a.w1 * (b.w0 * std::fabs(x10) + b.w1 * std::fabs(x11)) + (a.src + b.src + 4) * m);
      }
  return r;
}

OpCase resize_case(Tensor x, i64 OH, i64 OW) {
  const Shape s = x.shape();
  OpCase c;
  c.name = "resize_bilinear " + shape_str(s) + " -> " + std::to_string(OH) + "x" + std::to_string(OW);
  c.inputs = {x};
  c.op = [OH, OW](const Ins& in) { return kiln::resize_bilinear(in[0], OH, OW); };
  c.ref = [=](const X& in) { return ref_resize(in[0], s, OH, OW); };
  c.fwd_rtol = kElementwiseRtol;  // against the scale above (a few roundings each)
  return c;
}

}  // namespace

class CnnOpsTest : public DeviceTest {};

// ---- max pooling ----------------------------------------------------------------------------------

TEST_P(CnnOpsTest, MaxPool) {
  check_op(max_pool_case("", distinct_cpu({2, 3, 7, 9}, 10), pool(2, 2)), dev());       // last row/col dropped
  check_op(max_pool_case("", distinct_cpu({2, 2, 8, 8}, 11), pool(3, 2, 1)), dev());    // -inf padding
  check_op(max_pool_case("", distinct_cpu({1, 3, 9, 7}, 12), pool(3, 1)), dev());       // an input wins up to 9 windows
  check_op(max_pool_case("", distinct_cpu({2, 1, 6, 6}, 13), pool(2, 2, 1)), dev());
  check_op(max_pool_case("", distinct_cpu({1, 2, 5, 5}, 14), pool(5, 5)), dev());       // one window per plane
  check_op(max_pool_case("", distinct_cpu({1, 1, 1, 1}, 15), pool(1, 1)), dev());
  Pool2dParams rect;
  rect.kernel_h = 2;
  rect.kernel_w = 3;
  rect.stride_h = 1;
  rect.stride_w = 2;
  rect.pad_h = 1;
  rect.pad_w = 1;
  check_op(max_pool_case("rect", distinct_cpu({2, 2, 6, 11}, 16), rect), dev());
}

TEST_P(CnnOpsTest, MaxPoolAlexNetShapes) {
  // AlexNet: 3x3 windows, stride 2: 55 -> 27, 27 -> 13, 13 -> 6
  Tensor x = distinct_cpu({2, 4, 55, 55}, 20, 1e-3f);
  EXPECT_EQ(kiln::max_pool2d(x.to(dev()), pool(3, 2)).shape(), (Shape{2, 4, 27, 27}));
  check_op(max_pool_case("AlexNet", x, pool(3, 2)), dev());
  check_op(max_pool_case("AlexNet", distinct_cpu({2, 8, 27, 27}, 21), pool(3, 2)), dev());
  check_op(max_pool_case("AlexNet", distinct_cpu({2, 8, 13, 13}, 22), pool(3, 2)), dev());
}

// NaN wins its window (and takes the gradient); ties go to the first element in row-major order;
// an all -inf window yields -inf and routes the gradient to its first element.
TEST_P(CnnOpsTest, MaxPoolNanTiesAndInfinity) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // one plane 4x4, 2x2 windows stride 2
  std::vector<float> v = {
      1, nan, 5, 5,        //
      7, 2,   5, 5,        //
      -inf, -inf, 3, 9,    //
      -inf, -inf, 9, nan,  //
  };
  Tensor x = Tensor::from_vector(v, {1, 1, 4, 4}, dev());
  x.set_requires_grad(true);
  Tensor y = kiln::max_pool2d(x, pool(2, 2));
  std::vector<float> yv = y.to_vector<float>();
  ASSERT_EQ(yv.size(), 4u);
  EXPECT_TRUE(std::isnan(yv[0])) << "NaN must propagate, got " << yv[0];
  EXPECT_EQ(yv[1], 5.0f);
  EXPECT_EQ(yv[2], -inf);
  EXPECT_TRUE(std::isnan(yv[3])) << "NaN must win even after the maximum, got " << yv[3];
  kiln::sum(kiln::mul(y, Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {1, 1, 2, 2}, dev()))).backward();
  const std::vector<float> g = x.grad().to_vector<float>();
  const std::vector<float> expect = {
      0, 1, 2, 0,  // NaN at (0,1); the tie of 5s goes to the first, (0,2)
      0, 0, 0, 0,  //
      3, 0, 0, 0,  // all -inf: first element of the window
      0, 0, 0, 4,  // NaN beats the earlier 9s
  };
  EXPECT_EQ(g, expect);

  // Overlapping windows (3x3 stride 1) where the one maximum wins all windows: its gradient sums them.
  Tensor z = Tensor::from_vector(std::vector<float>{0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}, dev());
  z.set_requires_grad(true);
  Tensor zp = kiln::max_pool2d(z, pool(2, 1));  // 4 windows, all contain the centre
  EXPECT_EQ(zp.to_vector<float>(), (std::vector<float>{9, 9, 9, 9}));
  kiln::sum(zp).backward();
  EXPECT_EQ(z.grad().to_vector<float>(), (std::vector<float>{0, 0, 0, 0, 4, 0, 0, 0, 0}));

  // Constant input: every window ties, the gradient goes to each window's top-left element.
  Tensor c = Tensor::full({1, 1, 4, 6}, 1.5f, dev());
  c.set_requires_grad(true);
  Tensor cp = kiln::max_pool2d(c, pool(2, 2));
  kiln::sum(cp).backward();
  std::vector<float> cg = c.grad().to_vector<float>();
  for (i64 h = 0; h < 4; ++h)
    for (i64 w = 0; w < 6; ++w)
      EXPECT_EQ(cg[h * 6 + w], (h % 2 == 0 && w % 2 == 0) ? 1.0f : 0.0f) << "at " << h << ", " << w;
}

TEST_P(CnnOpsTest, MaxPoolErrors) {
  Tensor x = Tensor::zeros({1, 2, 6, 6}, DType::Float32, dev());
  EXPECT_THROW(kiln::max_pool2d(Tensor::zeros({2, 6, 6}, DType::Float32, dev()), pool(2, 2)), kiln::Error) << "3-D";
  EXPECT_THROW(kiln::max_pool2d(Tensor::zeros({1, 2, 6, 6}, DType::Int32, dev()), pool(2, 2)), kiln::Error) << "int32";
  EXPECT_THROW(kiln::max_pool2d(Tensor(), pool(2, 2)), kiln::Error) << "undefined";
  EXPECT_THROW(kiln::max_pool2d(x, pool(0, 1)), kiln::Error) << "kernel 0";
  EXPECT_THROW(kiln::max_pool2d(x, pool(2, 0)), kiln::Error) << "stride 0";
  EXPECT_THROW(kiln::max_pool2d(x, pool(2, 2, 2)), kiln::Error) << "padding above kernel / 2";
  EXPECT_THROW(kiln::max_pool2d(x, pool(2, 2, -1)), kiln::Error) << "negative padding";
  EXPECT_THROW(kiln::max_pool2d(x, pool(7, 1)), kiln::Error) << "window larger than the input";
  EXPECT_THROW(kiln::max_pool2d(x, pool(7, 2)), kiln::Error) << "window larger than the input (the truncating "
                                                               "output-size formula gives 1)";
}

// ---- adaptive average pooling ----------------------------------------------------------------------

TEST_P(CnnOpsTest, AdaptiveAvgPool) {
  check_op(adaptive_case("", randn_cpu({2, 3, 7, 9}, 30), 3, 4), dev());   // uneven, overlapping cells
  check_op(adaptive_case("", randn_cpu({2, 2, 6, 6}, 31), 6, 6), dev());   // identity
  check_op(adaptive_case("", randn_cpu({2, 2, 8, 8}, 32), 4, 4), dev());   // plain 2x2 average
  check_op(adaptive_case("", randn_cpu({2, 3, 8, 5}, 33), 1, 1), dev());   // global average
  check_op(adaptive_case("", randn_cpu({1, 2, 3, 4}, 34), 7, 5), dev());   // upsampling on both axes
  check_op(adaptive_case("", randn_cpu({1, 2, 1, 1}, 35), 3, 2), dev());   // one pixel to many
  check_op(adaptive_case("", randn_cpu({1, 1, 31, 17}, 36), 5, 3), dev());
}

TEST_P(CnnOpsTest, AdaptiveAvgPoolAlexNetShapes) {
  // AlexNet's classifier input: 6x6 from 13x13 (224 inputs) and from 5x5 (small inputs: upsampling)
  check_op(adaptive_case("AlexNet", randn_cpu({2, 16, 13, 13}, 40), 6, 6), dev());
  check_op(adaptive_case("AlexNet", randn_cpu({2, 16, 5, 5}, 41), 6, 6), dev());
  check_op(adaptive_case("AlexNet small", randn_cpu({1, 2, 13, 13}, 42), 6, 6), dev());  // with central differences
  check_op(adaptive_case("AlexNet small", randn_cpu({1, 3, 5, 5}, 43), 6, 6), dev());
  // 5 -> 6: cells [0,1) [0,2) [1,3) [2,4) [3,5) [4,5): each inner row is covered twice
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5}, {1, 1, 1, 5}, dev());
  EXPECT_EQ(kiln::adaptive_avg_pool2d(x, 1, 6).to_vector<float>(), (std::vector<float>{1, 1.5f, 2.5f, 3.5f, 4.5f, 5}));
}

TEST_P(CnnOpsTest, AdaptiveAvgPoolErrors) {
  Tensor x = Tensor::zeros({1, 2, 6, 6}, DType::Float32, dev());
  EXPECT_THROW(kiln::adaptive_avg_pool2d(x, 0, 3), kiln::Error);
  EXPECT_THROW(kiln::adaptive_avg_pool2d(x, 3, -1), kiln::Error);
  EXPECT_THROW(kiln::adaptive_avg_pool2d(Tensor::zeros({6, 6}, DType::Float32, dev()), 3, 3), kiln::Error);
  EXPECT_THROW(kiln::adaptive_avg_pool2d(Tensor::zeros({1, 2, 6, 6}, DType::Int64, dev()), 3, 3), kiln::Error);
}

// ---- local response norm ------------------------------------------------------------------------------

TEST_P(CnnOpsTest, Lrn) {
  // strong alpha so the cross-channel term of the gradient matters
  check_op(lrn_case("", randn_cpu({2, 7, 3, 4}, 50, 2.0f), {5, 0.5, 0.75, 1.0}), dev());
  check_op(lrn_case("even size", randn_cpu({2, 6, 3, 3}, 51, 2.0f), {4, 0.8, 0.6, 1.5}), dev());  // asymmetric window
  check_op(lrn_case("size 1", randn_cpu({1, 5, 4, 4}, 52, 2.0f), {1, 0.3, 0.75, 1.0}), dev());
  check_op(lrn_case("window wider than C", randn_cpu({2, 3, 2, 5}, 53, 2.0f), {9, 0.9, 1.0, 0.5}), dev());
  check_op(lrn_case("", randn_cpu({3, 16, 9, 11}, 54, 3.0f), {5, 0.2, 0.75, 2.0}), dev());
}

TEST_P(CnnOpsTest, LrnAlexNetShapes) {
  const LrnCfg alexnet{5, 1e-4, 0.75, 2.0};  // AlexNet (2012): size 5, alpha 1e-4, beta 0.75, k 2
  // conv1 activations are large (ReLU outputs in the tens to hundreds), so the x^2 term matters
  check_op(lrn_case("AlexNet", rand_cpu({1, 96, 55, 55}, 60, 0.0f, 100.0f), alexnet), dev());
  check_op(lrn_case("AlexNet", rand_cpu({2, 256, 13, 13}, 61, 0.0f, 100.0f), alexnet), dev());
  check_op(lrn_case("AlexNet small", randn_cpu({1, 7, 3, 3}, 62, 50.0f), alexnet), dev());  // with central differences
  Tensor z = Tensor::zeros({2, 96, 5, 5}, DType::Float32, dev());
  EXPECT_EQ(kiln::local_response_norm(z, 5, 1e-4f, 0.75f, 2.0f).shape(), (Shape{2, 96, 5, 5}));
}

TEST_P(CnnOpsTest, LrnErrors) {
  Tensor x = Tensor::zeros({1, 4, 3, 3}, DType::Float32, dev());
  EXPECT_THROW(kiln::local_response_norm(x, 0), kiln::Error) << "size 0";
  EXPECT_THROW(kiln::local_response_norm(x, 5, 1e-4f, 0.75f, 0.0f), kiln::Error) << "k = 0";
  EXPECT_THROW(kiln::local_response_norm(x, 5, -1e-4f), kiln::Error) << "negative alpha";
  EXPECT_THROW(kiln::local_response_norm(x, 5, 1e-4f, -0.5f), kiln::Error) << "negative beta";
  EXPECT_THROW(kiln::local_response_norm(Tensor::zeros({4, 3, 3}, DType::Float32, dev()), 5), kiln::Error) << "3-D";
}

// ---- dropout -----------------------------------------------------------------------------------------

TEST_P(CnnOpsTest, Dropout) {
  check_op(dropout_case(randn_cpu({3, 5, 7}, 70), 0.4f, 71), dev());
  check_op(dropout_case(randn_cpu({2, 4, 6, 6}, 72), 0.5f, 73), dev());
  check_op(dropout_case(randn_cpu({64, 1000}, 74), 0.1f, 75), dev());
  check_op(dropout_case(randn_cpu({1000, 37}, 76), 0.9f, 77), dev());
}

// Every element exactly: kept iff uniform(seed, offset + i) >= p, kept values x * fl(1 / (1 - p))
// bit for bit (and within one rounding of x / (1 - p)); the keep rate on 2^20 elements is within
// 6 standard deviations of 1 - p; the backward reuses the same mask and scale.
TEST_P(CnnOpsTest, DropoutMaskStatisticsAndScaling) {
  const i64 n = 1 << 20;
  const Tensor x_cpu = rand_cpu({n}, 80, 1.0f, 2.0f);  // never 0: a zero output means dropped
  const std::vector<float> xv = x_cpu.to_vector<float>();
  for (float p : {0.5f, 0.3f}) {
    kiln::Generator gen(81);
    gen.advance(12345);  // a non-zero starting offset
    const std::uint64_t offset = gen.offset();
    Tensor x = fresh_on(x_cpu, dev());
    x.set_requires_grad(true);
    Tensor y = kiln::dropout(x, p, gen, true);
    EXPECT_EQ(gen.offset(), offset + static_cast<std::uint64_t>(n)) << "dropout must consume numel counters";
    const std::vector<float> yv = y.to_vector<float>();
    const float s = dropout_scale(p);
    i64 kept_count = 0, wrong = 0, first_wrong = -1, inexact = 0;
    for (i64 i = 0; i < n; ++i) {
      const bool k = kept(81, offset + static_cast<std::uint64_t>(i), p);
      kept_count += k;
      const float expect = k ? xv[i] * s : 0.0f;
      if (yv[i] != expect) {
        ++wrong;
        if (first_wrong < 0) first_wrong = i;
      }
      const double exact = xv[i] / (1.0 - p);
      if (k && std::fabs(yv[i] - exact) > kElementwiseRtol * exact) ++inexact;
    }
    EXPECT_EQ(wrong, 0) << "p=" << p << ": first mismatch at " << first_wrong;
    EXPECT_EQ(inexact, 0) << "p=" << p << ": kept values further than two roundings from x / (1 - p)";
    const double rate = static_cast<double>(kept_count) / n, sd = std::sqrt(p * (1.0 - p) / n);
    EXPECT_NEAR(rate, 1.0 - p, 6 * sd) << "p=" << p;
    if (p == 0.5f) {
      EXPECT_EQ(s, 2.0f);
    }
    // backward: the same mask and scale, applied to the incoming gradient
    const Tensor r_cpu = randn_cpu({n}, 82);
    kiln::sum(kiln::mul(y, r_cpu.to(dev()))).backward();
    const std::vector<float> gv = x.grad().to_vector<float>(), rv = r_cpu.to_vector<float>();
    wrong = 0;
    for (i64 i = 0; i < n; ++i)
      wrong += gv[i] != (kept(81, offset + static_cast<std::uint64_t>(i), p) ? rv[i] * s : 0.0f);
    EXPECT_EQ(wrong, 0) << "p=" << p << ": gradient elements differing from mask * r / (1 - p)";
  }
}

// Same Generator seed on the CPU and the device: bit-identical outputs (hence masks), also for a
// second draw from the same generator (offset advanced) and for odd sizes.
TEST_P(CnnOpsTest, DropoutSameMaskOnEveryDevice) {
  for (i64 n : {1, 7, 1000, 4099, 300001}) {
    const Tensor x = randn_cpu({n}, 90);
    kiln::Generator g_dev(91), g_cpu(91);
    for (int draw = 0; draw < 2; ++draw) {
      const std::vector<float> a = kiln::dropout(x.to(dev()), 0.35f, g_dev, true).to_vector<float>();
      const std::vector<float> b = kiln::dropout(x, 0.35f, g_cpu, true).to_vector<float>();
      i64 diff = 0;
      for (std::size_t i = 0; i < a.size(); ++i) diff += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
      EXPECT_EQ(diff, 0) << "n=" << n << " draw " << draw << ": " << dev().str() << " vs cpu";
    }
    EXPECT_EQ(g_dev.offset(), g_cpu.offset());
    EXPECT_EQ(g_dev.offset(), 2 * static_cast<std::uint64_t>(n));
  }
  // two draws from one generator differ
  kiln::Generator gen(92);
  const Tensor ones = Tensor::ones({4096}, dev());
  const std::vector<float> first = kiln::dropout(ones, 0.5f, gen, true).to_vector<float>();
  EXPECT_NE(first, kiln::dropout(ones, 0.5f, gen, true).to_vector<float>());
}

TEST_P(CnnOpsTest, DropoutIdentityInEvalModeAndAtZero) {
  Tensor x = randn_cpu({4, 33}, 100).to(dev());
  kiln::Generator gen(101);
  Tensor e = kiln::dropout(x, 0.5f, gen, false);
  EXPECT_EQ(e.to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(gen.offset(), 0u) << "eval mode must not consume random numbers";
  Tensor z = kiln::dropout(x, 0.0f, gen, true);
  EXPECT_EQ(z.to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(gen.offset(), 0u);
  // gradients pass straight through
  Tensor xl = x.clone();
  xl.set_requires_grad(true);
  kiln::sum(kiln::dropout(xl, 0.7f, gen, false)).backward();
  EXPECT_EQ(xl.grad().to_vector<float>(), std::vector<float>(4 * 33, 1.0f));
}

TEST_P(CnnOpsTest, DropoutErrors) {
  kiln::Generator gen(110);
  Tensor x = Tensor::zeros({4, 4}, DType::Float32, dev());
  EXPECT_THROW(kiln::dropout(x, 1.0f, gen, true), kiln::Error) << "p = 1";
  EXPECT_THROW(kiln::dropout(x, -0.1f, gen, true), kiln::Error) << "p < 0";
  EXPECT_THROW(kiln::dropout(x, std::numeric_limits<float>::quiet_NaN(), gen, true), kiln::Error) << "p NaN";
  EXPECT_THROW(kiln::dropout(Tensor::zeros({4, 4}, DType::Int32, dev()), 0.5f, gen, true), kiln::Error) << "int32";
  EXPECT_THROW(kiln::dropout(Tensor(), 0.5f, gen, true), kiln::Error) << "undefined";
}

// ---- bilinear resize ------------------------------------------------------------------------------

TEST_P(CnnOpsTest, Resize) {
  check_op(resize_case(randn_cpu({2, 1, 28, 28}, 120), 224, 224), dev());  // MNIST -> AlexNet input
  check_op(resize_case(randn_cpu({1, 2, 5, 5}, 121), 3, 3), dev());        // downsampling
  check_op(resize_case(randn_cpu({2, 3, 7, 5}, 122), 4, 9), dev());        // mixed
  check_op(resize_case(randn_cpu({1, 1, 1, 1}, 123), 3, 4), dev());        // one pixel: constant
  check_op(resize_case(randn_cpu({1, 2, 4, 4}, 124), 1, 1), dev());
  check_op(resize_case(randn_cpu({1, 1, 9, 13}, 125), 9, 13), dev());      // same size: unchanged
  check_op(resize_case(rand_cpu({3, 3, 17, 23}, 126, 0.0f, 255.0f), 32, 11), dev());
}

// Known values of torch.nn.functional.interpolate(x, size=4, mode='bilinear', align_corners=False)
// for x = [[1, 2], [3, 4]].
TEST_P(CnnOpsTest, ResizeMatchesPyTorch) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {1, 1, 2, 2}, dev());
  const std::vector<float> expect = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                                     2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  EXPECT_EQ(kiln::resize_bilinear(x, 4, 4).to_vector<float>(), expect);
  // a constant image stays constant, at any size
  Tensor c = Tensor::full({2, 3, 28, 28}, 0.375f, dev());
  for (float v : kiln::resize_bilinear(c, 224, 224).to_vector<float>()) ASSERT_EQ(v, 0.375f);
  for (float v : kiln::resize_bilinear(c, 5, 3).to_vector<float>()) ASSERT_EQ(v, 0.375f);
}

TEST_P(CnnOpsTest, ResizeErrors) {
  Tensor x = Tensor::zeros({1, 1, 4, 4}, DType::Float32, dev());
  EXPECT_THROW(kiln::resize_bilinear(x, 0, 4), kiln::Error);
  EXPECT_THROW(kiln::resize_bilinear(x, 4, -2), kiln::Error);
  EXPECT_THROW(kiln::resize_bilinear(Tensor::zeros({4, 4}, DType::Float32, dev()), 8, 8), kiln::Error);
  EXPECT_THROW(kiln::resize_bilinear(Tensor::zeros({1, 1, 4, 4}, DType::UInt8, dev()), 8, 8), kiln::Error);
  Tensor g = x.clone();
  g.set_requires_grad(true);
  EXPECT_THROW(kiln::resize_bilinear(g, 8, 8), kiln::Error) << "not differentiable";
}

KILN_INSTANTIATE_DEVICES(CnnOpsTest);

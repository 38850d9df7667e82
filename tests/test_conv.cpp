// 2-D convolution through the public kiln::conv2d. Every case runs through kt::check_op: forward
// vs a direct double-precision convolution (the 7 nested loops), backward (dx, dW, db) vs a double
// vjp and central differences, pre-filled gradients, and on the gpu instance cuDNN vs the CPU
// im2col + GEMM twins on the same inputs. Cases cover stride, padding, dilation, groups (depthwise
// included), non-square kernels and strides, AlexNet's 11x11 / stride 4 / pad 2 first layer, 1x1
// kernels, batch chunking of the CPU twins, and the argument errors of the public op.
#include <atomic>
#include <cmath>
#include <cstddef>
#include <string>

#include "test_util.h"

// The CPU twins' scratch limit (src/cpu/conv.cpp): shrunk by one test to force batch chunking.
namespace kiln::cpu::detail {
extern std::atomic<std::size_t> conv_scratch_limit;
}  // namespace kiln::cpu::detail

using namespace kt;
using kiln::Conv2dParams;
using kiln::Shape;
using kiln::shape_str;

namespace {

using i64 = std::int64_t;
using Ins = std::vector<Tensor>;
using X = std::vector<DVec>;

struct Spec {
  i64 N, C, H, W;  // input
  i64 K, R, S;     // filter [K, C / groups, R, S]
  Conv2dParams p;
  bool bias = true;
  bool ints = false;  // small-integer inputs: every float32 sum is exact
};

Conv2dParams params(i64 sh, i64 sw, i64 ph, i64 pw, i64 dh = 1, i64 dw = 1, i64 groups = 1) {
  Conv2dParams p;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw, p.dilation_h = dh, p.dilation_w = dw;
  p.groups = groups;
  return p;
}

i64 out_h(const Spec& s) { return Conv2dParams::out_size(s.H, s.R, s.p.stride_h, s.p.pad_h, s.p.dilation_h); }
i64 out_w(const Spec& s) { return Conv2dParams::out_size(s.W, s.S, s.p.stride_w, s.p.pad_w, s.p.dilation_w); }

// Visits every term x[n, c, h, w] * w[k, c - g*Cg, r, s] of the convolution (inside the input)
// with the flat indices of x, w and y: the one definition both the reference and its vjp use.
template <class F>
void for_each_term(const Spec& s, F&& f) {
  const i64 G = s.p.groups, Cg = s.C / G, Kg = s.K / G, P = out_h(s), Q = out_w(s);
  for (i64 n = 0; n < s.N; ++n)
    for (i64 k = 0; k < s.K; ++k)
      for (i64 p = 0; p < P; ++p)
        for (i64 q = 0; q < Q; ++q) {
          const i64 yi = ((n * s.K + k) * P + p) * Q + q;
          for (i64 c = 0; c < Cg; ++c)
            for (i64 r = 0; r < s.R; ++r) {
              const i64 h = p * s.p.stride_h - s.p.pad_h + r * s.p.dilation_h;
              if (h < 0 || h >= s.H) continue;
              for (i64 t = 0; t < s.S; ++t) {
                const i64 w = q * s.p.stride_w - s.p.pad_w + t * s.p.dilation_w;
                if (w < 0 || w >= s.W) continue;
                const i64 xi = ((n * s.C + (k / Kg) * Cg + c) * s.H + h) * s.W + w;
                const i64 wi = ((k * Cg + c) * s.R + r) * s.S + t;
                f(xi, wi, yi);
              }
            }
        }
}

// y = conv(x, w) + b in double; scale = sum of |terms| (the magnitude float32 error scales with).
Ref ref_conv(const Spec& s, const X& in) {
  const i64 P = out_h(s), Q = out_w(s), n_out = s.N * s.K * P * Q;
  Ref r{{s.N, s.K, P, Q}, DVec(n_out, 0.0), DVec(n_out, 0.0)};
  for_each_term(s, [&](i64 xi, i64 wi, i64 yi) {
    const double t = in[0][xi] * in[1][wi];
    r.v[yi] += t;
    r.scale[yi] += std::fabs(t);
  });
  if (s.bias)
    for (i64 i = 0; i < n_out; ++i) {
      const double b = in[2][(i / (P * Q)) % s.K];
      r.v[i] += b;
      r.scale[i] += std::fabs(b);
    }
  return r;
}

// d sum(y * R) / d (x, w, b) in double, by scattering every term.
std::vector<Ref> vjp_conv(const Spec& s, const X& in, const DVec& rr) {
  const i64 P = out_h(s), Q = out_w(s);
  Ref dx{{s.N, s.C, s.H, s.W}, DVec(in[0].size(), 0.0), DVec(in[0].size(), 0.0)};
  Ref dw{{s.K, s.C / s.p.groups, s.R, s.S}, DVec(in[1].size(), 0.0), DVec(in[1].size(), 0.0)};
  for_each_term(s, [&](i64 xi, i64 wi, i64 yi) {
    const double tx = in[1][wi] * rr[yi], tw = in[0][xi] * rr[yi];
    dx.v[xi] += tx;
    dx.scale[xi] += std::fabs(tx);
    dw.v[wi] += tw;
    dw.scale[wi] += std::fabs(tw);
  });
  std::vector<Ref> g{dx, dw};
  if (s.bias) {
    Ref db{{s.K}, DVec(s.K, 0.0), DVec(s.K, 0.0)};
    for (std::size_t i = 0; i < rr.size(); ++i) {
      const i64 k = (static_cast<i64>(i) / (P * Q)) % s.K;
      db.v[k] += rr[i];
      db.scale[k] += std::fabs(rr[i]);
    }
    g.push_back(db);
  }
  return g;
}

std::string spec_name(const Spec& s) {
  const auto& p = s.p;
  return "conv2d x" + shape_str({s.N, s.C, s.H, s.W}) + " w" + shape_str({s.K, s.C / p.groups, s.R, s.S}) +
         " stride " + std::to_string(p.stride_h) + "x" + std::to_string(p.stride_w) + " pad " +
         std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w) + " dil " + std::to_string(p.dilation_h) + "x" +
         std::to_string(p.dilation_w) + " groups " + std::to_string(p.groups) + (s.bias ? " +bias" : "") +
         (s.ints ? " (integers)" : "");
}

// exact: integer inputs compared exactly (the CPU twins sum small integers without rounding; cuDNN
// may pick FFT or Winograd algorithms, which do not, so the gpu instance keeps the float budget).
OpCase conv_case(const Spec& s, std::uint64_t seed, bool exact = false) {
  OpCase c;
  c.name = spec_name(s);
  const Shape xs{s.N, s.C, s.H, s.W}, ws{s.K, s.C / s.p.groups, s.R, s.S};
  auto gen = [&](const Shape& sh, std::uint64_t sd) { return s.ints ? small_ints_cpu(sh, sd) : randn_cpu(sh, sd); };
  c.inputs = {gen(xs, seed), gen(ws, seed + 1)};
  if (s.bias) c.inputs.push_back(gen({s.K}, seed + 2));
  c.wrt = {true, true, true};
  const Conv2dParams p = s.p;
  const bool bias = s.bias;
  c.op = [p, bias](const Ins& in) { return kiln::conv2d(in[0], in[1], bias ? in[2] : Tensor(), p); };
  c.ref = [s](const X& in) { return ref_conv(s, in); };
  c.vjp = [s](const X& in, const DVec& r) { return vjp_conv(s, in, r); };
  // Forward: each output sums C/groups*R*S products (+ bias). dx sums over the K/groups*R*S
  // (k, r, s) taps reaching an input element; dW and db sum over N*P*Q output pixels.
  const i64 Cg = s.C / p.groups, Kg = s.K / p.groups, P = out_h(s), Q = out_w(s);
  c.fwd_rtol = exact ? 0.0 : reduction_rtol(Cg * s.R * s.S + 1);
  c.grad_rtol = exact ? 0.0 : reduction_rtol(std::max(Kg * s.R * s.S, s.N * P * Q));
  c.integer_r = s.ints;
  // Central differences evaluate the direct reference twice per input element: keep them to
  // small cases (the vjp they validate is the same code for the larger ones).
  const double terms = static_cast<double>(s.N * s.K * P * Q * Cg * s.R * s.S);
  const double elems = static_cast<double>(kiln::shape_numel(xs) + kiln::shape_numel(ws) + s.K);
  c.numeric = 2.0 * elems * terms <= 3e7;
  c.seed = seed + 29;
  return c;
}

// Restores the CPU twins' scratch limit when it goes out of scope.
class ScratchLimit {
 public:
  explicit ScratchLimit(std::size_t bytes) : saved_(kiln::cpu::detail::conv_scratch_limit.exchange(bytes)) {}
  ~ScratchLimit() { kiln::cpu::detail::conv_scratch_limit.store(saved_); }
  ScratchLimit(const ScratchLimit&) = delete;
  ScratchLimit& operator=(const ScratchLimit&) = delete;

 private:
  std::size_t saved_;
};

}  // namespace

class ConvTest : public DeviceTest {};

TEST_P(ConvTest, Plain3x3) {
  check_op(conv_case({1, 3, 7, 7, 4, 3, 3, params(1, 1, 0, 0), false}, 100), dev());
  check_op(conv_case({3, 2, 6, 5, 3, 3, 3, params(1, 1, 1, 1)}, 110), dev());
}

TEST_P(ConvTest, StrideAndPadding) {
  check_op(conv_case({3, 2, 9, 8, 3, 3, 3, params(2, 2, 0, 0)}, 200), dev());
  check_op(conv_case({2, 3, 10, 11, 4, 3, 3, params(2, 2, 1, 1)}, 210), dev());
  check_op(conv_case({1, 2, 13, 13, 3, 5, 5, params(4, 4, 2, 2)}, 220), dev());
  check_op(conv_case({2, 2, 7, 9, 2, 4, 4, params(4, 4, 0, 2), false}, 230), dev());
}

TEST_P(ConvTest, Dilation) {
  check_op(conv_case({2, 2, 9, 10, 3, 3, 3, params(1, 1, 2, 2, 2, 2)}, 300), dev());
  check_op(conv_case({1, 3, 11, 8, 2, 3, 2, params(2, 1, 1, 0, 2, 3)}, 310), dev());
}

TEST_P(ConvTest, Groups) {
  check_op(conv_case({3, 4, 7, 6, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 2)}, 400), dev());
  check_op(conv_case({2, 8, 6, 7, 4, 3, 3, params(2, 1, 1, 1, 1, 1, 4)}, 410), dev());
  check_op(conv_case({1, 4, 9, 9, 8, 3, 3, params(2, 2, 0, 0, 2, 2, 2), false}, 420), dev());
}

TEST_P(ConvTest, Depthwise) {
  check_op(conv_case({2, 5, 8, 8, 5, 3, 3, params(1, 1, 1, 1, 1, 1, 5)}, 500), dev());      // multiplier 1
  check_op(conv_case({2, 3, 9, 7, 6, 3, 3, params(2, 2, 1, 1, 1, 1, 3), false}, 510), dev());  // multiplier 2
}

TEST_P(ConvTest, NonSquareKernelsAndStrides) {
  check_op(conv_case({2, 3, 7, 9, 4, 3, 5, params(2, 1, 1, 2)}, 600), dev());
  check_op(conv_case({1, 2, 5, 11, 3, 1, 3, params(1, 3, 0, 1)}, 610), dev());
  check_op(conv_case({3, 2, 9, 6, 2, 5, 2, params(1, 2, 2, 0, 1, 2), false}, 620), dev());
}

TEST_P(ConvTest, AlexNetFirstLayer) {
  // 11x11, stride 4, pad 2 (AlexNet conv1) on a small image: 35 -> 8.
  check_op(conv_case({2, 3, 35, 35, 8, 11, 11, params(4, 4, 2, 2)}, 700), dev());
  // the same geometry small enough for the central-difference check
  check_op(conv_case({1, 1, 19, 19, 2, 11, 11, params(4, 4, 2, 2)}, 710), dev());
}

TEST_P(ConvTest, OneByOne) {
  // stride 1, no padding: the CPU twins skip im2col
  check_op(conv_case({3, 5, 6, 5, 7, 1, 1, params(1, 1, 0, 0)}, 800), dev());
  check_op(conv_case({2, 4, 5, 3, 6, 1, 1, params(1, 1, 0, 0, 1, 1, 2), false}, 810), dev());
  // strided or padded 1x1 goes through im2col
  check_op(conv_case({2, 3, 7, 6, 4, 1, 1, params(2, 2, 1, 0)}, 820), dev());
}

TEST_P(ConvTest, KernelCoversPaddedInput) {
  check_op(conv_case({2, 2, 5, 4, 3, 7, 6, params(1, 1, 1, 1)}, 900), dev());  // P = Q = 1
  check_op(conv_case({1, 2, 3, 3, 2, 5, 5, params(2, 2, 2, 2)}, 910), dev());  // kernel larger than the input
}

TEST_P(ConvTest, IntegersExactOnCpu) {
  // Small-integer data: every sum is exact in float32, so the CPU twins must match exactly.
  const bool exact = !on_gpu();
  check_op(conv_case({3, 4, 8, 7, 6, 3, 3, params(2, 1, 1, 1, 1, 1, 2), true, true}, 1000, exact), dev());
  check_op(conv_case({2, 3, 9, 9, 4, 3, 3, params(1, 1, 2, 2, 2, 2), true, true}, 1010, exact), dev());
}

TEST_P(ConvTest, CpuBatchChunking) {
  // Scratch for about two images: the CPU twins split a batch of 5 into chunks (2, 2, 1). On the gpu
  // instance the CPU reference run of check_op is chunked too.
  const Spec s{5, 4, 7, 6, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 2)};
  const i64 per_image = ((s.C / 2) * 9 + s.K / 2) * out_h(s) * out_w(s) * 4;
  ScratchLimit limit(static_cast<std::size_t>(2 * per_image + 16));
  check_op(conv_case(s, 1100), dev());
  check_op(conv_case({5, 3, 6, 6, 4, 3, 3, params(2, 2, 1, 1), true, true}, 1110, !on_gpu()), dev());
}

// Two identical runs: bit-identical on the CPU. cuDNN's forward algorithms are deterministic too;
// its backward ALGO_0s accumulate with atomics, so on a GPU the gradients of the two runs need only
// agree to within a sum's rounding (the emulated cuDNN's non-deterministic algorithm reorders them).
TEST_P(ConvTest, RepeatableRuns) {
  const Tensor x0 = randn_cpu({3, 4, 9, 9}, 1200), w0 = randn_cpu({6, 2, 3, 3}, 1201),
               r = randn_cpu({3, 6, 5, 5}, 1202);
  const Conv2dParams p = params(2, 2, 1, 1, 1, 1, 2);
  std::vector<Tensor> ys, dxs, dws;
  for (int i = 0; i < 2; ++i) {
    Tensor x = fresh_on(x0, dev()).set_requires_grad(true), w = fresh_on(w0, dev()).set_requires_grad(true);
    Tensor y = kiln::conv2d(x, w, Tensor(), p);
    kiln::sum(kiln::mul(y, fresh_on(r, dev()))).backward();
    ys.push_back(y.to(Device::cpu()));
    dxs.push_back(x.grad().to(Device::cpu()));
    dws.push_back(w.grad().to(Device::cpu()));
  }
  EXPECT_EQ(ys[0].to_vector<float>(), ys[1].to_vector<float>()) << "two identical conv2d forward runs differ";
  if (!on_gpu()) {
    EXPECT_EQ(dxs[0].to_vector<float>(), dxs[1].to_vector<float>()) << "dx of two identical runs differs";
    EXPECT_EQ(dws[0].to_vector<float>(), dws[1].to_vector<float>()) << "dw of two identical runs differs";
    return;
  }
  const double rtol = reduction_rtol(3 * 5 * 5 * 9);  // the longest sum: dw over N * P * Q terms of 9 taps
  expect_close(dxs[1], dxs[0], rtol, rtol, "dx of a second identical run");
  expect_close(dws[1], dws[0], rtol, rtol, "dw of a second identical run");
}

TEST_P(ConvTest, ShapesInterleaved) {
  // Alternating shapes reuse each shape's cached algorithm (cuDNN) on new buffers: results must
  // still match a fresh CPU computation every time.
  const Spec a{2, 3, 8, 8, 4, 3, 3, params(1, 1, 1, 1)}, b{1, 4, 9, 7, 4, 5, 3, params(2, 1, 2, 1, 1, 1, 2)};
  for (int round = 0; round < 2; ++round)
    for (const Spec* s : {&a, &b}) {
      const std::uint64_t seed = 1300 + 10 * static_cast<std::uint64_t>(round) + (s == &b ? 5 : 0);
      const Tensor x = randn_cpu({s->N, s->C, s->H, s->W}, seed);
      const Tensor w = randn_cpu({s->K, s->C / s->p.groups, s->R, s->S}, seed + 1);
      const Tensor bias = randn_cpu({s->K}, seed + 2);
      const Tensor y = kiln::conv2d(fresh_on(x, dev()), fresh_on(w, dev()), fresh_on(bias, dev()), s->p);
      const Ref ref = ref_conv(*s, {to_doubles(x), to_doubles(w), to_doubles(bias)});
      expect_close(y, ref, reduction_rtol(s->C / s->p.groups * s->R * s->S + 1), 0.0,
                   spec_name(*s) + " round " + std::to_string(round));
    }
}

KILN_INSTANTIATE_DEVICES(ConvTest);

// ---- argument errors --------------------------------------------------------------------------------


class ConvErrorsTest : public DeviceTest {
 protected:
  Tensor z(const Shape& s) { return Tensor::zeros(s, DType::Float32, dev()); }
};

TEST_P(ConvErrorsTest, ChannelMismatch) {
  expect_error_naming([&] { kiln::conv2d(z({1, 3, 8, 8}), z({4, 2, 3, 3}), Tensor()); }, {"[1, 3, 8, 8]", "[4, 2, 3, 3]"},
                      "input channels vs weight");
}

TEST_P(ConvErrorsTest, GroupsMustDivideChannels) {
  expect_error_naming([&] { kiln::conv2d(z({1, 6, 8, 8}), z({4, 1, 3, 3}), Tensor(), params(1, 1, 0, 0, 1, 1, 4)); },
                      {"[1, 6, 8, 8]", "[4, 1, 3, 3]"}, "groups not dividing C");
  expect_error_naming([&] { kiln::conv2d(z({1, 4, 8, 8}), z({6, 1, 3, 3}), Tensor(), params(1, 1, 0, 0, 1, 1, 4)); },
                      {"[1, 4, 8, 8]", "[6, 1, 3, 3]"}, "groups not dividing K");
  EXPECT_THROW(kiln::conv2d(z({1, 4, 8, 8}), z({4, 4, 3, 3}), Tensor(), params(1, 1, 0, 0, 1, 1, 0)), kiln::Error)
      << "groups = 0";
}

TEST_P(ConvErrorsTest, KernelLargerThanPaddedInput) {
  expect_error_naming([&] { kiln::conv2d(z({1, 1, 4, 4}), z({1, 1, 7, 7}), Tensor(), params(1, 1, 1, 1)); },
                      {"[1, 1, 4, 4]", "7x7"}, "7x7 kernel on a 4x4 input padded by 1");
  expect_error_naming([&] { kiln::conv2d(z({1, 1, 9, 9}), z({1, 1, 3, 3}), Tensor(), params(1, 1, 0, 0, 5, 5)); },
                      {"[1, 1, 9, 9]", "3x3"}, "dilated kernel spanning 11 on a 9x9 input");
  // With stride 2, (H + 2 pad - span) / stride truncates -1/2 to 0: the output size formula alone
  // would give one output row for a kernel that does not fit.
  expect_error_naming([&] { kiln::conv2d(z({1, 1, 4, 4}), z({1, 1, 5, 5}), Tensor(), params(2, 2, 0, 0)); },
                      {"[1, 1, 4, 4]", "5x5"}, "5x5 kernel, stride 2, on a 4x4 input");
}

TEST_P(ConvErrorsTest, BadArguments) {
  expect_error_naming([&] { kiln::conv2d(z({1, 3, 8, 8}), z({4, 3, 3, 3}), z({5})); }, {"[5]"}, "bias size");
  EXPECT_THROW(kiln::conv2d(z({3, 8, 8}), z({4, 3, 3, 3}), Tensor()), kiln::Error) << "3-D input";
  EXPECT_THROW(kiln::conv2d(z({1, 3, 8, 8}), z({4, 3, 3}), Tensor()), kiln::Error) << "3-D weight";
  EXPECT_THROW(kiln::conv2d(z({1, 3, 8, 8}), z({4, 3, 3, 3}), Tensor(), params(0, 1, 0, 0)), kiln::Error) << "stride 0";
  EXPECT_THROW(kiln::conv2d(z({1, 3, 8, 8}), z({4, 3, 3, 3}), Tensor(), params(1, 1, -1, 0)), kiln::Error) << "pad < 0";
  EXPECT_THROW(kiln::conv2d(Tensor(), z({4, 3, 3, 3}), Tensor()), kiln::Error) << "undefined input";
}

KILN_INSTANTIATE_DEVICES(ConvErrorsTest);

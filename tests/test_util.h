// The kiln test harness: device parametrisation, precision-derived tolerances, a tolerance
// compare that reports the worst element, double-precision references and a reusable
// finite-difference gradient checker, plus `check_op`, which runs one op case through all of
// them on a given device.
//
// Every op test body is written once and instantiated on Device::cpu() ("cpu") and
// Device::cuda(0) ("gpu"). The gpu instance skips with the reason when no CUDA device is usable;
// when one is, it checks the device result against the double reference AND against the same op
// run on the CPU on the same inputs. ctest labels: tests whose name contains "gpu" get the label
// `gpu`, all others `cpu` (tests/CMakeLists.txt), so CPU-only names must not contain "gpu".
#pragma once

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln {
// So gtest prints parameters as "cpu" / "cuda:0" instead of raw bytes.
inline void PrintTo(const Device& d, std::ostream* os) { *os << d.str(); }
}  // namespace kiln

namespace kt {

using kiln::Device;
using kiln::DType;
using kiln::Shape;
using kiln::Tensor;
using DVec = std::vector<double>;

// ---- device parametrisation -------------------------------------------------------------------

// True unless the GPU instances run on the emulated device (KILN_TEST_SIZE=full forces true).
bool full_size_tests();

class DeviceTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam().is_cuda() && !kiln::cuda_available())
      GTEST_SKIP() << "no CUDA device: " << kiln::cuda_unavailable_reason();
  }
  Device dev() const { return GetParam(); }
  bool on_gpu() const { return GetParam().is_cuda(); }
  // The size knob: the row count of the large cases (multi-block, long-row paths), 257 on the CPU
  // and on a GPU, 9 on the emulated device (KILN_CUDA=EMULATE), where each CUDA thread is a fiber on
  // the host and costs far more than on a GPU (bench/RESULTS.md).
  // The columns keep their size, so every kernel path is still taken. KILN_TEST_SIZE=full: 257 everywhere.
  std::int64_t many_rows() const { return full_size_tests() || !on_gpu() ? 257 : 9; }
};

// "cpu" / "gpu": the suffix the ctest labels select on.
std::string device_param_name(const ::testing::TestParamInfo<Device>& info);

#define KILN_INSTANTIATE_DEVICES(Suite)                                                              \
  INSTANTIATE_TEST_SUITE_P(Devices, Suite, ::testing::Values(::kiln::Device::cpu(), ::kiln::Device::cuda(0)), \
                           ::kt::device_param_name)
// For suites that only make sense on a GPU (allocator): one "gpu" instance.
#define KILN_INSTANTIATE_GPU_ONLY(Suite) \
  INSTANTIATE_TEST_SUITE_P(GpuOnly, Suite, ::testing::Values(::kiln::Device::cuda(0)), ::kt::device_param_name)

// ---- tolerances (all derived from float32 precision) --------------------------------------------
//
// kEps = FLT_EPSILON = 2^-23 = 2u, where u = 2^-24 is float32's unit roundoff. Budgets have the
// form |actual - expected| <= atol + rtol * scale, where `scale` is |expected| for ops that round
// once, and the sum of the absolute values of the terms for sums, dot products and GEMMs (the
// quantity classical error bounds are proportional to).
constexpr double kEps = FLT_EPSILON;

// One correctly rounded operation on exact inputs errs by at most u|e|; 4*kEps = 8u leaves room
// for an FMA versus separate multiply-add and for a compiler's contraction choices.
constexpr double kElementwiseRtol = 4 * kEps;

// Summation of K terms: the worst-case bound for recursive summation is (K-1)u * sum|terms|;
// rounding errors of random data add up like a random walk, O(sqrt(K) u), and blocked, pairwise
// or tree (GPU) orders do better still. 2*sqrt(K)*kEps = 4 sqrt(K) u is several standard
// deviations of the random-walk error, plus 4*kEps for the final operations (bias, scaling).
inline double reduction_rtol(std::int64_t k) { return (4.0 + 2.0 * std::sqrt(static_cast<double>(k))) * kEps; }

// log-sum-exp over a row of C: exp/log are accurate to a few ulp (2*kEps each here), the row sum
// is a reduction of C positive terms; the scale is |x_i| + |max| + |log sum|.
inline double lse_rtol(std::int64_t c) { return 8 * kEps + reduction_rtol(c); }

// Magnitudes below FLT_MIN (1.2e-38) lose relative precision in float32 and eventually flush to
// zero, while the double reference still resolves them (a softmax probability of exp(-300) is 0 in
// float32, 5e-131 in double). Every comparison allows this absolute slack, 8 * FLT_MIN ~ 1e-37.
constexpr double kUnderflowAtol = 8 * FLT_MIN;

// Central differences in double: with h = 1e-6 the truncation error is ~h^2 |f'''| ~ 1e-12 and
// the cancellation error ~ 1e-16 |L| / h ~ 1e-10 |L|, far below any float32 budget.
constexpr double kFiniteDiffStep = 1e-6;

// ---- conversions --------------------------------------------------------------------------------

// Elements of any float32 / int32 / int64 / uint8 tensor (copied to the host) as doubles.
DVec to_doubles(const Tensor& t);
std::string index_str(std::size_t flat, const Shape& shape);  // "[3, 17]"

// Random CPU tensors from their own generator (fresh inputs per test).
Tensor randn_cpu(const Shape& shape, std::uint64_t seed, float stddev = 1.0f, float mean = 0.0f);
Tensor rand_cpu(const Shape& shape, std::uint64_t seed, float lo = 0.0f, float hi = 1.0f);
// Small integer values in [lo, hi] as float32: sums and products of these are exact in float32,
// so reductions and GEMMs over them must give exact results on every code path.
Tensor small_ints_cpu(const Shape& shape, std::uint64_t seed, int lo = -3, int hi = 3);
// Labels in [0, classes) as int32 or int64.
Tensor labels_cpu(std::int64_t n, std::int64_t classes, DType dtype, std::uint64_t seed);
// A fresh copy of `t` on `device` (never an alias of t, also on the CPU).
Tensor fresh_on(const Tensor& t, Device device);

// Leaves NaN-filled blocks of the given sizes (in bytes) in the allocator's free lists (host and
// device caches both reuse freed blocks), so that an op output placed in one of them shows every
// element the op forgot to write: NaN never passes a comparison. Harmless without a cache.
void poison_allocator(Device device, const std::vector<std::size_t>& bytes, int copies = 2);

// ---- compare ------------------------------------------------------------------------------------

// A double-precision reference result: values, shape and the magnitude each element's float32
// error is proportional to (empty: |value|).
struct Ref {
  Shape shape;
  DVec v;
  DVec scale;
};

// Checks |a - e| <= atol + rtol * scale_i + kUnderflowAtol for every element (scale_i = |e_i| when
// scale is null).
// Shapes must match; a NaN in `actual` never passes, an infinity only where `expected` has the same
// one. On failure the message names the number of bad elements, the worst one (index, both values,
// the budget and the fraction of it used).
::testing::AssertionResult all_close(const DVec& actual, const Shape& actual_shape, const DVec& expected,
                                     const Shape& expected_shape, const DVec* scale, double rtol, double atol);

// The expect_close family: EXPECT-style (the test goes on), returns whether it passed.
bool expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol, const std::string& what);
bool expect_close(const Tensor& actual, const Ref& expected, double rtol, double atol, const std::string& what);
// Two kiln results (GPU vs CPU), with the budget scaled by a reference's magnitudes.
bool expect_close(const Tensor& actual, const Tensor& expected, const DVec& scale, double rtol, double atol,
                  const std::string& what);
// Exact equality of values (integer results), shapes included.
bool expect_equal_values(const Tensor& actual, const DVec& expected, const Shape& shape, const std::string& what);

// ---- gradient checking --------------------------------------------------------------------------

// A scalar function of the (double) inputs: the reference of an op composed with a projection.
using LossFn = std::function<double(const std::vector<DVec>&)>;
// Elements to leave out of a check (kinks): skip(input, element, x) == true.
using SkipFn = std::function<bool(std::size_t, std::size_t, double)>;

// d loss / d inputs[which] by central differences in double.
DVec numeric_grad(const LossFn& loss, std::vector<DVec> inputs, std::size_t which, double h = kFiniteDiffStep);

// Compares kiln's analytic gradient `analytic` of inputs[which] with central differences of `loss`.
// Budget per element: atol_rel * max_j |g_num_j| + rtol * scale_i, scale_i = |g_num_i| or the
// given per-element magnitudes; elements with skip(...) true are left out (and counted).
bool check_numeric_grad(const Tensor& analytic, const LossFn& loss, const std::vector<DVec>& inputs,
                        std::size_t which, double rtol, double atol_rel, const std::string& what,
                        const SkipFn& skip = nullptr, const DVec* scale = nullptr,
                        double h = kFiniteDiffStep);

// The small model used by the autograd and allocator tests: linear -> relu -> linear -> cross_entropy.
inline Tensor mlp_loss(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2,
                       const Tensor& labels) {
  return kiln::cross_entropy(kiln::linear(kiln::relu(kiln::linear(x, w1, b1)), w2, b2), labels);
}

// ---- one op case ----------------------------------------------------------------------------------

struct OpCase {
  std::string name;
  std::vector<Tensor> inputs;  // CPU tensors; moved to the device under test by check_op
  std::vector<bool> wrt;       // inputs that get requires_grad (may be shorter: the rest false)
  std::function<Tensor(const std::vector<Tensor>&)> op;
  // Forward reference in double (inputs as doubles, integer inputs included).
  std::function<Ref(const std::vector<DVec>&)> ref;
  // d sum(out * R) / d input_i in double for every input in wrt (others may be empty), with the
  // per-element magnitudes of the terms as scale.
  std::function<std::vector<Ref>(const std::vector<DVec>&, const DVec& r)> vjp;

  double fwd_rtol = kElementwiseRtol;
  double fwd_atol = 0;
  double grad_rtol = kElementwiseRtol;
  double grad_atol = 0;
  bool exact = false;         // integer-valued output: compare exactly
  bool numeric = true;        // also check against central differences (small cases only)
  bool integer_r = false;     // projection R of small integers (for exact-gradient cases)
  double kink = 0;            // leave out elements with |x| < kink in the numeric check
  std::uint64_t seed = 1234;  // for R and the pre-filled gradients
};

// Runs `c` on `device`:
//  0. NaN-poisons the allocator's free blocks of the output's and inputs' sizes;
//  1. forward vs the double reference (shape, dtype float32 unless exact, device, values);
//  2. loss = sum(mul(out, R)) and backward(): each wrt leaf's gradient vs the double vjp and, when
//     c.numeric, vs central differences of the reference (which also validates the vjp);
//  3. pre-filled gradients: set_grad(P) then backward again must give P + g (accumulate, not assign);
//  4. on a CUDA device: the same forward/backward on the CPU, device result vs CPU result.
void check_op(const OpCase& c, Device device);

// Runs f, expects a kiln::Error whose message contains every one of `parts`.
template <class F>
void expect_error_naming(F&& f, std::initializer_list<std::string> parts, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << what << ": no kiln::Error thrown";
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << what << ": message \"" << msg << "\" does not contain \"" << part << "\"";
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a non-kiln exception: " << e.what();
  }
}

}  // namespace kt

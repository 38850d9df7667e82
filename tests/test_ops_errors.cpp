// Ops, part 3: argument checking. Every op checks shapes, dtypes and devices before dispatching
// and throws kiln::Error naming the operands; on the gpu instance the tensors live on the device.
#include <string>

#include "test_util.h"

using namespace kt;
using kiln::Shape;


class OpErrorsTest : public DeviceTest {
 protected:
  Tensor z(const Shape& s, DType t = DType::Float32) { return Tensor::zeros(s, t, dev()); }
};

TEST_P(OpErrorsTest, MatmulShapes) {
  expect_error_naming([&] { kiln::matmul(z({2, 3}), z({4, 5})); }, {"[2, 3]", "[4, 5]"}, "matmul inner dims");
  EXPECT_THROW(kiln::matmul(z({6}), z({6, 2})), kiln::Error);
  EXPECT_THROW(kiln::matmul(z({2, 3, 4}), z({4, 2})), kiln::Error);
}

TEST_P(OpErrorsTest, LinearAndBiasShapes) {
  expect_error_naming([&] { kiln::linear(z({2, 3}), z({4, 5})); }, {"[2, 3]", "[4, 5]"}, "linear in_features");
  expect_error_naming([&] { kiln::linear(z({2, 3}), z({4, 3}), z({5})); }, {"[5]"}, "linear bias size");
  expect_error_naming([&] { kiln::bias_add(z({2, 3}), z({4})); }, {"[2, 3]", "[4]"}, "bias_add channels");
  EXPECT_THROW(kiln::bias_add(z({2, 3, 4}), z({3, 1})), kiln::Error);
}

TEST_P(OpErrorsTest, ElementwiseShapesAndDtypes) {
  expect_error_naming([&] { kiln::add(z({2, 3}), z({3, 2})); }, {"[2, 3]", "[3, 2]"}, "add");
  expect_error_naming([&] { kiln::sub(z({2, 3}), z({6})); }, {"[2, 3]", "[6]"}, "sub");
  expect_error_naming([&] { kiln::mul(z({1, 3}), z({3, 1})); }, {"[1, 3]", "[3, 1]"}, "mul");
  EXPECT_THROW(kiln::mul(z({4}, DType::Int32), z({4}, DType::Int32)), kiln::Error);
  EXPECT_THROW(kiln::add(z({4}), z({4}, DType::Int64)), kiln::Error);
  EXPECT_THROW(kiln::relu(z({4}, DType::Int32)), kiln::Error);
  EXPECT_THROW(kiln::add(Tensor(), z({4})), kiln::Error) << "an undefined operand must be an error, not a crash";
}

TEST_P(OpErrorsTest, ReductionAxes) {
  for (std::int64_t bad : {3, -4, 100}) {
    EXPECT_THROW(kiln::sum(z({2, 3, 4}), bad), kiln::Error) << "axis " << bad;
    EXPECT_THROW(kiln::mean(z({2, 3, 4}), bad), kiln::Error) << "axis " << bad;
  }
}

TEST_P(OpErrorsTest, ClassificationArguments) {
  EXPECT_THROW(kiln::log_softmax(z({5})), kiln::Error);
  EXPECT_THROW(kiln::cross_entropy(z({4, 5}), z({4})), kiln::Error) << "float labels";
  expect_error_naming([&] { kiln::cross_entropy(z({4, 5}), z({3}, DType::Int64)); }, {"[4, 5]", "[3]"},
                      "cross_entropy batch size");
  EXPECT_THROW(kiln::cross_entropy(z({4}), z({4}, DType::Int64)), kiln::Error) << "1-D logits";
  EXPECT_THROW(kiln::count_correct(z({4, 5}), z({3}, DType::Int64)), kiln::Error);
}

TEST_P(OpErrorsTest, InPlaceShapes) {
  Tensor y = z({2, 3});
  expect_error_naming([&] { kiln::axpy_(1.0f, z({3, 2}), y); }, {"[3, 2]", "[2, 3]"}, "axpy_");
}

KILN_INSTANTIATE_DEVICES(OpErrorsTest);

// Mixing devices: only meaningful with a CUDA device, so this suite has just a gpu instance.
class DeviceMismatchTest : public DeviceTest {};

TEST_P(DeviceMismatchTest, OpsRejectMixedDevices) {
  Tensor c = Tensor::zeros({4, 4}), g = Tensor::zeros({4, 4}, DType::Float32, dev());
  expect_error_naming([&] { kiln::add(c, g); }, {"cpu", "cuda:0"}, "add(cpu, cuda)");
  EXPECT_THROW(kiln::matmul(g, c), kiln::Error);
  EXPECT_THROW(kiln::mul(c, g), kiln::Error);
  EXPECT_THROW(kiln::linear(g, g, Tensor::zeros({4})), kiln::Error) << "bias on the CPU";
  EXPECT_THROW(kiln::bias_add(g, Tensor::zeros({4})), kiln::Error);
  EXPECT_THROW(kiln::cross_entropy(g, Tensor::zeros({4}, DType::Int64)), kiln::Error) << "labels on the CPU";
  EXPECT_THROW(kiln::count_correct(g, Tensor::zeros({4}, DType::Int64)), kiln::Error);
  EXPECT_THROW(kiln::axpy_(1.0f, c, g), kiln::Error);
}

KILN_INSTANTIATE_GPU_ONLY(DeviceMismatchTest);

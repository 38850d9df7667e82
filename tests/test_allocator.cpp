// The CUDA caching allocator (gpu instances only; they skip with the reason without a device):
// a steady training loop makes no cudaMalloc calls after warm-up, empty_cache returns memory,
// and an impossible allocation throws OutOfMemoryError with an actionable message.
#include <string>

#include "test_util.h"

using namespace kt;

namespace {

// A few-layer MLP trained with plain SGD through axpy_.
struct TinyTrainer {
  Device dev;
  std::vector<Tensor> params;  // w1, b1, w2, b2
  Tensor x, labels;

  explicit TinyTrainer(Device d) : dev(d) {
    const std::int64_t n = 64, in = 96, hidden = 128, out = 10;
    x = randn_cpu({n, in}, 1).to(dev);
    labels = labels_cpu(n, out, DType::Int64, 2).to(dev);
    params = {randn_cpu({hidden, in}, 3, 0.1f).to(dev), Tensor::zeros({hidden}, DType::Float32, dev),
              randn_cpu({out, hidden}, 4, 0.1f).to(dev), Tensor::zeros({out}, DType::Float32, dev)};
    for (Tensor& p : params) p.set_requires_grad(true);
  }

  float step() {
    for (Tensor& p : params) p.zero_grad();
    Tensor loss = mlp_loss(x, params[0], params[1], params[2], params[3], labels);
    loss.backward();
    {
      kiln::NoGradGuard no_grad;
      for (Tensor& p : params) kiln::axpy_(-0.1f, p.grad(), p);
    }
    return loss.item();
  }
};

}  // namespace

class AllocatorTest : public DeviceTest {};

TEST_P(AllocatorTest, SteadyStateTrainingMakesNoCudaMalloc) {
  const int d = dev().index;
  TinyTrainer t(dev());
  float first = t.step();
  for (int i = 0; i < 3; ++i) t.step();  // warm-up fills the cache
  kiln::cuda::synchronize(d);
  const kiln::cuda::AllocatorStats warm = kiln::cuda::allocator_stats(d);
  EXPECT_GT(warm.malloc_calls, 0u);
  EXPECT_GT(warm.bytes_reserved, 0u);
  EXPECT_GE(warm.bytes_reserved, warm.bytes_in_use);
  float last = 0;
  for (int i = 0; i < 10; ++i) last = t.step();
  kiln::cuda::synchronize(d);
  const kiln::cuda::AllocatorStats after = kiln::cuda::allocator_stats(d);
  EXPECT_EQ(after.malloc_calls, warm.malloc_calls) << "cudaMalloc in the steady state: the cache is not reused";
  EXPECT_GT(after.cache_hits, warm.cache_hits);
  EXPECT_GT(after.allocations, warm.allocations);
  EXPECT_GE(after.peak_bytes_in_use, after.bytes_in_use);
  EXPECT_LT(last, first) << "SGD on a fixed batch should lower the loss";
}

TEST_P(AllocatorTest, EmptyCacheReturnsMemory) {
  const int d = dev().index;
  {
    std::vector<Tensor> big;
    for (int i = 0; i < 4; ++i) big.push_back(Tensor::zeros({1 << 20}, DType::Float32, dev()));  // 4 x 4 MiB
    kiln::cuda::synchronize(d);
  }
  kiln::cuda::synchronize(d);
  const kiln::cuda::AllocatorStats before = kiln::cuda::allocator_stats(d);
  ASSERT_GE(before.bytes_reserved - before.bytes_in_use, 4u << 22) << "the freed tensors should be cached";
  kiln::cuda::empty_cache(d);
  const kiln::cuda::AllocatorStats after = kiln::cuda::allocator_stats(d);
  EXPECT_LT(after.bytes_reserved, before.bytes_reserved);
  EXPECT_LE(before.bytes_reserved - after.bytes_reserved, before.bytes_reserved - before.bytes_in_use);
  EXPECT_GT(after.free_calls, before.free_calls);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use) << "empty_cache must not touch live tensors";
  // the allocator still works afterwards
  Tensor x = Tensor::full({1000}, 3.0f, dev());
  EXPECT_EQ(x.to_vector(), std::vector<float>(1000, 3.0f));
}

TEST_P(AllocatorTest, OutOfMemoryIsActionable) {
  const std::int64_t elements = std::int64_t{1} << 48;  // 2^50 bytes of float32: 1 PiB
  try {
    Tensor huge = Tensor::empty({elements}, DType::Float32, dev());
    ADD_FAILURE() << "allocating 1 PiB did not throw";
  } catch (const kiln::OutOfMemoryError& e) {
    const std::string msg = e.what();
    const bool names_size = msg.find(std::to_string(std::uint64_t{1} << 50)) != std::string::npos ||
                            msg.find("PiB") != std::string::npos || msg.find("TiB") != std::string::npos ||
                            msg.find("GiB") != std::string::npos;
    EXPECT_TRUE(names_size) << "message should state the requested size: " << msg;
    EXPECT_NE(msg.find("batch"), std::string::npos) << "message should suggest a smaller batch: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected kiln::OutOfMemoryError, got: " << e.what();
  }
  // the device is still usable
  Tensor y = Tensor::full({10}, 1.0f, dev());
  EXPECT_EQ(y.to_vector(), std::vector<float>(10, 1.0f));
}

KILN_INSTANTIATE_GPU_ONLY(AllocatorTest);

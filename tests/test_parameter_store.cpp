// The parameter store: parameters and gradients are views of flat per-group buffers, zero_grad drops
// gradients without device work, the gradient-ready callback fires once per parameter per backward
// pass in reverse registration order, buckets are contiguous and ordered like backward, and the
// optimizer updates only the runs that hold a gradient.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "test_util.h"

namespace {

using kiln::Device;
using kiln::Generator;
using kiln::Shape;
using kiln::Tensor;
using kiln::nn::ParameterStore;

class ParameterStoreTest : public kt::DeviceTest {
 protected:
  void SetUp() override {
    kt::DeviceTest::SetUp();
    if (IsSkipped()) return;
    Generator gen(7);
    model = kiln::models::mlp(12, {9, 5}, 3, gen, dev());
    before = model->named_parameters();
    for (auto& [name, t] : before) values.push_back(t.to(Device::cpu()).clone());
    store = std::make_shared<ParameterStore>(model->named_parameters());
  }
  // One forward and backward pass of the MLP on a fixed batch.
  void backward_once() {
    Tensor x = kt::fresh_on(kt::randn_cpu({4, 12}, 11), dev());
    Tensor labels = Tensor::from_vector<std::int64_t>({0, 2, 1, 2}, {4}, dev());
    kiln::cross_entropy((*model)(x), labels).backward();
  }
  std::unique_ptr<kiln::nn::Sequential> model;
  kiln::io::NamedTensors before;
  std::vector<Tensor> values;
  std::shared_ptr<ParameterStore> store;
};

const char* byte_ptr(const Tensor& t) { return static_cast<const char*>(t.raw_data()); }

TEST_P(ParameterStoreTest, ParametersAndGradientsAliasTheFlatBuffers) {
  ASSERT_EQ(store->groups().size(), 1u) << "one device, one dtype: one group";
  const auto& group = store->groups()[0];
  const auto names = model->named_parameters();
  ASSERT_EQ(store->slots().size(), names.size());
  backward_once();
  for (std::size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i].first);
    const auto& slot = store->slots()[i];
    EXPECT_EQ(slot.name, names[i].first) << "registration order and names are kept";
    const Tensor& p = names[i].second;
    EXPECT_TRUE(p.shares_storage(group.params));
    EXPECT_EQ(byte_ptr(p), byte_ptr(group.params) + slot.offset * 4);
    EXPECT_EQ(slot.offset * 4 % 256, 0) << "every parameter starts 256 bytes into the buffer, or a multiple";
    EXPECT_TRUE(before[i].second.shares_storage(group.params)) << "handles taken before registration see the view";
    EXPECT_EQ(kt::to_doubles(p.to(Device::cpu())), kt::to_doubles(values[i])) << "values kept";
    ASSERT_TRUE(p.grad().defined());
    EXPECT_TRUE(p.grad().shares_storage(group.grads));
    EXPECT_EQ(byte_ptr(p.grad()), byte_ptr(group.grads) + slot.offset * 4);
  }
  // Writing through the flat buffer is visible in the parameter the model holds.
  const Tensor& w0 = names[0].second;
  Tensor flat_head = group.params.narrow0(0, 1);
  flat_head.copy_(Tensor::from_vector<float>({42.0f}, {1}, dev()));
  EXPECT_EQ(w0.to(Device::cpu()).flatten(0).at({0}), 42.0f);
}

TEST_P(ParameterStoreTest, ZeroGradDropsGradientsAndTheNextPassWritesInPlace) {
  backward_once();
  const Tensor first = store->slots()[0].param.grad().to(Device::cpu()).clone();
  const void* where = store->slots()[0].param.grad().raw_data();
  backward_once();  // without zero_grad: accumulates
  kt::expect_close(store->slots()[0].param.grad().to(Device::cpu()), kiln::scale(first, 2.0f), 1e-6, 1e-6,
                   "two passes accumulate");
  store->zero_grad();
  for (std::size_t i = 0; i < store->slots().size(); ++i) {
    EXPECT_FALSE(store->has_grad(i));
    EXPECT_FALSE(store->slots()[i].param.grad().defined());
  }
  backward_once();
  EXPECT_EQ(store->slots()[0].param.grad().raw_data(), where) << "the gradient stays in the store's buffer";
  EXPECT_EQ(kt::to_doubles(store->slots()[0].param.grad().to(Device::cpu())), kt::to_doubles(first))
      << "after zero_grad the pass writes, it does not add";
}

TEST_P(ParameterStoreTest, GradientReadyFiresOncePerParameterInReverseOrder) {
  std::vector<std::size_t> order;
  store->on_grad_ready([&](std::size_t slot) {
    EXPECT_TRUE(store->has_grad(slot)) << "the callback comes after the gradient has landed";
    order.push_back(slot);
  });
  for (int pass = 0; pass < 2; ++pass) {
    order.clear();
    store->zero_grad();
    backward_once();
    const std::size_t n = store->slots().size();
    ASSERT_EQ(order.size(), n) << "pass " << pass << ": once per parameter";
    for (std::size_t k = 0; k < n; ++k) EXPECT_EQ(order[k], n - 1 - k) << "pass " << pass << ": reverse order";
  }
}

TEST_P(ParameterStoreTest, ALeafUsedTwiceIsReadyOnce) {
  Tensor w = kt::fresh_on(kt::randn_cpu({3}, 5), dev());
  w.set_requires_grad(true);
  ParameterStore own({{"w", w}});
  int calls = 0;
  own.on_grad_ready([&](std::size_t) { ++calls; });
  kiln::sum(kiln::mul(w, w)).backward();
  EXPECT_EQ(calls, 1);
  kt::expect_close(w.grad().to(Device::cpu()), kiln::scale(w.to(Device::cpu()), 2.0f), 1e-6, 0, "d(w.w)/dw = 2w");
}

TEST_P(ParameterStoreTest, BucketsAreContiguousAndInBackwardOrder) {
  const auto& slots = store->slots();
  for (std::size_t bytes : {std::size_t{1}, std::size_t{200}, std::size_t{1} << 30}) {
    SCOPED_TRACE(bytes);
    const auto buckets = store->buckets(bytes);
    ASSERT_FALSE(buckets.empty());
    std::size_t expect_last = slots.size() - 1;
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      const auto& r = buckets[b];
      EXPECT_EQ(r.last_slot, expect_last) << "buckets walk back from the last parameter without gaps";
      EXPECT_EQ(r.offset, slots[r.first_slot].offset);
      EXPECT_EQ(r.offset + r.numel, slots[r.last_slot].offset + slots[r.last_slot].param.numel());
      if (b + 1 < buckets.size()) {
        EXPECT_GE(static_cast<std::size_t>(r.numel) * 4, bytes) << "only the last is short";
      }
      if (bytes == 1) {
        EXPECT_EQ(r.first_slot, r.last_slot) << "tiny buckets hold one parameter each";
      }
      expect_last = r.first_slot - 1;
    }
    EXPECT_EQ(buckets.back().first_slot, 0u);
    if (bytes == (std::size_t{1} << 30)) {
      EXPECT_EQ(buckets.size(), 1u);
    }
  }
}

TEST_P(ParameterStoreTest, TheOptimizerLeavesParametersWithoutGradientAlone) {
  kiln::optim::SGDOptions o;
  o.lr = 0.1f, o.momentum = 0.9f, o.weight_decay = 0.01f;
  auto opt = kiln::optim::sgd(store, o);
  backward_once();
  Tensor gap = store->slots()[2].param;
  gap.zero_grad();  // a gap: two runs
  const auto runs = store->runs_with_grad(0);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].first_slot, 0u);
  EXPECT_EQ(runs[0].last_slot, 1u);
  EXPECT_EQ(runs[1].first_slot, 3u);
  opt->step();
  const auto names = model->named_parameters();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const bool moved = kt::to_doubles(names[i].second.to(Device::cpu())) != kt::to_doubles(values[i]);
    EXPECT_EQ(moved, i != 2) << names[i].first;
  }
}

TEST(ParameterStore, RejectsATensorRegisteredTwice) {
  Tensor w = Tensor::zeros({2});
  w.set_requires_grad(true);
  kt::expect_error_naming([&] { ParameterStore s({{"a", w}, {"b", w}}); }, {"'b' is registered twice"},
                          "a tensor registered twice");
}

KILN_INSTANTIATE_DEVICES(ParameterStoreTest);

}  // namespace

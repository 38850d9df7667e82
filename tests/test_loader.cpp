// The batch loader: coverage (every sample once per epoch), determinism of the shuffled order in
// (seed, epoch), unshuffled order, partial and dropped last batches, resuming mid-epoch, worker
// counts, option checks, and batches delivered on the GPU with the CPU's content.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "test_util.h"

namespace {

using kiln::Device;
using kiln::DType;
using kiln::Tensor;
using kiln::data::Batch;
using kiln::data::Dataset;
using kiln::data::Loader;
using kiln::data::LoaderOptions;

constexpr std::int64_t kPixels = 16;  // [1, 4, 4]
constexpr std::int32_t kLabelBase = 1000;

// Sample i: pixel k holds (i + 3k) mod 256 -- pixel 0 is the index, the rest check that the whole
// sample travelled intact; label 1000 + i.
Dataset make_dataset(std::int64_t n) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(n * kPixels));
  std::vector<std::int32_t> lab(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t k = 0; k < kPixels; ++k) px[static_cast<std::size_t>(i * kPixels + k)] = static_cast<std::uint8_t>((i + 3 * k) % 256);
    lab[static_cast<std::size_t>(i)] = kLabelBase + static_cast<std::int32_t>(i);
  }
  Dataset d;
  d.images = Tensor::from_vector(px, {n, 1, 4, 4});
  d.labels = Tensor::from_vector(lab, {n});
  d.num_classes = 10;
  return d;
}

// One epoch as the sample indices of each batch, checking each sample's pixels and label.
using Epoch = std::vector<std::vector<std::int64_t>>;

Epoch read_epoch(Loader& loader, std::int64_t epoch, std::int64_t first_batch = 0, Device expect_dev = Device::cpu()) {
  loader.start_epoch(epoch, first_batch);
  Epoch out;
  Batch b;
  std::int64_t expect_index = first_batch;
  while (loader.next(b)) {
    EXPECT_EQ(b.index, expect_index++) << "batch index";
    EXPECT_EQ(b.images.dtype(), DType::UInt8);
    EXPECT_EQ(b.labels.dtype(), DType::Int32);
    EXPECT_EQ(b.images.device(), expect_dev);
    EXPECT_EQ(b.labels.device(), expect_dev);
    const std::int64_t n = b.labels.numel();
    EXPECT_EQ(b.images.shape(), (kiln::Shape{n, 1, 4, 4}));
    const auto px = b.images.to_vector<std::uint8_t>();
    const auto lab = b.labels.to_vector<std::int32_t>();
    std::vector<std::int64_t> idx;
    for (std::int64_t s = 0; s < n; ++s) {
      const std::int64_t i = lab[static_cast<std::size_t>(s)] - kLabelBase;
      idx.push_back(i);
      for (std::int64_t k = 0; k < kPixels; ++k)
        EXPECT_EQ(px[static_cast<std::size_t>(s * kPixels + k)], static_cast<std::uint8_t>((i + 3 * k) % 256))
            << "sample " << i << " pixel " << k << " (batch " << b.index << ", row " << s << ")";
    }
    out.push_back(idx);
  }
  EXPECT_FALSE(loader.next(b)) << "next() after the end of the epoch must keep returning false";
  return out;
}

std::vector<std::int64_t> flat(const Epoch& e) {
  std::vector<std::int64_t> v;
  for (const auto& b : e) v.insert(v.end(), b.begin(), b.end());
  return v;
}

std::vector<std::int64_t> iota(std::int64_t n, std::int64_t from = 0) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

LoaderOptions opts(std::int64_t batch, std::uint64_t seed = 5, int workers = 2) {
  LoaderOptions o;
  o.batch_size = batch, o.seed = seed, o.workers = workers;
  return o;
}

TEST(Loader, EverySampleExactlyOncePerEpoch) {
  const Dataset ds = make_dataset(37);
  Loader loader(ds, opts(8));
  EXPECT_EQ(loader.batches_per_epoch(), 5);
  EXPECT_EQ(loader.dataset_size(), 37);
  for (std::int64_t e = 0; e < 3; ++e) {
    const Epoch ep = read_epoch(loader, e);
    ASSERT_EQ(ep.size(), 5u) << "epoch " << e;
    for (std::size_t j = 0; j < 4; ++j) EXPECT_EQ(ep[j].size(), 8u) << "batch " << j;
    EXPECT_EQ(ep[4].size(), 5u) << "the last batch holds the remaining 37 - 32 samples";
    std::vector<std::int64_t> all = flat(ep);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, iota(37)) << "epoch " << e << " is not a permutation of the dataset";
    EXPECT_GE(loader.wait_seconds(), 0.0);
  }
}

TEST(Loader, OrderIsAFunctionOfSeedAndEpoch) {
  const Dataset ds = make_dataset(50);
  Loader a(ds, opts(7, 11)), b(ds, opts(7, 11)), c(ds, opts(7, 12));
  const auto a0 = flat(read_epoch(a, 0)), a1 = flat(read_epoch(a, 1));
  EXPECT_NE(a0, iota(50)) << "shuffle=true gave the identity order";
  EXPECT_NE(a0, a1) << "epochs 0 and 1 have the same order";
  // b reads the epochs in another order: still the same sequences
  EXPECT_EQ(flat(read_epoch(b, 1)), a1);
  EXPECT_EQ(flat(read_epoch(b, 0)), a0);
  EXPECT_EQ(flat(read_epoch(a, 0)), a0) << "re-reading epoch 0 on the same loader";
  EXPECT_NE(flat(read_epoch(c, 0)), a0) << "seeds 11 and 12 give the same order";
  // The batch split follows the order: same batches, not just the same concatenation.
  EXPECT_EQ(read_epoch(a, 1), read_epoch(b, 1));
}

TEST(Loader, NoShuffleKeepsDatasetOrder) {
  const Dataset ds = make_dataset(23);
  LoaderOptions o = opts(4);
  o.shuffle = false;
  Loader loader(ds, o);
  for (std::int64_t e : {0, 1, 7}) {
    const Epoch ep = read_epoch(loader, e);
    EXPECT_EQ(flat(ep), iota(23)) << "epoch " << e;
    ASSERT_EQ(ep.size(), 6u);
    EXPECT_EQ(ep.back(), (std::vector<std::int64_t>{20, 21, 22}));
  }
}

TEST(Loader, DropLast) {
  const Dataset ds = make_dataset(37);
  LoaderOptions o = opts(8);
  o.drop_last = true;
  Loader loader(ds, o);
  EXPECT_EQ(loader.batches_per_epoch(), 4);
  LoaderOptions keep = opts(8);
  Loader full(ds, keep);
  for (std::int64_t e = 0; e < 2; ++e) {
    const Epoch ep = read_epoch(loader, e);
    ASSERT_EQ(ep.size(), 4u);
    for (const auto& b : ep) EXPECT_EQ(b.size(), 8u);
    std::vector<std::int64_t> all = flat(ep);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::unique(all.begin(), all.end()), all.end()) << "a sample repeated";
    // the same shuffled order as without drop_last, minus the tail
    Epoch f = read_epoch(full, e);
    f.pop_back();
    EXPECT_EQ(ep, f);
  }
  // An exact multiple drops nothing.
  const Dataset ds32 = make_dataset(32);
  Loader exact(ds32, o);
  EXPECT_EQ(exact.batches_per_epoch(), 4);
  EXPECT_EQ(flat(read_epoch(exact, 0)).size(), 32u);
}

TEST(Loader, BatchesPerEpoch) {
  const Dataset ds = make_dataset(10);
  for (std::int64_t bs : {1, 3, 4, 5, 9, 10, 11, 100}) {
    Loader l(ds, opts(bs));
    EXPECT_EQ(l.batches_per_epoch(), (10 + bs - 1) / bs) << "batch size " << bs;
    EXPECT_EQ(static_cast<std::int64_t>(read_epoch(l, 0).size()), l.batches_per_epoch()) << "batch size " << bs;
    if (bs <= 10) {
      LoaderOptions o = opts(bs);
      o.drop_last = true;
      Loader d(ds, o);
      EXPECT_EQ(d.batches_per_epoch(), 10 / bs) << "drop_last, batch size " << bs;
    }
  }
}

// A batch size beyond the dataset (up to the largest a flag allows) is one batch of every sample:
// no size computed from it wraps, and the batch buffers are sized by the dataset.
TEST(Loader, BatchSizeBeyondTheDatasetIsOneBatch) {
  const Dataset ds = make_dataset(10);
  for (std::int64_t bs : {std::int64_t{11}, std::int64_t{1} << 24, std::int64_t{1} << 62}) {
    Loader l(ds, opts(bs));
    EXPECT_EQ(l.batches_per_epoch(), 1) << "batch size " << bs;
    const Epoch ep = read_epoch(l, 0);
    ASSERT_EQ(ep.size(), 1u);
    EXPECT_EQ(ep[0].size(), 10u);
  }
}

TEST(Loader, StartEpochMidwayYieldsTheRemainingBatches) {
  const Dataset ds = make_dataset(45);
  Loader loader(ds, opts(6, 3));
  const Epoch whole = read_epoch(loader, 2);
  ASSERT_EQ(whole.size(), 8u);
  for (std::int64_t k = 0; k <= 8; ++k) {
    const Epoch part = read_epoch(loader, 2, k);
    EXPECT_EQ(part, Epoch(whole.begin() + k, whole.end())) << "start_epoch(2, " << k << ")";
  }
  EXPECT_THROW(loader.start_epoch(2, 9), kiln::Error) << "first batch past the end";
  EXPECT_THROW(loader.start_epoch(2, -1), kiln::Error) << "negative first batch";
  // A fresh loader resuming mid-epoch gives the same batches (the order does not depend on history).
  Loader fresh(ds, opts(6, 3));
  EXPECT_EQ(read_epoch(fresh, 2, 5), Epoch(whole.begin() + 5, whole.end()));
}

TEST(Loader, RestartingAnEpochInFlight) {
  const Dataset ds = make_dataset(64);
  Loader loader(ds, opts(4, 9, 3));
  const Epoch e1 = read_epoch(loader, 1);
  loader.start_epoch(0);
  Batch b;
  ASSERT_TRUE(loader.next(b));
  ASSERT_TRUE(loader.next(b));  // abandon epoch 0 after two batches, with workers still filling
  EXPECT_EQ(read_epoch(loader, 1), e1);
}

TEST(Loader, WorkerCountDoesNotChangeTheSequence) {
  const Dataset ds = make_dataset(101);
  Loader one(ds, opts(8, 21, 1)), four(ds, opts(8, 21, 4)), many(ds, opts(8, 21, 16));
  for (std::int64_t e = 0; e < 3; ++e) {
    const Epoch ref = read_epoch(one, e);
    EXPECT_EQ(read_epoch(four, e), ref) << "epoch " << e << ": 4 workers vs 1";
    EXPECT_EQ(read_epoch(many, e), ref) << "epoch " << e << ": 16 workers vs 1";
  }
}

// A source whose samples in `bad` cannot be produced (files that fail to decode).
class FailingSource final : public kiln::data::Source {
 public:
  FailingSource(const Dataset& d, std::vector<std::int64_t> bad) : inner_(kiln::data::in_memory(d)), bad_(std::move(bad)) {}
  std::int64_t size() const override { return inner_->size(); }
  kiln::Shape sample_shape() const override { return inner_->sample_shape(); }
  std::int64_t num_classes() const override { return inner_->num_classes(); }
  std::vector<std::string> class_names() const override { return inner_->class_names(); }
  std::int32_t label(std::int64_t i) const override { return inner_->label(i); }
  bool load(std::int64_t i, std::uint8_t* dst, std::uint64_t rng) const override {
    return std::find(bad_.begin(), bad_.end(), i) == bad_.end() && inner_->load(i, dst, rng);
  }

 private:
  std::shared_ptr<const kiln::data::Source> inner_;
  std::vector<std::int64_t> bad_;
};

// Drop (evaluation): a sample that cannot be produced is left out, never replaced by a repeat;
// a batch of bad samples only comes out empty; the bad ones are reported by index.
TEST(Loader, DropLeavesUnloadableSamplesOutAndNamesThem) {
  const Dataset ds = make_dataset(20);
  const std::vector<std::int64_t> bad{3, 8, 9, 10, 11, 19};  // batch 2 (8..11) entirely bad
  auto src = std::make_shared<FailingSource>(ds, bad);
  LoaderOptions o = opts(4);
  o.shuffle = false, o.unloadable = kiln::data::Unloadable::Drop;
  Loader loader(src, o);
  for (std::int64_t e = 0; e < 2; ++e) {
    loader.start_epoch(e);
    Batch b;
    std::vector<std::int64_t> seen, sizes;
    while (loader.next(b)) {
      sizes.push_back(b.labels.numel());
      for (std::int32_t l : b.labels.to_vector<std::int32_t>()) seen.push_back(l - kLabelBase);
    }
    std::vector<std::int64_t> want;
    for (std::int64_t i = 0; i < 20; ++i)
      if (std::find(bad.begin(), bad.end(), i) == bad.end()) want.push_back(i);
    EXPECT_EQ(seen, want) << "epoch " << e;
    EXPECT_EQ(sizes, (std::vector<std::int64_t>{3, 4, 0, 4, 3}));
    EXPECT_EQ(loader.skipped(), 6);
    EXPECT_EQ(loader.skipped_samples(), bad);
  }
  // Replace (training) keeps every batch full.
  o.unloadable = kiln::data::Unloadable::Replace;
  Loader full(src, o);
  full.start_epoch(0);
  Batch b;
  std::int64_t n = 0;
  while (full.next(b)) n += b.labels.numel();
  EXPECT_EQ(n, 20);
  EXPECT_EQ(full.skipped_samples(), bad);
}

TEST(Loader, InvalidOptionsThrow) {
  const Dataset ds = make_dataset(10);
  EXPECT_THROW({ Loader l(ds, opts(0)); }, kiln::Error) << "batch size 0";
  EXPECT_THROW({ Loader l(ds, opts(-2)); }, kiln::Error) << "negative batch size";
  EXPECT_THROW({ Loader l(ds, opts(4, 0, 0)); }, kiln::Error) << "0 workers";
  EXPECT_THROW({ Loader l(ds, opts(4, 0, -1)); }, kiln::Error) << "negative workers";
  LoaderOptions big = opts(11);
  big.drop_last = true;
  EXPECT_THROW({ Loader l(ds, big); }, kiln::Error) << "drop_last with a batch larger than the dataset: no batch at all";

  Dataset empty;
  empty.images = Tensor::empty({0, 1, 4, 4}, DType::UInt8);
  empty.labels = Tensor::empty({0}, DType::Int32);
  EXPECT_THROW({ Loader l(empty, opts(4)); }, kiln::Error) << "empty dataset";
  Dataset undefined;
  EXPECT_THROW({ Loader l(undefined, opts(4)); }, kiln::Error) << "dataset without tensors";

  Dataset floats = make_dataset(4);
  floats.images = Tensor::zeros({4, 1, 4, 4});
  EXPECT_THROW({ Loader l(floats, opts(2)); }, kiln::Error) << "float32 images";
  Dataset long_labels = make_dataset(4);
  long_labels.labels = Tensor::zeros({4}, DType::Int64);
  EXPECT_THROW({ Loader l(long_labels, opts(2)); }, kiln::Error) << "int64 labels";
}

// On the GPU the batches arrive in device memory with exactly the CPU loader's content.
class LoaderDevice : public kt::DeviceTest {};

TEST_P(LoaderDevice, BatchesOnTheDeviceMatchTheCpu) {
  const Dataset ds = make_dataset(77);
  LoaderOptions o = opts(16, 8, 3);
  o.device = dev();
  Loader loader(ds, o);
  Loader cpu(ds, opts(16, 8, 3));
  for (std::int64_t e = 0; e < 2; ++e) {
    const Epoch got = read_epoch(loader, e, 0, dev());
    EXPECT_EQ(got, read_epoch(cpu, e)) << "epoch " << e;
    std::vector<std::int64_t> all = flat(got);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, iota(77));
  }
  // resumed mid-epoch on the device
  EXPECT_EQ(read_epoch(loader, 1, 3, dev()), read_epoch(cpu, 1, 3));
  // And a batch is usable by a device op right away (the compute stream waits for the copy).
  loader.start_epoch(0);
  Batch b;
  ASSERT_TRUE(loader.next(b));
  const Tensor x = kiln::normalize_images(b.images, {0.0f}, {1.0f});
  EXPECT_EQ(x.device(), dev());
  const auto px = b.images.to_vector<std::uint8_t>();
  const auto xv = x.to_vector<float>();
  ASSERT_EQ(px.size(), xv.size());
  for (std::size_t i = 0; i < px.size(); ++i) ASSERT_NEAR(xv[i], px[i] / 255.0, 1e-6) << i;
}

KILN_INSTANTIATE_DEVICES(LoaderDevice);

}  // namespace

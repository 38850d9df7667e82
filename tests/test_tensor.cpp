// Tensor basics: shapes, creation, element access, views sharing storage, dtype checks, device
// copies, host alignment, pinned memory, the counter-based RNG and device parsing.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/tensor_impl.h"  // kiln::Storage: alignment and pinned memory
#include "test_util.h"

using namespace kt;
using kiln::Shape;
using kiln::shape_str;

namespace {
std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
}  // namespace

// ---- CPU-only basics ---------------------------------------------------------------------------

TEST(TensorBasics, ShapeNumelStr) {
  EXPECT_EQ(kiln::shape_numel({}), 1);
  EXPECT_EQ(kiln::shape_numel({2, 0, 3}), 0);
  EXPECT_EQ(shape_str({128, 784}), "[128, 784]");
  EXPECT_EQ(shape_str({}), "[]");
  Tensor t = Tensor::empty({2, 3, 5});
  EXPECT_TRUE(t.defined());
  EXPECT_FALSE(Tensor().defined());
  EXPECT_EQ(t.shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 30);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(t.size(-1), 5);
  EXPECT_EQ(t.size(-3), 2);
  EXPECT_EQ(t.nbytes(), 30 * sizeof(float));
  EXPECT_EQ(t.dtype(), DType::Float32);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_EQ(t.str(), std::string(kiln::dtype_name(DType::Float32)) + "[2, 3, 5] on " + Device::cpu().str());
  EXPECT_EQ(kiln::dtype_size(DType::Float32), 4u);
  EXPECT_EQ(kiln::dtype_size(DType::Int64), 8u);
  EXPECT_EQ(kiln::dtype_size(DType::Int32), 4u);
  EXPECT_EQ(kiln::dtype_size(DType::UInt8), 1u);
}

// Sizes that come from users are bounded, but the element count itself never wraps: a shape whose
// product overflows, and a tensor whose byte size does, are errors naming the shape, not a bad_alloc
// or a small buffer written past its end.
TEST(TensorBasics, SizesThatOverflowAreErrors) {
  const std::int64_t big = std::int64_t{1} << 40;
  EXPECT_THROW(kiln::shape_numel({big, big}), kiln::Error);
  EXPECT_THROW(kiln::shape_numel({2, -3}), kiln::Error);
  try {
    Tensor::empty({std::int64_t{1} << 31, std::int64_t{1} << 31});  // 2^62 floats: 2^64 bytes
    ADD_FAILURE() << "no error";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2147483648, 2147483648]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tensor::empty({std::int64_t{1} << 40}), kiln::OutOfMemoryError);  // 4 TiB: over the host limit
}

TEST(CheckInRange, NamesTheFlagTheBoundsAndTheValue) {
  EXPECT_NO_THROW(kiln::check_in_range("--x", 5, 1, 5));
  try {
    kiln::check_in_range("--batch-size", -7, 1, 100);
    ADD_FAILURE() << "no error";
  } catch (const kiln::Error& e) {
    EXPECT_STREQ(e.what(), "--batch-size must be in [1, 100], got -7");
  }
}

TEST(TensorBasics, CreationAndElementAccess) {
  Tensor z = Tensor::zeros({3, 4});
  for (float v : z.to_vector()) EXPECT_EQ(v, 0.0f);
  Tensor f = Tensor::full({2, 2}, -1.25f);
  for (float v : f.to_vector()) EXPECT_EQ(v, -1.25f);
  Tensor s = Tensor::scalar(3.5f);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item(), 3.5f);
  EXPECT_EQ(Tensor::ones({5}).to_vector(), std::vector<float>(5, 1.0f));

  std::vector<float> vals{0, 1, 2, 3, 4, 5};
  Tensor m = Tensor::from_vector(vals, {2, 3});
  EXPECT_EQ(m.to_vector(), vals);
  EXPECT_EQ(m.at({1, 2}), 5.0f);
  EXPECT_EQ(m.at({0, 1}), 1.0f);
  m.set({1, 0}, 42.0f);
  EXPECT_EQ(m.at({1, 0}), 42.0f);
  EXPECT_EQ(m.to_vector()[3], 42.0f);
  EXPECT_THROW(Tensor::from_vector(vals, {4, 2}), kiln::Error) << "6 values for 8 elements";
  EXPECT_THROW(m.item(), kiln::Error) << "item() of a 6-element tensor";
}

TEST(TensorBasics, IntegerDtypes) {
  std::vector<std::int64_t> l{3, -1, 1LL << 40};
  Tensor t64 = Tensor::from_vector(l, {3});
  EXPECT_EQ(t64.dtype(), DType::Int64);
  EXPECT_EQ(t64.to_vector<std::int64_t>(), l);
  EXPECT_EQ(t64.at<std::int64_t>({2}), 1LL << 40);
  std::vector<std::int32_t> i{7, -8};
  Tensor t32 = Tensor::from_vector(i, {2, 1});
  EXPECT_EQ(t32.dtype(), DType::Int32);
  EXPECT_EQ(t32.nbytes(), 8u);
  t32.set<std::int32_t>({1, 0}, 9);
  EXPECT_EQ(t32.to_vector<std::int32_t>(), (std::vector<std::int32_t>{7, 9}));
  Tensor u8 = Tensor::from_vector(std::vector<std::uint8_t>{0, 255}, {2});
  EXPECT_EQ(u8.dtype(), DType::UInt8);
  EXPECT_EQ(u8.to_vector<std::uint8_t>()[1], 255);
  Tensor zi = Tensor::zeros({4}, DType::Int64);
  EXPECT_EQ(zi.to_vector<std::int64_t>(), std::vector<std::int64_t>(4, 0));
}

TEST(TensorBasics, DataChecksDtype) {
  Tensor f = Tensor::zeros({4});
  EXPECT_NE(f.data<float>(), nullptr);
  EXPECT_EQ(static_cast<void*>(f.data<float>()), f.raw_data());
  EXPECT_THROW(f.data<std::int32_t>(), kiln::Error);
  EXPECT_THROW(f.data<std::int64_t>(), kiln::Error);
  Tensor i = Tensor::zeros({4}, DType::Int64);
  EXPECT_THROW(i.data<float>(), kiln::Error);
  EXPECT_NO_THROW(i.data<std::int64_t>());
}

TEST(TensorBasics, ViewsShareStorage) {
  Tensor base = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {4, 3});
  Tensor r = base.reshape({2, 6});
  Tensor r2 = base.reshape({3, -1});
  Tensor fl = base.reshape({2, 2, 3}).flatten();
  Tensor all = base.reshape({2, 2, 3}).flatten(0);
  Tensor rows = base.narrow0(1, 2);
  Tensor det = base.detach();
  EXPECT_EQ(r.shape(), (Shape{2, 6}));
  EXPECT_EQ(r2.shape(), (Shape{3, 4}));
  EXPECT_EQ(fl.shape(), (Shape{2, 6}));
  EXPECT_EQ(all.shape(), (Shape{12}));
  EXPECT_EQ(rows.shape(), (Shape{2, 3}));
  for (const Tensor* v : {&r, &r2, &fl, &all, &rows, &det}) {
    EXPECT_TRUE(v->shares_storage(base)) << v->str();
  }
  EXPECT_EQ(r.raw_data(), base.raw_data()) << "reshape must not copy";
  EXPECT_EQ(rows.raw_data(), static_cast<void*>(base.data<float>() + 3)) << "narrow0 is an offset view";
  EXPECT_EQ(rows.at({0, 0}), 3.0f);
  EXPECT_EQ(rows.to_vector(), (std::vector<float>{3, 4, 5, 6, 7, 8}));
  // writes through a view are visible in the base and the other views
  rows.set({1, 2}, -8.0f);
  EXPECT_EQ(base.at({2, 2}), -8.0f);
  EXPECT_EQ(r.at({1, 2}), -8.0f);
  r.set({0, 0}, 100.0f);
  EXPECT_EQ(base.at({0, 0}), 100.0f);
  Tensor copy = base.clone();
  EXPECT_FALSE(copy.shares_storage(base));
  EXPECT_EQ(copy.to_vector(), base.to_vector());
  copy.set({0, 0}, 1.0f);
  EXPECT_EQ(base.at({0, 0}), 100.0f) << "clone must be deep";
  EXPECT_FALSE(Tensor::zeros({4, 3}).shares_storage(base));
}

TEST(TensorBasics, BadReshapeNamesBothShapes) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    t.reshape({4, 2});
    ADD_FAILURE() << "reshape [2, 3] -> [4, 2] did not throw";
  } catch (const kiln::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 2]"), std::string::npos) << msg;
  }
  EXPECT_THROW(t.reshape({-1, -1}), kiln::Error);
  EXPECT_THROW(t.reshape({4, -1}), kiln::Error);
  EXPECT_THROW(t.narrow0(1, 2), kiln::Error) << "rows [1, 3) of 2";
  EXPECT_THROW(t.narrow0(-1, 1), kiln::Error);
}

TEST(TensorBasics, HostStorageIs64ByteAligned) {
  for (std::int64_t n : {1, 3, 17, 1000, 4097}) {
    for (DType t : {DType::Float32, DType::UInt8, DType::Int64}) {
      Tensor x = Tensor::empty({n}, t);
      EXPECT_EQ(addr(x.raw_data()) % 64, 0u) << n << " " << kiln::dtype_name(t);
      EXPECT_EQ(addr(x.impl()->storage->data()) % 64, 0u);
      EXPECT_GE(x.impl()->storage->bytes(), x.nbytes());
    }
  }
}

TEST(TensorBasics, PinnedHostTensor) {
  // Works in every build; page-locked only where the CUDA runtime can provide it.
  Tensor p = Tensor::empty({1000}, DType::Float32, Device::cpu(), /*pinned=*/true);
  EXPECT_EQ(p.device(), Device::cpu());
  EXPECT_EQ(addr(p.raw_data()) % 64, 0u);
  if (kiln::cuda_available()) { EXPECT_TRUE(p.impl()->storage->pinned()); }
  kiln::fill_(p, 2.0f);
  EXPECT_EQ(p.to_vector(), std::vector<float>(1000, 2.0f));
  Tensor q = Tensor::zeros({10}).to(Device::cpu(), /*pinned=*/true);
  EXPECT_EQ(q.to_vector(), std::vector<float>(10, 0.0f));
}

// ---- RNG -------------------------------------------------------------------------------------------

TEST(RandomBasics, SameSeedSameNumbers) {
  kiln::Generator g1(42), g2(42), g3(43);
  std::vector<float> a = Tensor::randn({1000}, g1).to_vector(), b = Tensor::randn({1000}, g2).to_vector(),
                     c = Tensor::randn({1000}, g3).to_vector();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // a second draw continues the stream: it differs from the first
  EXPECT_NE(Tensor::randn({1000}, g1).to_vector(), a);
}

TEST(RandomBasics, OffsetAdvancesByNumelAndDrawsConcatenate) {
  kiln::Generator g(7);
  EXPECT_EQ(g.offset(), 0u);
  Tensor a = Tensor::rand({3, 5}, g);
  EXPECT_EQ(g.offset(), 15u);
  Tensor b = Tensor::rand({4}, g);
  EXPECT_EQ(g.offset(), 19u);
  Tensor n = Tensor::randn({6}, g);
  EXPECT_EQ(g.offset(), 25u);
  // element i of a draw is a function of (seed, offset + i): two draws equal one longer draw
  kiln::Generator h(7);
  std::vector<float> whole = Tensor::rand({19}, h).to_vector(), parts = a.to_vector();
  for (float v : b.to_vector()) parts.push_back(v);
  EXPECT_EQ(parts, whole);
  // restoring the state replays the stream
  g.set_state(7, 19);
  EXPECT_EQ(Tensor::randn({6}, g).to_vector(), n.to_vector());
}

TEST(RandomBasics, MatchesThePhiloxContract) {
  kiln::Generator g(1234);
  g.advance(100);
  std::vector<float> u = Tensor::rand({4096}, g).to_vector(), n = Tensor::randn({4096}, g).to_vector();
  double mean_u = 0, mean_n = 0, var_n = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    EXPECT_EQ(bits(u[i]), bits(kiln::philox::uniform(1234, 100 + i))) << i;
    EXPECT_EQ(bits(n[i]), bits(kiln::philox::normal(1234, 100 + 4096 + i))) << i;
    EXPECT_GE(u[i], 0.0f);
    EXPECT_LT(u[i], 1.0f);
    mean_u += u[i];
    mean_n += n[i];
    var_n += static_cast<double>(n[i]) * n[i];
  }
  mean_u /= 4096;
  mean_n /= 4096;
  var_n = var_n / 4096 - mean_n * mean_n;
  // 5 standard errors: sd(U) = 0.289, sd(N) = 1, sd of a variance estimate ~ sqrt(2/n)
  EXPECT_NEAR(mean_u, 0.5, 5 * 0.289 / 64);
  EXPECT_NEAR(mean_n, 0.0, 5 * 1.0 / 64);
  EXPECT_NEAR(var_n, 1.0, 5 * std::sqrt(2.0 / 4096));
}

// The fills draw a Philox block (four elements) at a time; at every alignment of the offset and
// every length, element i must still be uniform/normal(seed, offset + i), and no word is shared:
// the uniform and normal streams of one seed are not copies of each other.
TEST(RandomBasics, BlockwiseDrawsMatchTheElementContract) {
  for (std::uint64_t offset = 0; offset < 9; ++offset)
    for (std::int64_t n = 1; n <= 13; ++n) {
      kiln::Generator g(99);
      g.advance(offset);
      const std::vector<float> u = Tensor::rand({n}, g).to_vector();
      const std::vector<float> z = Tensor::randn({n}, g).to_vector();
      for (std::int64_t i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(i);
        ASSERT_EQ(bits(u[k]), bits(kiln::philox::uniform(99, offset + k))) << "offset " << offset << " n " << n;
        ASSERT_EQ(bits(z[k]), bits(kiln::philox::normal(99, offset + n + k))) << "offset " << offset << " n " << n;
      }
    }
  // The per-block helpers the CUDA kernels call (one thread per block), run here on the host.
  for (std::uint64_t offset = 0; offset < 9; ++offset)
    for (std::uint64_t n = 1; n <= 13; ++n) {
      std::vector<float> u(n, -1.0f), z(n, -1.0f);
      const std::uint64_t b0 = kiln::philox::first_block(offset), nb = kiln::philox::block_count(offset, n);
      for (std::uint64_t j = 0; j < nb; ++j) {
        kiln::philox::for_elements_in_block(kiln::philox::Uniforms{99}, offset, n, b0 + j,
                                            [&](std::uint64_t i, float v) { u[i] = v; });
        kiln::philox::for_elements_in_block(kiln::philox::Normals{99}, offset, n, b0 + j,
                                            [&](std::uint64_t i, float v) { z[i] = v; });
      }
      for (std::uint64_t i = 0; i < n; ++i) {
        ASSERT_EQ(bits(u[i]), bits(kiln::philox::uniform(99, offset + i))) << "offset " << offset << " n " << n;
        ASSERT_EQ(bits(z[i]), bits(kiln::philox::normal(99, offset + i))) << "offset " << offset << " n " << n;
      }
    }
  int same = 0;
  for (std::uint64_t i = 0; i < 1000; ++i)
    same += kiln::philox::uniform(3, i) == kiln::philox::uniform(3, i + 1) ||
            std::fabs(kiln::philox::normal(3, i) - kiln::philox::normal(3, i + 1)) < 1e-7f;
  EXPECT_LE(same, 1) << "neighbouring elements must not repeat each other";
}

TEST(RandomBasics, RangeAndMoments) {
  kiln::Generator g(5);
  std::vector<float> u = Tensor::rand({10000}, g, Device::cpu(), -2.0f, 3.0f).to_vector();
  std::vector<float> n = Tensor::randn({10000}, g, Device::cpu(), 10.0f, 0.5f).to_vector();
  double su = 0, sn = 0;
  for (float v : u) {
    EXPECT_GE(v, -2.0f);
    EXPECT_LT(v, 3.0f);
    su += v;
  }
  for (float v : n) sn += v;
  EXPECT_NEAR(su / 10000, 0.5, 5 * 5 * 0.289 / 100);
  EXPECT_NEAR(sn / 10000, 10.0, 5 * 0.5 / 100);
}

// ---- devices -------------------------------------------------------------------------------------

TEST(DeviceBasics, Parse) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  Device d = Device::parse("cuda:1");
  EXPECT_TRUE(d.is_cuda());
  EXPECT_EQ(d.index, 1);
  EXPECT_EQ(Device::parse("cuda:12").index, 12);
  EXPECT_EQ(Device::cuda(3).str(), "cuda:3");
  EXPECT_EQ(Device::parse(Device::cuda(2).str()), Device::cuda(2));
  EXPECT_EQ(Device::parse(Device::cpu().str()), Device::cpu());
  EXPECT_NE(Device::cuda(0), Device::cuda(1));
  EXPECT_NE(Device::cpu(), Device::cuda(0));
  for (const char* bad : {"", "tpu", "cuda:", "cuda:x", "cuda:-1", "cuda1", "cpu:0:0", "cuda:1x"}) {
    try {
      Device::parse(bad);
      ADD_FAILURE() << "Device::parse(\"" << bad << "\") did not throw";
    } catch (const kiln::Error& e) {
      if (*bad) { EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << "message should name the text: " << e.what(); }
    }
  }
}

TEST(DeviceBasics, AvailabilityIsConsistent) {
  EXPECT_NO_THROW(kiln::check_device_usable(Device::cpu()));
  EXPECT_THROW(kiln::check_device_usable(Device::cuda(999)), kiln::Error);
  if (!kiln::cuda_built()) { EXPECT_EQ(kiln::cuda_device_count(), 0); }
#if defined(KILN_WITH_CUDA)
  EXPECT_TRUE(kiln::cuda_built());
#else
  EXPECT_FALSE(kiln::cuda_built());
  EXPECT_EQ(kiln::cuda::versions().runtime, "not built");
#endif
  if (kiln::cuda_available()) {
    EXPECT_TRUE(kiln::cuda_unavailable_reason().empty());
    EXPECT_NO_THROW(kiln::check_device_usable(Device::cuda(0)));
  } else {
    EXPECT_FALSE(kiln::cuda_unavailable_reason().empty());
    EXPECT_THROW(kiln::check_device_usable(Device::cuda(0)), kiln::Error);
    EXPECT_THROW(Tensor::zeros({4}, DType::Float32, Device::cuda(0)), kiln::Error);
    EXPECT_THROW(Tensor::zeros({4}).to(Device::cuda(0)), kiln::Error);
  }
}

// ---- on every device -------------------------------------------------------------------------

class TensorDeviceTest : public DeviceTest {};

TEST_P(TensorDeviceTest, CreationOnDevice) {
  Tensor z = Tensor::zeros({37, 53}, DType::Float32, dev());
  EXPECT_EQ(z.device(), dev());
  EXPECT_EQ(z.str(), std::string("float32[37, 53] on ") + dev().str());
  expect_equal_values(z, DVec(37 * 53, 0.0), {37, 53}, "zeros");
  expect_equal_values(Tensor::full({257, 1031}, 0.75f, dev()), DVec(257 * 1031, 0.75), {257, 1031}, "full");
  std::vector<std::int64_t> l{5, -6, 7};
  Tensor t = Tensor::from_vector(l, {3}, dev());
  EXPECT_EQ(t.device(), dev());
  EXPECT_EQ(t.to_vector<std::int64_t>(), l);
  EXPECT_EQ(Tensor::scalar(-3.0f, dev()).item(), -3.0f);
  expect_equal_values(Tensor::zeros({5}, DType::Int32, dev()), DVec(5, 0.0), {5}, "int32 zeros");
}

TEST_P(TensorDeviceTest, CopiesRoundTrip) {
  Tensor x = randn_cpu({257, 1031}, 77);
  Tensor d = x.to(dev());
  EXPECT_EQ(d.device(), dev());
  EXPECT_EQ(d.shape(), x.shape());
  if (dev().is_cpu()) { EXPECT_TRUE(d.shares_storage(x)) << "to() the tensor's own device returns it"; }
  if (on_gpu()) { EXPECT_FALSE(d.shares_storage(x)); }
  Tensor back = d.to(Device::cpu());
  EXPECT_EQ(back.device(), Device::cpu());
  EXPECT_EQ(back.to_vector(), x.to_vector()) << "round trip must be bit-exact";
  Tensor pinned_back = d.to(Device::cpu(), /*pinned=*/true);
  EXPECT_EQ(pinned_back.to_vector(), x.to_vector());
  // clone and copy_ on the device
  Tensor c = d.clone();
  EXPECT_EQ(c.device(), dev());
  EXPECT_FALSE(c.shares_storage(d));
  EXPECT_EQ(c.to_vector(), x.to_vector());
  Tensor dst = Tensor::zeros({257, 1031}, DType::Float32, dev());
  dst.copy_(x);  // from the CPU
  EXPECT_EQ(dst.to_vector(), x.to_vector());
  Tensor host = Tensor::zeros({257, 1031});
  host.copy_(d);  // to the CPU
  EXPECT_EQ(host.to_vector(), x.to_vector());
  EXPECT_THROW(host.copy_(Tensor::zeros({3}, DType::Float32, dev())), kiln::Error) << "shape mismatch";
  EXPECT_THROW(host.copy_(Tensor::zeros({257, 1031}, DType::Int32, dev())), kiln::Error) << "dtype mismatch";
  // a narrowed view copies only its rows
  expect_equal_values(d.narrow0(100, 3).to(Device::cpu()), to_doubles(x.narrow0(100, 3)), {3, 1031}, "narrow0 on device");
  // int64 round trip
  std::vector<std::int64_t> l{1, -2, 1LL << 50};
  EXPECT_EQ(Tensor::from_vector(l, {3}).to(dev()).to(Device::cpu()).to_vector<std::int64_t>(), l);
}

TEST_P(TensorDeviceTest, RandomMatchesCpu) {
  // the same (seed, offset) gives the same numbers on every device
  for (std::int64_t n : {1, 1000, 257 * 1031}) {
    kiln::Generator gc(99), gd(99);
    gc.advance(5);
    gd.advance(5);
    Tensor uc = Tensor::rand({n}, gc, Device::cpu(), -1.0f, 2.0f), ud = Tensor::rand({n}, gd, dev(), -1.0f, 2.0f);
    Tensor nc = Tensor::randn({n}, gc, Device::cpu(), 0.5f, 2.0f), nd = Tensor::randn({n}, gd, dev(), 0.5f, 2.0f);
    EXPECT_EQ(ud.device(), dev());
    EXPECT_EQ(gc.offset(), gd.offset());
    EXPECT_EQ(gd.offset(), 5u + 2u * static_cast<std::uint64_t>(n));
    expect_equal_values(ud, to_doubles(uc), {n}, "uniform must be bit-identical to the CPU");
    // Box-Muller in double on both sides; allow the last bit of a device log/cos to differ
    expect_close(nd, nc, 1e-6, 1e-6, "normal vs the CPU");
  }
}

KILN_INSTANTIATE_DEVICES(TensorDeviceTest);

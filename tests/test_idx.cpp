// IDX reading (plain and gzip) and the MNIST loader: the tests write their own small fixture files
// (5 images of 4x3 and 5 labels) into a temporary directory, then damage them in every way the
// reader must catch. One test loads the real MNIST / Fashion-MNIST when they are on disk.
#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/tensor.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using kiln::DType;
using kiln::Shape;
using kiln::Tensor;

// A fresh directory under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kiln-idx-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const char* made = mkdtemp(buf.data());
    if (!made) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// An IDX file's bytes: magic 00 00 type ndims, big-endian dims, then the payload.
Bytes idx_bytes(const std::vector<std::uint32_t>& dims, const Bytes& payload, std::uint8_t type = 0x08) {
  Bytes b = {0x00, 0x00, type, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    b.push_back(static_cast<std::uint8_t>(d >> 24));
    b.push_back(static_cast<std::uint8_t>(d >> 16));
    b.push_back(static_cast<std::uint8_t>(d >> 8));
    b.push_back(static_cast<std::uint8_t>(d));
  }
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void write_plain(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << "cannot write " << path;
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile g = gzopen(path.c_str(), "wb9");
  ASSERT_NE(g, nullptr) << "cannot gzopen " << path;
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(g, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  }
  ASSERT_EQ(gzclose(g), Z_OK);
}

Bytes read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

constexpr int kN = 5, kH = 4, kW = 3;

// Pixel (n, y, x) = 50n + 3y + x: distinct, and spans a range of byte values.
Bytes image_payload(int n = kN) {
  Bytes p;
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < kH; ++y)
      for (int x = 0; x < kW; ++x) p.push_back(static_cast<std::uint8_t>(50 * i + 3 * y + x));
  return p;
}
const Bytes kLabels = {3, 0, 9, 7, 1};

Bytes image_file(int n = kN) { return idx_bytes({std::uint32_t(n), kH, kW}, image_payload(n)); }
Bytes label_file(const Bytes& labels = kLabels) { return idx_bytes({std::uint32_t(labels.size())}, labels); }

// Runs fn, which must throw kiln::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
    if (std::getenv("KILN_IDX_PRINT_ERRORS")) std::printf("  error: %s\n", msg.c_str());
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-kiln exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "no kiln::Error thrown";
}

void expect_fixture_images(const Tensor& t, const Shape& shape) {
  ASSERT_EQ(t.shape(), shape);
  ASSERT_EQ(t.dtype(), DType::UInt8);
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_EQ(t.to_vector<std::uint8_t>(), image_payload());
}

// ---- reading ------------------------------------------------------------------------------------

TEST(Idx, RoundTripPlain) {
  TempDir dir;
  write_plain(dir.file("img"), image_file());
  write_plain(dir.file("lbl"), label_file());
  expect_fixture_images(kiln::data::read_idx(dir.file("img")), {kN, kH, kW});
  Tensor l = kiln::data::read_idx(dir.file("lbl"));
  ASSERT_EQ(l.shape(), Shape({kN}));
  EXPECT_EQ(l.to_vector<std::uint8_t>(), kLabels);
  EXPECT_EQ((l.at<std::uint8_t>({2})), 9);
}

TEST(Idx, GzipMatchesPlain) {
  TempDir dir;
  write_plain(dir.file("img"), image_file());
  // Detected by the magic bytes, not the name: one gz file with and one without the suffix.
  write_gz(dir.file("img.gz"), image_file());
  write_gz(dir.file("img-compressed"), image_file());
  const auto plain = kiln::data::read_idx(dir.file("img")).to_vector<std::uint8_t>();
  expect_fixture_images(kiln::data::read_idx(dir.file("img.gz")), {kN, kH, kW});
  EXPECT_EQ(kiln::data::read_idx(dir.file("img.gz")).to_vector<std::uint8_t>(), plain);
  EXPECT_EQ(kiln::data::read_idx(dir.file("img-compressed")).to_vector<std::uint8_t>(), plain);
}

TEST(Idx, OneToFourDimensions) {
  TempDir dir;
  const Bytes payload = image_payload();  // 60 bytes
  const std::vector<std::vector<std::uint32_t>> shapes = {{60}, {6, 10}, {5, 4, 3}, {5, 2, 2, 3}};
  for (const auto& dims : shapes) {
    write_plain(dir.file("t"), idx_bytes(dims, payload));
    Tensor t = kiln::data::read_idx(dir.file("t"));
    EXPECT_EQ(t.dim(), static_cast<std::int64_t>(dims.size()));
    EXPECT_EQ(t.numel(), 60);
    EXPECT_EQ(t.to_vector<std::uint8_t>(), payload);
  }
}

// ---- the loader ---------------------------------------------------------------------------------

TEST(MnistLoad, FixtureDirPlainAndGzip) {
  TempDir dir;
  // train split plain, test split compressed (with a different label order).
  write_plain(dir.file("train-images-idx3-ubyte"), image_file());
  write_plain(dir.file("train-labels-idx1-ubyte"), label_file());
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), image_file());
  const Bytes test_labels = {9, 8, 7, 6, 5};
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), label_file(test_labels));

  kiln::data::Dataset train = kiln::data::load_mnist(dir.str(), true);
  expect_fixture_images(train.images, {kN, 1, kH, kW});
  ASSERT_EQ(train.labels.shape(), Shape({kN}));
  ASSERT_EQ(train.labels.dtype(), DType::Int32);
  EXPECT_EQ(train.labels.to_vector<std::int32_t>(), (std::vector<std::int32_t>{3, 0, 9, 7, 1}));
  EXPECT_EQ(train.size(), kN);
  EXPECT_EQ(train.num_classes, 10);
  ASSERT_EQ(train.class_names.size(), 10u);
  EXPECT_EQ(train.class_names[0], "0");
  EXPECT_EQ(train.class_names[9], "9");

  kiln::data::Dataset test = kiln::data::load_mnist(dir.str() + "/", false, "fashion-mnist");
  expect_fixture_images(test.images, {kN, 1, kH, kW});
  EXPECT_EQ(test.labels.to_vector<std::int32_t>(), (std::vector<std::int32_t>{9, 8, 7, 6, 5}));
  EXPECT_EQ(test.num_classes, 10);
  const std::vector<std::string> fashion = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  EXPECT_EQ(test.class_names, fashion);
}

TEST(MnistLoad, PlainPreferredOverGzip) {
  TempDir dir;
  write_plain(dir.file("train-images-idx3-ubyte"), image_file());
  write_plain(dir.file("train-labels-idx1-ubyte"), label_file());
  write_plain(dir.file("train-labels-idx1-ubyte.gz"), Bytes{'j', 'u', 'n', 'k'});  // never opened
  EXPECT_EQ(kiln::data::load_mnist(dir.str(), true).size(), kN);
}

// ---- damaged files: each error names the file and what is wrong ------------------------------------

TEST(IdxErrors, BadMagic) {
  TempDir dir;
  Bytes b = image_file();
  b[0] = 0x50;  // e.g. a PNG or text file
  b[1] = 0x4B;
  write_plain(dir.file("img"), b);
  expect_error([&] { kiln::data::read_idx(dir.file("img")); }, {dir.file("img"), "bad magic number", "not an IDX file"});
}

TEST(IdxErrors, WrongTypeCode) {
  TempDir dir;
  write_plain(dir.file("f32"), idx_bytes({kN, kH, kW}, Bytes(4 * kN * kH * kW, 0), 0x0D));
  expect_error([&] { kiln::data::read_idx(dir.file("f32")); },
               {dir.file("f32"), "type code 0x0D", "float32", "only 0x08 (unsigned byte)"});
}

TEST(IdxErrors, BadDimensionCount) {
  TempDir dir;
  write_plain(dir.file("d0"), Bytes{0, 0, 0x08, 0});
  expect_error([&] { kiln::data::read_idx(dir.file("d0")); }, {dir.file("d0"), "dimension count 0"});
  write_plain(dir.file("d5"), idx_bytes({1, 1, 1, 1, 1}, Bytes{7}));
  expect_error([&] { kiln::data::read_idx(dir.file("d5")); }, {dir.file("d5"), "dimension count 5"});
}

TEST(IdxErrors, DimensionOverflow) {
  TempDir dir;
  write_plain(dir.file("big"), idx_bytes({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 2}, Bytes{}));
  expect_error([&] { kiln::data::read_idx(dir.file("big")); }, {dir.file("big"), "overflow"});
}

TEST(IdxErrors, TruncatedPayload) {
  TempDir dir;
  Bytes b = image_file();
  b.resize(b.size() - 7);
  write_plain(dir.file("img"), b);
  expect_error([&] { kiln::data::read_idx(dir.file("img")); },
               {dir.file("img"), "truncated payload", "exactly 60 bytes", "holds 53"});
  write_gz(dir.file("img.gz"), b);
  expect_error([&] { kiln::data::read_idx(dir.file("img.gz")); },
               {dir.file("img.gz"), "truncated payload", "decompressed stream holds 53"});
}

TEST(IdxErrors, TrailingBytes) {
  TempDir dir;
  Bytes b = image_file();
  b.push_back(1);
  b.push_back(2);
  write_plain(dir.file("img"), b);
  expect_error([&] { kiln::data::read_idx(dir.file("img")); },
               {dir.file("img"), "trailing bytes", "exactly 60 bytes", "holds 62"});
  write_gz(dir.file("img.gz"), b);
  expect_error([&] { kiln::data::read_idx(dir.file("img.gz")); },
               {dir.file("img.gz"), "trailing bytes", "decompressed stream holds 62"});
}

TEST(IdxErrors, TruncatedHeader) {
  TempDir dir;
  write_plain(dir.file("short"), Bytes{0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x00});  // 3 dims, 3 bytes of them
  expect_error([&] { kiln::data::read_idx(dir.file("short")); },
               {dir.file("short"), "truncated header", "need 12 bytes", "has only 3 more"});
  write_plain(dir.file("tiny"), Bytes{0x00, 0x00});
  expect_error([&] { kiln::data::read_idx(dir.file("tiny")); }, {dir.file("tiny"), "truncated header"});
  write_plain(dir.file("empty"), Bytes{});
  expect_error([&] { kiln::data::read_idx(dir.file("empty")); }, {dir.file("empty"), "truncated header"});
  write_gz(dir.file("short.gz"), Bytes{0x00, 0x00, 0x08, 0x01, 0x00});
  expect_error([&] { kiln::data::read_idx(dir.file("short.gz")); }, {dir.file("short.gz"), "truncated header"});
}

TEST(IdxErrors, CorruptGzip) {
  TempDir dir;
  // Enough data for a real deflate stream.
  Bytes payload(20000);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>((i * 7919) ^ (i >> 5));
  write_gz(dir.file("ok.gz"), idx_bytes({20000}, payload));
  ASSERT_EQ(kiln::data::read_idx(dir.file("ok.gz")).to_vector<std::uint8_t>(), payload);
  const Bytes good = read_all(dir.file("ok.gz"));
  ASSERT_GT(good.size(), 100u);

  Bytes bad_crc = good;  // the trailer is CRC-32 then length: damage the CRC
  bad_crc[bad_crc.size() - 8] ^= 0xFF;
  write_plain(dir.file("crc.gz"), bad_crc);
  expect_error([&] { kiln::data::read_idx(dir.file("crc.gz")); }, {dir.file("crc.gz"), "corrupt gzip stream"});

  Bytes cut = good;  // the compressed file cut in half
  cut.resize(good.size() / 2);
  write_plain(dir.file("cut.gz"), cut);
  expect_error([&] { kiln::data::read_idx(dir.file("cut.gz")); }, {dir.file("cut.gz"), "corrupt gzip stream"});

  Bytes garbage = good;  // gzip magic followed by nonsense
  for (std::size_t i = 2; i < garbage.size(); ++i) garbage[i] = static_cast<std::uint8_t>(0xA5 ^ i);
  write_plain(dir.file("garbage.gz"), garbage);
  expect_error([&] { kiln::data::read_idx(dir.file("garbage.gz")); }, {dir.file("garbage.gz"), "corrupt gzip stream"});
}

TEST(IdxErrors, MissingFile) {
  TempDir dir;
  expect_error([&] { kiln::data::read_idx(dir.file("nope")); },
               {"cannot open " + dir.file("nope") + ": No such file or directory"});
}

TEST(MnistLoadErrors, MissingFilesSuggestFetchScript) {
  TempDir dir;
  expect_error([&] { kiln::data::load_mnist(dir.str(), true); },
               {dir.file("train-images-idx3-ubyte"), dir.file("train-images-idx3-ubyte.gz"), "data/fetch-mnist.sh"});
  write_plain(dir.file("t10k-images-idx3-ubyte"), image_file());
  expect_error([&] { kiln::data::load_mnist(dir.str(), false, "fashion-mnist"); },
               {dir.file("t10k-labels-idx1-ubyte"), dir.file("t10k-labels-idx1-ubyte.gz"),
                "data/fetch-fashion-mnist.sh"});
}

TEST(MnistLoadErrors, UnknownName) {
  TempDir dir;
  expect_error([&] { kiln::data::load_mnist(dir.str(), true, "cifar10"); }, {"unknown dataset name 'cifar10'"});
}

TEST(MnistLoadErrors, CountMismatch) {
  TempDir dir;
  write_plain(dir.file("train-images-idx3-ubyte"), image_file());
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), label_file({1, 2, 3, 4}));
  expect_error([&] { kiln::data::load_mnist(dir.str(), true); },
               {"count mismatch", dir.file("train-images-idx3-ubyte"), "holds 5 images",
                dir.file("train-labels-idx1-ubyte.gz"), "holds 4 labels"});
}

TEST(MnistLoadErrors, LabelOutOfRange) {
  TempDir dir;
  write_plain(dir.file("train-images-idx3-ubyte"), image_file());
  write_plain(dir.file("train-labels-idx1-ubyte"), label_file({1, 2, 3, 10, 4}));
  expect_error([&] { kiln::data::load_mnist(dir.str(), true); },
               {dir.file("train-labels-idx1-ubyte"), "label 10 at index 3", "out of range [0, 10)"});
}

TEST(MnistLoadErrors, WrongRank) {
  TempDir dir;
  write_plain(dir.file("train-images-idx3-ubyte"), idx_bytes({kN, kH * kW}, image_payload()));
  write_plain(dir.file("train-labels-idx1-ubyte"), label_file());
  expect_error([&] { kiln::data::load_mnist(dir.str(), true); },
               {dir.file("train-images-idx3-ubyte"), "expected 3-D images", "[5, 12]"});
  write_plain(dir.file("train-images-idx3-ubyte"), image_file());
  write_plain(dir.file("train-labels-idx1-ubyte"), idx_bytes({kN, 1}, kLabels));
  expect_error([&] { kiln::data::load_mnist(dir.str(), true); },
               {dir.file("train-labels-idx1-ubyte"), "expected 1-D labels", "[5, 1]"});
}

// ---- the real datasets, when present ----------------------------------------------------------

// $ENV_VAR, else <repo>/data/<sub> (found from this source file's path).
std::string dataset_dir(const char* env_var, const char* sub) {
  if (const char* e = std::getenv(env_var); e && *e) return e;
  return (fs::path(__FILE__).parent_path().parent_path() / "data" / sub).string();
}

bool has_split_files(const std::string& dir) {
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"})
    if (!fs::exists(fs::path(dir) / f) && !fs::exists(fs::path(dir) / (std::string(f) + ".gz"))) return false;
  return true;
}

std::array<std::int64_t, 10> class_counts(const Tensor& labels) {
  std::array<std::int64_t, 10> c{};
  for (std::int32_t l : labels.to_vector<std::int32_t>()) ++c[static_cast<std::size_t>(l)];
  return c;
}

void check_real(const std::string& dir, const std::string& name, const std::array<std::int64_t, 10>& train_counts,
                const std::array<std::int64_t, 10>& test_counts, int first_train, int first_test) {
  for (bool train : {true, false}) {
    SCOPED_TRACE(name + (train ? " train" : " test"));
    kiln::data::Dataset ds = kiln::data::load_mnist(dir, train, name);
    const std::int64_t n = train ? 60000 : 10000;
    EXPECT_EQ(ds.size(), n);
    EXPECT_EQ(ds.images.shape(), Shape({n, 1, 28, 28}));
    EXPECT_EQ(ds.images.dtype(), DType::UInt8);
    EXPECT_EQ(ds.labels.shape(), Shape({n}));
    EXPECT_EQ(ds.labels.dtype(), DType::Int32);
    EXPECT_EQ(class_counts(ds.labels), train ? train_counts : test_counts);
    EXPECT_EQ((ds.labels.at<std::int32_t>({0})), train ? first_train : first_test);
    const auto* px = static_cast<const std::uint8_t*>(ds.images.raw_data());
    std::uint8_t hi = 0;
    for (std::int64_t i = 0; i < ds.images.numel(); ++i) hi = std::max(hi, px[i]);
    EXPECT_EQ(hi, 255);
  }
}

TEST(MnistReal, Mnist) {
  const std::string dir = dataset_dir("KILN_MNIST_DIR", "mnist");
  if (!has_split_files(dir)) GTEST_SKIP() << "MNIST not found in " << dir << " (run data/fetch-mnist.sh or set KILN_MNIST_DIR)";
  check_real(dir, "mnist", {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949},
             {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}, 5, 7);
}

TEST(MnistReal, FashionMnist) {
  const std::string dir = dataset_dir("KILN_FASHION_MNIST_DIR", "fashion-mnist");
  if (!has_split_files(dir))
    GTEST_SKIP() << "Fashion-MNIST not found in " << dir
                 << " (run data/fetch-fashion-mnist.sh or set KILN_FASHION_MNIST_DIR)";
  std::array<std::int64_t, 10> train, test;
  train.fill(6000);
  test.fill(1000);
  check_real(dir, "fashion-mnist", train, test, 9, 9);
}

}  // namespace

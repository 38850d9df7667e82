// safetensors checkpoints: round trips, the on-disk layout, files written the way the reference
// (Python/PyTorch) writer writes them, rejection of corrupt files, and atomic replacement.
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "kiln/device.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/tensor.h"

namespace {

using kiln::DType;
using kiln::Shape;
using kiln::Tensor;
using kiln::io::load_safetensors;
using kiln::io::NamedTensors;
using kiln::io::save_safetensors;

// A fresh folder under the test temp dir, removed with everything in it at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = ::testing::TempDir();
    if (tmpl.empty()) tmpl = "/tmp/";
    if (tmpl.back() != '/') tmpl += '/';
    tmpl += "kiln_st_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
    return out;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from a header text and a data buffer, exactly as given (no padding added).
std::string st_file(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// The header is padded with spaces to a multiple of 8, as safetensors' own writer does.
std::string st_file_padded(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return st_file(header, data);
}

std::string tensor_bytes(const Tensor& t) {
  const Tensor h = t.to(kiln::Device::cpu());
  return std::string(static_cast<const char*>(h.raw_data()), h.nbytes());
}

// A CPU tensor of the given shape and dtype filled with a deterministic byte pattern.
Tensor patterned(const Shape& shape, DType dtype, unsigned seed) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<unsigned char*>(t.raw_data());
  for (std::size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>((i * 131 + seed * 17 + 7) & 0xFF);
  return t;
}

// Runs load_safetensors(path), which must throw a kiln::Error whose message names the file and
// contains `needle`; returns the message.
std::string load_error(const std::string& path, const std::string& needle) {
  try {
    load_safetensors(path);
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message lacks '" << needle << "': " << msg;
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected kiln::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "loading " << path << " did not throw (expected '" << needle << "')";
  return "";
}

bool has_tmp_file(const TempDir& dir) {
  for (const auto& e : dir.entries())
    if (e.find(".tmp.") != std::string::npos) return true;
  return false;
}

// ---- round trips --------------------------------------------------------------------------------

TEST(Safetensors, RoundTripDtypesAndShapes) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  Tensor base = patterned({4, 3}, DType::Float32, 9);
  NamedTensors in = {
      {"fc1.weight", Tensor::from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f}, {2, 3})},
      {"counts", Tensor::from_vector<std::int32_t>({-1, 0, 2147483647, -2147483647 - 1, 5}, {5})},
      {"ids", Tensor::from_vector<std::int64_t>({INT64_MIN, -1, 0, INT64_MAX, 1LL << 40, 7, 8, 9}, {2, 2, 2})},
      {"bytes", Tensor::from_vector<std::uint8_t>({0, 1, 2, 127, 128, 254, 255}, {7})},  // odd size
      {"half", patterned({3, 1}, DType::Float16, 1)},
      {"bhalf", patterned({2, 2}, DType::BFloat16, 2)},
      {"step", Tensor::scalar(42.5f)},                       // shape []
      {"empty", Tensor::empty({0, 4}, DType::Float32)},      // zero-size
      {"empty_i64", Tensor::empty({0}, DType::Int64)},       // zero-size, another dtype
      {"rows", base.narrow0(1, 2)},                          // a view: only its own rows are saved
      {"big", patterned({3, 5, 7, 2}, DType::Float32, 3)},
  };
  save_safetensors(path, in);
  const auto file = load_safetensors(path);

  EXPECT_TRUE(file.metadata.empty());
  ASSERT_EQ(file.tensors.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(in[i].first);
    // The writer lays tensors out in the given order, and the reader returns them in data order.
    EXPECT_EQ(file.tensors[i].first, in[i].first);
    const Tensor& t = file.tensors[i].second;
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_EQ(t.dtype(), in[i].second.dtype());
    EXPECT_EQ(t.shape(), in[i].second.shape());
    EXPECT_EQ(tensor_bytes(t), tensor_bytes(in[i].second));
  }
  EXPECT_EQ(file.find("step")->dim(), 0);
  EXPECT_FLOAT_EQ(file.find("step")->item(), 42.5f);
  EXPECT_EQ(file.find("ids")->to_vector<std::int64_t>()[0], INT64_MIN);
  EXPECT_EQ(file.find("rows")->to_vector<float>(), base.narrow0(1, 2).to_vector<float>());
  EXPECT_EQ(file.find("no such tensor"), nullptr);
  EXPECT_FALSE(has_tmp_file(dir));
}

TEST(Safetensors, RoundTripNoTensors) {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  save_safetensors(path, {});
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(bytes, st_file("{}      ", ""));  // "{}" padded to 8
  const auto file = load_safetensors(path);
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.metadata.empty());
}

TEST(Safetensors, MetadataAndNamesWithEscapes) {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  const std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"quote\"key", "back\\slash / slash"},
      {"controls", std::string("nl\n tab\t cr\r bs\b ff\f bell\x07 nul") + '\0' + "end"},
      {"unicode", "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9D\x84\x9E"},  // héllo ✓ 𝄞
      {"json", "{\"lr\": 0.001, \"betas\": [0.9, 0.999]}"},
      {"", "empty key"},
      {"empty value", ""},
  };
  const std::string odd_name = "layer\"1\"\\w\n\xC3\xA9";
  save_safetensors(path, {{odd_name, Tensor::ones({2})}, {"b", Tensor::zeros({1})}}, meta);
  const auto file = load_safetensors(path);
  EXPECT_EQ(file.metadata, meta);
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, odd_name);
  ASSERT_NE(file.find(odd_name), nullptr);
  EXPECT_EQ(file.find(odd_name)->to_vector<float>(), (std::vector<float>{1.0f, 1.0f}));

  // The header is JSON with those characters escaped: no raw control characters inside it.
  const std::string bytes = read_bytes(path);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  const std::string header = bytes.substr(8, n);
  for (const char c : header) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control character in header";
  EXPECT_NE(header.find("\"__metadata__\":{"), std::string::npos) << header;
  EXPECT_NE(header.find("quote\\\"key"), std::string::npos) << header;
  EXPECT_NE(header.find("\\u0000end"), std::string::npos) << header;
}

TEST(Safetensors, SaveRejectsBadInput) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  EXPECT_THROW(save_safetensors(path, {{"a", Tensor::ones({1})}, {"a", Tensor::ones({1})}}), kiln::Error);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", Tensor::ones({1})}}), kiln::Error);
  EXPECT_THROW(save_safetensors(path, {{"a", Tensor()}}), kiln::Error);
  EXPECT_THROW(save_safetensors(path, {{"bad\xFF utf8", Tensor::ones({1})}}), kiln::Error);
  EXPECT_THROW(save_safetensors(path, {}, {{"k", "bad \xC3"}}), kiln::Error);
  EXPECT_TRUE(dir.entries().empty()) << "a rejected save left files behind";
}

// ---- layout -------------------------------------------------------------------------------------

TEST(Safetensors, HeaderIsPaddedSoDataStartsAligned) {
  TempDir dir;
  // Names of every length mod 8, so every amount of padding (0..7) occurs.
  for (int len = 1; len <= 16; ++len) {
    SCOPED_TRACE(len);
    const std::string path = dir.file("align" + std::to_string(len) + ".safetensors");
    const Tensor w = patterned({3}, DType::Float32, static_cast<unsigned>(len));
    const Tensor b = patterned({5}, DType::UInt8, 4);
    save_safetensors(path, {{std::string(static_cast<std::size_t>(len), 'w'), w}, {"b", b}});
    const std::string bytes = read_bytes(path);
    ASSERT_GE(bytes.size(), 8u);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ((8 + n) % 8, 0u);
    ASSERT_EQ(bytes.size(), 8 + n + 12 + 5) << "data is laid out back to back";
    const std::string header = bytes.substr(8, n);
    const std::size_t close = header.find_last_not_of(' ');
    ASSERT_NE(close, std::string::npos);
    EXPECT_EQ(header[close], '}');
    EXPECT_LT(header.size() - 1 - close, 8u) << "at most 7 spaces of padding";
    EXPECT_EQ(header.find("__metadata__"), std::string::npos) << "no metadata key without metadata";
    // Data in the given order right after the header.
    EXPECT_EQ(bytes.substr(8 + n, 12), tensor_bytes(w));
    EXPECT_EQ(bytes.substr(8 + n + 12), tensor_bytes(b));
  }
}

TEST(Safetensors, LoadsFileBuiltLikeTheReferenceWriter) {
  TempDir dir;
  // What safetensors.torch.save_file({"a": torch.tensor([1.0, 2.0])}) writes: compact JSON, no
  // metadata, padded with spaces so that the data is 8-byte aligned.
  std::string data(8, '\0');
  const float a[2] = {1.0f, 2.0f};
  std::memcpy(&data[0], a, 8);
  const std::string path = dir.file("torch.safetensors");
  write_bytes(path, st_file_padded(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
  auto file = load_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors[0].first, "a");
  EXPECT_EQ(file.tensors[0].second.shape(), (Shape{2}));
  EXPECT_EQ(file.tensors[0].second.to_vector<float>(), (std::vector<float>{1.0f, 2.0f}));

  // Unpadded, too (other writers need not align).
  const std::string path2 = dir.file("unpadded.safetensors");
  write_bytes(path2, st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
  EXPECT_EQ(load_safetensors(path2).find("a")->to_vector<float>(), (std::vector<float>{1.0f, 2.0f}));

  // Metadata, whitespace, \u escapes, keys in an order other than the data's, an extra field
  // (ignored, as the reference reader does), I64 / U8 / BF16 and a zero-size tensor.
  std::string data3;
  const std::int64_t steps[2] = {-3, 1LL << 50};
  data3.append(reinterpret_cast<const char*>(steps), 16);       // [0, 16)  "steps"
  data3 += std::string("\x3f\x80\x40\x00", 4);                  // [16, 20) "b16": two BF16 values
  data3 += std::string("\x01\x02\x03", 3);                      // [20, 23) "\u00e9"
  const std::string header3 = R"( {
    "\u00e9" : {"dtype": "U8", "shape": [3], "data_offsets": [20, 23]},
    "__metadata__": {"format": "pt", "note": "line\nbreak \"quoted\" \ud834\udd1e"},
    "b16": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [16, 20], "extra": [1, {"x": null}, true, -1.5e3]},
    "none": {"dtype": "F32", "shape": [3, 0], "data_offsets": [23, 23]},
    "steps": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}
  } )";
  const std::string path3 = dir.file("handmade.safetensors");
  write_bytes(path3, st_file(header3, data3));
  file = load_safetensors(path3);
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_EQ(file.metadata.at("note"), "line\nbreak \"quoted\" \xF0\x9D\x84\x9E");
  ASSERT_EQ(file.tensors.size(), 4u);
  // Sorted by data offset, not by header order.
  EXPECT_EQ(file.tensors[0].first, "steps");
  EXPECT_EQ(file.tensors[1].first, "b16");
  EXPECT_EQ(file.tensors[2].first, "\xC3\xA9");
  EXPECT_EQ(file.tensors[3].first, "none");
  EXPECT_EQ(file.find("steps")->to_vector<std::int64_t>(), (std::vector<std::int64_t>{-3, 1LL << 50}));
  EXPECT_EQ(file.find("b16")->dtype(), DType::BFloat16);
  EXPECT_EQ(file.find("b16")->shape(), (Shape{1, 2}));
  EXPECT_EQ(tensor_bytes(*file.find("b16")), std::string("\x3f\x80\x40\x00", 4));
  EXPECT_EQ(file.find("\xC3\xA9")->to_vector<std::uint8_t>(), (std::vector<std::uint8_t>{1, 2, 3}));
  EXPECT_EQ(file.find("none")->shape(), (Shape{3, 0}));
  EXPECT_EQ(file.find("none")->numel(), 0);
}

// ---- corrupt files ------------------------------------------------------------------------------

TEST(Safetensors, RejectsMissingEmptyAndShortFiles) {
  TempDir dir;
  const std::string missing = dir.file("missing.safetensors");
  const std::string msg = load_error(missing, "No such file or directory");
  EXPECT_EQ(msg, "cannot open " + missing + ": No such file or directory");

  const std::string empty = dir.file("empty.safetensors");
  write_bytes(empty, "");
  load_error(empty, "empty");

  const std::string tiny = dir.file("tiny.safetensors");
  write_bytes(tiny, std::string("\x02\0\0\0", 4));
  load_error(tiny, "fewer than the 8-byte header length");

  load_error(dir.path, "not a regular file");
}

TEST(Safetensors, RejectsTruncatedFiles) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"w", patterned({10, 10}, DType::Float32, 5)}, {"b", patterned({10}, DType::Float32, 6)}});
  const std::string bytes = read_bytes(good);

  // Cut inside the data: the last tensor runs past the end.
  const std::string cut_data = dir.file("cut_data.safetensors");
  write_bytes(cut_data, bytes.substr(0, bytes.size() - 4));
  load_error(cut_data, "tensor 'b': data_offsets [400, 440] run past the end of the data");

  // Cut inside the header.
  const std::string cut_header = dir.file("cut_header.safetensors");
  write_bytes(cut_header, bytes.substr(0, 30));
  load_error(cut_header, "truncated: header says");

  // The example from the docs: a header length far beyond a 100-byte file.
  const std::string x = dir.file("x.safetensors");
  write_bytes(x, u64_le(5000) + std::string(92, ' '));
  const std::string msg = load_error(x, "truncated");
  EXPECT_EQ(msg, x + ": truncated: header says 5000 bytes but the file has 100 bytes");
}

TEST(Safetensors, RejectsHeaderLengthTooLarge) {
  TempDir dir;
  const std::string hdr = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string file = st_file(hdr, std::string(8, '\0'));

  // One byte more than the file holds after the length.
  const std::string path = dir.file("long.safetensors");
  write_bytes(path, u64_le(file.size() - 8 + 1) + file.substr(8));
  load_error(path, "truncated: header says");

  // Absurd lengths (garbage, or not a safetensors file) are refused before any allocation.
  const std::string huge = dir.file("huge.safetensors");
  write_bytes(huge, u64_le(0xFFFFFFFFFFFFFFF0ull) + file.substr(8));
  load_error(huge, "limit");
  const std::string over = dir.file("over.safetensors");
  write_bytes(over, u64_le(100'000'001) + file.substr(8));
  load_error(over, "limit");
}

TEST(Safetensors, RejectsBadJson) {
  TempDir dir;
  const std::string d8(8, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})", "malformed JSON"},   // trailing comma
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", "malformed JSON"},     // unclosed
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x)", "after the JSON value"},
      {R"({"a":{"dtype":'F32',"shape":[2],"data_offsets":[0,8]}})", "malformed JSON"},     // single quotes
      {R"({a:{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "expected a string key"},
      {R"({"a\x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "invalid escape"},
      {R"({"a\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "surrogate"},
      {R"({"a\u12G4":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "hex digit"},
      {"{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "control character"},
      {"{\"a\xFF\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "UTF-8"},
      {R"({"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}})", "leading zero"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       "duplicate key"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"dtype":"F32"}})", "duplicate key"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}, /* c */ })", "malformed JSON"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":tru})", "invalid literal"},
      {R"([{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}])", "must be a JSON object"},
      {R"("just a string")", "must be a JSON object"},
      {"  ", "unexpected end of header"},
      {std::string(200, '[') + std::string(200, ']'), "nesting deeper"},
  };
  int k = 0;
  for (const auto& [header, needle] : cases) {
    SCOPED_TRACE(header);
    const std::string path = dir.file("bad" + std::to_string(k++) + ".safetensors");
    write_bytes(path, st_file(header, d8));
    load_error(path, needle);
  }
}

TEST(Safetensors, RejectsUnsupportedDtypes) {
  TempDir dir;
  int k = 0;
  for (const std::string dtype : {"F64", "I8", "BOOL", "U16", "F8_E4M3", "XYZ", "f32"}) {
    SCOPED_TRACE(dtype);
    const std::string path = dir.file("dtype" + std::to_string(k++) + ".safetensors");
    write_bytes(path, st_file_padded(R"({"enc.w":{"dtype":")" + dtype + R"(","shape":[2],"data_offsets":[0,8]}})",
                                     std::string(8, '\0')));
    load_error(path, "tensor 'enc.w': unsupported dtype \"" + dtype + "\"");
  }
  const std::string path = dir.file("dtype_num.safetensors");
  write_bytes(path, st_file(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  load_error(path, "tensor 'w': dtype must be a string");
}

TEST(Safetensors, RejectsOffsetsThatDoNotMatch) {
  TempDir dir;
  const std::string path = dir.file("checkpoint.safetensors");
  write_bytes(path, st_file_padded(R"({"0.weight":{"dtype":"F32","shape":[10,784],"data_offsets":[0,100]}})",
                                   std::string(100, '\0')));
  const std::string msg = load_error(path, "do not match");
  EXPECT_EQ(msg, path + ": tensor '0.weight': data_offsets [0, 100] do not match shape [10, 784] of F32 (31360 bytes)");

  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "end before they begin"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", "run past the end of the data (8 bytes)"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "data_offsets must be an array [begin, end]"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", "data_offsets must be an array [begin, end]"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", "non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", "non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}})", "non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "shape entries must be non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", "shape entries must be non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", "shape must be an array"},
      {R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", "too large"},
      {R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", "too large"},
      {R"({"t":{"dtype":"F32","shape":[1]}})", "missing \"data_offsets\""},
      {R"({"t":{"shape":[2],"data_offsets":[0,8]}})", "missing \"dtype\""},
      {R"({"t":[1,2]})", "tensor 't': expected an object"},
      {R"({"__metadata__":{"epoch":3},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       "\"__metadata__\" value of 'epoch' must be a string"},
      {R"({"__metadata__":["a"]})", "\"__metadata__\" must be an object"},
  };
  int k = 0;
  for (const auto& [header, needle] : cases) {
    SCOPED_TRACE(header);
    const std::string p = dir.file("off" + std::to_string(k++) + ".safetensors");
    write_bytes(p, st_file(header, std::string(8, '\0')));
    load_error(p, needle);
  }
}

TEST(Safetensors, RejectsOverlappingTensors) {
  TempDir dir;
  const std::string path = dir.file("overlap.safetensors");
  write_bytes(path, st_file_padded(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   std::string(12, '\0')));
  load_error(path, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");

  // The same range twice (aliasing) is an overlap too.
  const std::string twice = dir.file("twice.safetensors");
  write_bytes(twice, st_file_padded(R"({"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                    std::string(8, '\0')));
  load_error(twice, "overlap");

  // Adjacent ranges and zero-size tensors at a boundary are fine.
  const std::string ok = dir.file("adjacent.safetensors");
  write_bytes(ok, st_file_padded(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                 std::string(12, '\0')));
  const auto file = load_safetensors(ok);
  ASSERT_EQ(file.tensors.size(), 3u);
  EXPECT_EQ(file.tensors[0].first, "a");
  EXPECT_EQ(file.tensors[1].first, "z");
  EXPECT_EQ(file.tensors[2].first, "b");
}

// ---- atomic replacement -------------------------------------------------------------------------

TEST(Safetensors, SaveReplacesExistingFile) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", patterned({100}, DType::Float32, 1)}}, {{"epoch", "1"}});
  save_safetensors(path, {{"w", patterned({3}, DType::Float32, 2)}}, {{"epoch", "2"}});
  const auto file = load_safetensors(path);
  EXPECT_EQ(file.metadata.at("epoch"), "2");
  EXPECT_EQ(file.find("w")->shape(), (Shape{3}));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ckpt.safetensors"}));
}

// A write that fails mid-way, the way a full disk makes it fail: the process's file size limit
// (RLIMIT_FSIZE) makes write() return EFBIG once the temporary file reaches it.
TEST(Safetensors, FailedWriteLeavesPreviousFileIntact) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", patterned({16}, DType::Float32, 1)}}, {{"epoch", "1"}});
  const std::string before = read_bytes(path);

  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  if (old_limit.rlim_cur != RLIM_INFINITY && old_limit.rlim_cur < (1u << 16))
    GTEST_SKIP() << "the file size limit is already below 64 KiB";
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);  // else exceeding the limit kills the process
  struct rlimit small = old_limit;
  small.rlim_cur = 1u << 16;  // 64 KiB
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string msg;
  try {
    save_safetensors(path,
                     {{"a", patterned({1000}, DType::Float32, 2)}, {"big", patterned({1 << 18}, DType::Float32, 3)}},
                     {{"epoch", "2"}});
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(msg.empty()) << "a save over the file size limit did not fail";
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(path), before) << "the previous checkpoint was damaged";
  EXPECT_FALSE(has_tmp_file(dir)) << "the temporary file was left behind";
  EXPECT_EQ(load_safetensors(path).metadata.at("epoch"), "1");
}

TEST(Safetensors, FailedRenameRemovesTemporaryFile) {
  TempDir dir;
  // The target is a non-empty folder: everything is written, then rename() fails.
  const std::string path = dir.file("ckpt.safetensors");
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  write_bytes(path + "/keep", "keep me");
  try {
    save_safetensors(path, {{"w", patterned({16}, DType::Float32, 1)}});
    ADD_FAILURE() << "saving over a folder did not throw";
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("renaming"), std::string::npos) << msg;
  }
  EXPECT_FALSE(has_tmp_file(dir));
  EXPECT_EQ(read_bytes(path + "/keep"), "keep me");
}

TEST(Safetensors, FailedOpenNamesThePath) {
  TempDir dir;
  const std::string path = dir.file("no/such/folder/ckpt.safetensors");
  try {
    save_safetensors(path, {{"w", Tensor::ones({2})}});
    ADD_FAILURE() << "saving into a missing folder did not throw";
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(Safetensors, RejectedSaveLeavesPreviousFileIntact) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", patterned({16}, DType::Float32, 1)}});
  const std::string before = read_bytes(path);
  // The second tensor is undefined: the save fails, the checkpoint on disk stays as it was.
  EXPECT_THROW(save_safetensors(path, {{"w", Tensor::ones({4})}, {"broken", Tensor()}}), kiln::Error);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_FALSE(has_tmp_file(dir));
}

// ---- device tensors (the name carries "gpu" for the ctest label) ----------------------------------

TEST(Safetensors, SavesDeviceTensors_gpu) {
  if (!kiln::cuda_available()) GTEST_SKIP() << "no CUDA device: " << kiln::cuda_unavailable_reason();
  TempDir dir;
  const std::string path = dir.file("gpu.safetensors");
  const Tensor host = patterned({33, 17}, DType::Float32, 7);
  const Tensor ids = Tensor::from_vector<std::int64_t>({1, -2, 3}, {3});
  save_safetensors(path, {{"w", host.to(kiln::Device::cuda(0))}, {"ids", ids.to(kiln::Device::cuda(0))},
                          {"b", Tensor::ones({5})}});
  const auto file = load_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 3u);
  EXPECT_TRUE(file.find("w")->device().is_cpu());
  EXPECT_EQ(tensor_bytes(*file.find("w")), tensor_bytes(host));
  EXPECT_EQ(file.find("ids")->to_vector<std::int64_t>(), (std::vector<std::int64_t>{1, -2, 3}));
  EXPECT_EQ(file.find("b")->to_vector<float>(), std::vector<float>(5, 1.0f));
}

}  // namespace

#include "io/proto_wire.h"

#include <cstring>

#include "kiln/error.h"

namespace kiln::io::proto {

namespace {

constexpr int kMaxVarintBytes = 10;  // 64 bits at 7 bits a byte

void put_fixed(std::string& out, std::uint64_t bits, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xffu));
}

std::uint64_t load_fixed(std::string_view b) {
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < b.size(); ++i) bits |= std::uint64_t(static_cast<std::uint8_t>(b[i])) << (8 * i);
  return bits;
}

const char* wire_type_name(WireType t) {
  switch (t) {
    case WireType::Varint: return "varint";
    case WireType::Fixed64: return "fixed64";
    case WireType::Bytes: return "length-delimited";
    case WireType::Fixed32: return "fixed32";
  }
  return "?";
}

void expect_type(const Field& f, WireType want) {
  KILN_CHECK(f.type == want, "protobuf field ", f.number, " is ", wire_type_name(f.type), ", expected ",
             wire_type_name(want));
}

}  // namespace

// ---- writing -------------------------------------------------------------------------------------

void put_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80u) {
    out.push_back(static_cast<char>((value & 0x7fu) | 0x80u));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_key(std::string& out, std::uint32_t field, WireType type) {
  put_varint(out, (std::uint64_t(field) << 3) | static_cast<std::uint64_t>(type));
}

void put_int64(std::string& out, std::uint32_t field, std::int64_t value) {
  put_key(out, field, WireType::Varint);
  put_varint(out, static_cast<std::uint64_t>(value));
}

void put_double(std::string& out, std::uint32_t field, double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_key(out, field, WireType::Fixed64);
  put_fixed(out, bits, 8);
}

void put_float(std::string& out, std::uint32_t field, float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_key(out, field, WireType::Fixed32);
  put_fixed(out, bits, 4);
}

void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes) {
  put_key(out, field, WireType::Bytes);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// ---- reading -------------------------------------------------------------------------------------

std::int64_t Field::as_int64() const {
  expect_type(*this, WireType::Varint);
  return static_cast<std::int64_t>(bits);
}

double Field::as_double() const {
  expect_type(*this, WireType::Fixed64);
  double v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

float Field::as_float() const {
  expect_type(*this, WireType::Fixed32);
  const auto b32 = static_cast<std::uint32_t>(bits);
  float v;
  std::memcpy(&v, &b32, sizeof v);
  return v;
}

std::string_view Field::as_bytes() const {
  expect_type(*this, WireType::Bytes);
  return bytes;
}

std::uint64_t Reader::read_varint() {
  const std::size_t start = pos_;
  std::uint64_t value = 0;
  for (int i = 0; i < kMaxVarintBytes; ++i) {
    KILN_CHECK(pos_ < message_.size(), "malformed protobuf: varint at byte ", start, " runs past the end");
    const auto byte = static_cast<std::uint8_t>(message_[pos_++]);
    value |= std::uint64_t(byte & 0x7fu) << (7 * i);
    if ((byte & 0x80u) == 0) return value;
  }
  KILN_FAIL("malformed protobuf: varint at byte ", start, " is longer than ", kMaxVarintBytes, " bytes");
}

std::string_view Reader::take(std::size_t n) {
  KILN_CHECK(n <= message_.size() - pos_, "malformed protobuf: ", n, " bytes at byte ", pos_, " run past the end (",
             message_.size(), " bytes)");
  const std::string_view out = message_.substr(pos_, n);
  pos_ += n;
  return out;
}

bool Reader::next(Field* field) {
  if (pos_ == message_.size()) return false;
  const std::size_t start = pos_;
  const std::uint64_t key = read_varint();
  const std::uint64_t number = key >> 3;
  KILN_CHECK(number != 0 && number <= 0x1fffffffu, "malformed protobuf: field number ", number, " at byte ", start);
  field->number = static_cast<std::uint32_t>(number);
  field->bits = 0;
  field->bytes = {};
  switch (key & 7u) {
    case 0: field->type = WireType::Varint; field->bits = read_varint(); break;
    case 1: field->type = WireType::Fixed64; field->bits = load_fixed(take(8)); break;
    case 2: field->type = WireType::Bytes; field->bytes = take(read_varint()); break;
    case 5: field->type = WireType::Fixed32; field->bits = load_fixed(take(4)); break;
    default: KILN_FAIL("malformed protobuf: unsupported wire type ", key & 7u, " at byte ", start);
  }
  return true;
}

}  // namespace kiln::io::proto

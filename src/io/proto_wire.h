// The protobuf wire format, by hand: enough to write and read small messages (TensorBoard events)
// without the protobuf library. A message is a sequence of fields, each a varint key
// (field_number << 3 | wire_type) followed by its payload:
//   varint  (0): int32/int64/uint64/bool/enum, 7 bits a byte, low group first, high bit = "more"
//   fixed64 (1): double, fixed64 — 8 bytes little endian
//   bytes   (2): string, bytes, sub-messages — varint length, then the bytes
//   fixed32 (5): float, fixed32 — 4 bytes little endian
// The deprecated group wire types (3, 4) are rejected. Writers here emit exactly the fields they
// are given; leaving proto3 defaults out is the caller's choice.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::io::proto {

enum class WireType : std::uint8_t { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 };

// ---- writing: each appends one field (or one raw varint) to `out` -------------------------------
void put_varint(std::string& out, std::uint64_t value);
void put_key(std::string& out, std::uint32_t field, WireType type);
// int64 as protobuf does: two's complement, so a negative value takes ten bytes (not zigzag/sint64).
void put_int64(std::string& out, std::uint32_t field, std::int64_t value);
void put_double(std::string& out, std::uint32_t field, double value);
void put_float(std::string& out, std::uint32_t field, float value);
// string, bytes, or an already-encoded sub-message.
void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes);

// ---- reading -------------------------------------------------------------------------------------
// One decoded field. The typed accessors throw kiln::Error when the wire type does not fit.
struct Field {
  std::uint32_t number = 0;
  WireType type = WireType::Varint;
  std::uint64_t bits = 0;  // the varint value, or the raw fixed32/fixed64 bits
  std::string_view bytes;  // the payload of a Bytes field (a view into the message)

  std::int64_t as_int64() const;
  double as_double() const;
  float as_float() const;
  std::string_view as_bytes() const;
};

// Walks the fields of one message in order. Unknown fields need no special handling: the caller
// ignores the numbers it does not know, and next() has already stepped over their payloads.
class Reader {
 public:
  explicit Reader(std::string_view message) : message_(message) {}
  // The reader views the message: a temporary string would be gone before the first field.
  explicit Reader(std::string&&) = delete;
  // The next field into *field; false at the end of the message. kiln::Error (naming the byte
  // offset in the message) on a truncated or malformed field.
  bool next(Field* field);

 private:
  std::uint64_t read_varint();
  std::string_view take(std::size_t n);

  std::string_view message_;
  std::size_t pos_ = 0;
};

}  // namespace kiln::io::proto

// safetensors checkpoint I/O: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// ({"__metadata__": {...}, "name": {"dtype": ..., "shape": [...], "data_offsets": [b, e]}, ...}),
// then the data buffer, to which data_offsets are relative.
//
// Writing is atomic (temporary file in the same folder, fsync, rename, fsync of the folder).
// Reading uses a small strict JSON parser written here and validates everything before any
// tensor is allocated, so a corrupt file fails with a kiln::Error that names it.
#include "kiln/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kiln/error.h"

// Tensor bytes are written and read as they lie in host memory, and safetensors data is
// little-endian: this file assumes a little-endian host (x86-64, little-endian AArch64). A
// big-endian port would need to byte-swap every element on both paths.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "kiln's safetensors I/O assumes a little-endian host");

namespace kiln::io {

namespace {

// The reference implementation refuses headers above 100 MB; so do we (it also bounds the memory
// a corrupt length field can make us allocate).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;
constexpr const char* kMetadataKey = "__metadata__";

std::string errno_str(int err) { return std::strerror(err); }

// ---- dtypes -------------------------------------------------------------------------------------

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float16: return "F16";
    case DType::BFloat16: return "BF16";
    case DType::Int32: return "I32";
    case DType::Int64: return "I64";
    case DType::UInt8: return "U8";
  }
  return nullptr;
}

bool st_dtype_parse(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kTable[] = {
      {"F32", DType::Float32}, {"F16", DType::Float16}, {"BF16", DType::BFloat16},
      {"I32", DType::Int32},   {"I64", DType::Int64},   {"U8", DType::UInt8},
  };
  for (const auto& e : kTable)
    if (s == e.first) {
      *out = e.second;
      return true;
    }
  return false;
}

// ---- UTF-8 ---------------------------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 when it is malformed.
std::size_t utf8_seq_len(const std::string& s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  const std::size_t n = s.size();
  if (c < 0x80) return 1;
  auto cont = [&](std::size_t k) { return k < n && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    const unsigned char c1 = b(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c == 0xED && c1 >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    const unsigned char c1 = b(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 >= 0x90) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = utf8_seq_len(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A string as a JSON string literal. Non-ASCII UTF-8 is kept as is (as serde_json writes it);
// quotes, backslashes and control characters are escaped.
void append_json_string(std::string& out, const std::string& s) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// ---- a small strict JSON parser ------------------------------------------------------------------

struct JValue {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  std::string text;               // String: the decoded value; Number: the literal as written
  std::vector<std::string> keys;  // Object: keys, in order (no duplicates)
  std::vector<JValue> items;      // Array: elements; Object: values, parallel to keys
  std::size_t pos = 0;            // byte offset in the header where the value starts

  const char* kind_name() const {
    switch (kind) {
      case Kind::Null: return "null";
      case Kind::Bool: return "a boolean";
      case Kind::Number: return "a number";
      case Kind::String: return "a string";
      case Kind::Array: return "an array";
      case Kind::Object: return "an object";
    }
    return "?";
  }
};

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  JValue parse_document() {
    skip_ws();
    JValue v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected ", describe_here(), " after the JSON value");
    return v;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail(const Args&... parts) const {
    KILN_FAIL(path_, ": malformed JSON header at byte ", i_, ": ", parts...);
  }

  std::string describe_here() const {
    if (i_ >= s_.size()) return "end of header";
    const auto c = static_cast<unsigned char>(s_[i_]);
    if (c >= 0x20 && c < 0x7F) return detail::str("'", static_cast<char>(c), "'");
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", c);
    return detail::str("byte ", buf);
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  void expect(char c) {
    if (i_ >= s_.size() || s_[i_] != c) fail("expected '", c, "', found ", describe_here());
    ++i_;
  }

  void expect_word(const char* w) {
    const std::size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) fail("invalid literal (expected '", w, "')");
    i_ += n;
  }

  JValue parse_value(int depth) {
    if (depth > kMaxJsonDepth) fail("nesting deeper than ", kMaxJsonDepth, " levels");
    if (i_ >= s_.size()) fail("unexpected end of header");
    JValue v;
    v.pos = i_;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = JValue::Kind::Object;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return v;
      }
      std::set<std::string> seen;
      for (;;) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key, found ", describe_here());
        const std::size_t key_pos = i_;
        std::string key = parse_string();
        if (!seen.insert(key).second) {
          i_ = key_pos;
          fail("duplicate key \"", key, "\"");
        }
        skip_ws();
        expect(':');
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        v.keys.push_back(std::move(key));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          return v;
        }
        fail("expected ',' or '}' in an object, found ", describe_here());
      }
    }
    if (c == '[') {
      v.kind = JValue::Kind::Array;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return v;
        }
        fail("expected ',' or ']' in an array, found ", describe_here());
      }
    }
    if (c == '"') {
      v.kind = JValue::Kind::String;
      v.text = parse_string();
      return v;
    }
    if (c == 't') {
      expect_word("true");
      v.kind = JValue::Kind::Bool;
      v.boolean = true;
      return v;
    }
    if (c == 'f') {
      expect_word("false");
      v.kind = JValue::Kind::Bool;
      return v;
    }
    if (c == 'n') {
      expect_word("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JValue::Kind::Number;
      v.text = parse_number();
      return v;
    }
    fail("unexpected ", describe_here());
  }

  // RFC 8259 number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  std::string parse_number() {
    const std::size_t start = i_;
    auto digit = [&]() { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; };
    if (s_[i_] == '-') ++i_;
    if (!digit()) fail("invalid number");
    if (s_[i_] == '0') {
      ++i_;
      if (digit()) fail("invalid number (leading zero)");
    } else {
      while (digit()) ++i_;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digit()) fail("invalid number (no digits after '.')");
      while (digit()) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digit()) fail("invalid number (no digits in the exponent)");
      while (digit()) ++i_;
    }
    return s_.substr(start, i_ - start);
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
      else {
        --i_;
        fail("invalid hex digit in a \\u escape");
      }
    }
    return v;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character ", describe_here(), " in a string");
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) fail("unterminated string");
        const char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            std::uint32_t cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (s_.compare(i_, 2, "\\u") != 0) fail("unpaired UTF-16 surrogate in a \\u escape");
              i_ += 2;
              const std::uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired UTF-16 surrogate in a \\u escape");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail("unpaired UTF-16 surrogate in a \\u escape");
            }
            append_utf8(out, cp);
            break;
          }
          default:
            --i_;
            fail("invalid escape '\\", e, "'");
        }
        continue;
      }
      const std::size_t len = utf8_seq_len(s_, i_);
      if (len == 0) fail("invalid UTF-8 in a string");
      out.append(s_, i_, len);
      i_ += len;
    }
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t i_ = 0;
};

// A JSON number literal as an unsigned integer, or false when it is not one (fraction, exponent,
// sign, or too large for 64 bits).
bool json_to_u64(const JValue& v, std::uint64_t* out) {
  if (v.kind != JValue::Kind::Number || v.text.empty()) return false;
  std::uint64_t r = 0;
  for (const char c : v.text) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (r > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    r = r * 10 + d;
  }
  *out = r;
  return true;
}

std::string json_excerpt(const JValue& v) {
  switch (v.kind) {
    case JValue::Kind::Number: return v.text;
    case JValue::Kind::String: {
      std::string s;
      append_json_string(s, v.text.size() > 40 ? v.text.substr(0, 40) + "..." : v.text);
      return s;
    }
    default: return v.kind_name();
  }
}

// ---- file helpers --------------------------------------------------------------------------------

// Reads exactly `n` bytes at `offset`; returns false on a short read (errno 0) or an error (errno set).
bool pread_all(int fd, void* buf, std::size_t n, std::uint64_t offset) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const std::size_t chunk = std::min<std::size_t>(n, std::size_t{1} << 30);
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {
      errno = 0;
      return false;
    }
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return true;
}

bool write_all(int fd, const void* buf, std::size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const std::size_t chunk = std::min<std::size_t>(n, std::size_t{1} << 30);
    const ssize_t put = ::write(fd, p, chunk);
    if (put < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (put == 0) {  // should not happen for regular files; treat as "no space"
      errno = ENOSPC;
      return false;
    }
    p += put;
    n -= static_cast<std::size_t>(put);
  }
  return true;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports the result (close can report a deferred write error, e.g. on NFS).
  int close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd);
  }

 private:
  int fd_;
};

std::string parent_dir(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// ---- header validation ---------------------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

Entry parse_entry(const std::string& path, const std::string& name, const JValue& v, std::uint64_t data_size) {
  const std::string where = detail::str(path, ": tensor '", name, "': ");
  KILN_CHECK(v.kind == JValue::Kind::Object, where, "expected an object with dtype, shape and data_offsets, found ",
             v.kind_name());
  const JValue* jdtype = nullptr;
  const JValue* jshape = nullptr;
  const JValue* joffsets = nullptr;
  for (std::size_t k = 0; k < v.keys.size(); ++k) {
    // Other keys are ignored, as the reference implementation does.
    if (v.keys[k] == "dtype") jdtype = &v.items[k];
    else if (v.keys[k] == "shape") jshape = &v.items[k];
    else if (v.keys[k] == "data_offsets") joffsets = &v.items[k];
  }
  KILN_CHECK(jdtype, where, "missing \"dtype\"");
  KILN_CHECK(jshape, where, "missing \"shape\"");
  KILN_CHECK(joffsets, where, "missing \"data_offsets\"");

  Entry e;
  e.name = name;
  KILN_CHECK(jdtype->kind == JValue::Kind::String, where, "dtype must be a string, found ", jdtype->kind_name());
  KILN_CHECK(st_dtype_parse(jdtype->text, &e.dtype), where, "unsupported dtype ", json_excerpt(*jdtype),
             " (kiln reads F32, F16, BF16, I32, I64 and U8)");

  KILN_CHECK(jshape->kind == JValue::Kind::Array, where, "shape must be an array, found ", jshape->kind_name());
  // numel * element size in bytes. The product of the non-zero dimensions (times the element size)
  // must fit in an int64 even when a zero dimension makes the tensor empty, so that no shape
  // arithmetic elsewhere can overflow.
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t nonzero_bytes = dtype_size(e.dtype);
  bool has_zero = false;
  for (const JValue& d : jshape->items) {
    std::uint64_t n = 0;
    KILN_CHECK(json_to_u64(d, &n) && n <= kMax, where, "shape entries must be non-negative integers, found ",
               json_excerpt(d));
    e.shape.push_back(static_cast<std::int64_t>(n));
    if (n == 0) {
      has_zero = true;
      continue;
    }
    KILN_CHECK(nonzero_bytes <= kMax / n, where, "shape ", shape_str(e.shape), "... is too large");
    nonzero_bytes *= n;
  }
  const std::uint64_t bytes = has_zero ? 0 : nonzero_bytes;

  KILN_CHECK(joffsets->kind == JValue::Kind::Array && joffsets->items.size() == 2, where,
             "data_offsets must be an array [begin, end]");
  for (const JValue& o : joffsets->items) {
    std::uint64_t tmp;
    KILN_CHECK(json_to_u64(o, &tmp), where, "data_offsets entries must be non-negative integers, found ",
               json_excerpt(o));
  }
  json_to_u64(joffsets->items[0], &e.begin);
  json_to_u64(joffsets->items[1], &e.end);
  KILN_CHECK(e.begin <= e.end, where, "data_offsets [", e.begin, ", ", e.end, "] end before they begin");
  KILN_CHECK(e.end <= data_size, where, "data_offsets [", e.begin, ", ", e.end, "] run past the end of the data (",
             data_size, " bytes)");
  KILN_CHECK(e.end - e.begin == bytes, where, "data_offsets [", e.begin, ", ", e.end, "] do not match shape ",
             shape_str(e.shape), " of ", st_dtype_name(e.dtype), " (", bytes, " bytes)");
  return e;
}

}  // namespace

// ---- SafetensorsFile ---------------------------------------------------------------------------

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& nt : tensors)
    if (nt.first == name) return &nt.second;
  return nullptr;
}

// ---- save ----------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  KILN_CHECK(!path.empty(), "save_safetensors: empty path");
  const std::string what = detail::str("cannot save ", path, ": ");

  // Everything that can be checked is checked before the file system is touched.
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    KILN_CHECK(t.defined(), what, "tensor '", name, "' is undefined");
    KILN_CHECK(name != kMetadataKey, what, "a tensor may not be called \"", kMetadataKey, "\"");
    KILN_CHECK(valid_utf8(name), what, "tensor name '", name, "' is not valid UTF-8");
    KILN_CHECK(names.insert(name).second, what, "two tensors are called '", name, "'");
    KILN_CHECK(st_dtype_name(t.dtype()) != nullptr, what, "tensor '", name, "' has an unsupported dtype");
  }
  for (const auto& [k, v] : metadata) {
    KILN_CHECK(valid_utf8(k), what, "metadata key '", k, "' is not valid UTF-8");
    KILN_CHECK(valid_utf8(v), what, "metadata value for '", k, "' is not valid UTF-8");
  }

  // The header: metadata first (only when there is some, like the reference writer), then the
  // tensors in the given order, laid out back to back in the data buffer.
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += '"';
    header += kMetadataKey;
    header += "\":{";
    bool first_kv = true;
    for (const auto& [k, v] : metadata) {
      if (!first_kv) header += ',';
      first_kv = false;
      append_json_string(header, k);
      header += ':';
      append_json_string(header, v);
    }
    header += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (!first) header += ',';
    first = false;
    append_json_string(header, name);
    header += ":{\"dtype\":\"";
    header += st_dtype_name(t.dtype());
    header += "\",\"shape\":[";
    const Shape& s = t.shape();
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(s[i]);
    }
    const std::uint64_t bytes = t.nbytes();
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += '}';
  // Pad with spaces so that the data starts 8-byte aligned (8 + N with N a multiple of 8), as the
  // reference implementation does; JSON allows trailing whitespace.
  header.append((8 - header.size() % 8) % 8, ' ');
  KILN_CHECK(header.size() <= kMaxHeaderBytes, what, "the header would be ", header.size(),
             " bytes, more than the ", kMaxHeaderBytes, "-byte limit readers accept");

  unsigned char len_bytes[8];
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFF);

  // Write to a temporary file next to the target, then rename it over the target.
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  if (fd.get() < 0) {
    const int err = errno;
    KILN_FAIL(what, "cannot create the temporary file ", tmp, ": ", errno_str(err));
  }
  // From here on every failure (including exceptions from device copies) removes the temporary file.
  bool committed = false;
  struct Cleanup {
    const std::string& tmp;
    const bool& committed;
    ~Cleanup() {
      if (!committed) ::unlink(tmp.c_str());
    }
  } cleanup{tmp, committed};

  auto fail_errno = [&](const char* step) {
    const int err = errno;
    KILN_FAIL(what, step, " ", tmp, " failed: ", errno_str(err));
  };

  if (!write_all(fd.get(), len_bytes, sizeof len_bytes) || !write_all(fd.get(), header.data(), header.size()))
    fail_errno("writing");
  for (const auto& [name, t] : tensors) {
    const std::size_t bytes = t.nbytes();
    if (bytes == 0) continue;
    const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());  // synchronous copy from the device
    if (!write_all(fd.get(), host.raw_data(), bytes)) fail_errno("writing");
  }
  if (::fsync(fd.get()) != 0) fail_errno("fsync of");
  if (fd.close() != 0) fail_errno("closing");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    KILN_FAIL(what, "renaming ", tmp, " over it failed: ", errno_str(err));
  }
  committed = true;

  // Make the rename itself durable. The new file is in place whatever happens here; a folder that
  // cannot be fsync'ed (some file systems refuse with EINVAL) is not an error.
  const std::string dir = parent_dir(path);
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) {
    if (::fsync(dfd.get()) != 0 && errno != EINVAL && errno != ENOTSUP) {
      const int err = errno;
      KILN_FAIL(path, " was written, but the fsync of its folder ", dir, " failed: ", errno_str(err));
    }
  }
}

// ---- load ----------------------------------------------------------------------------------------

SafetensorsFile load_safetensors(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    KILN_FAIL("cannot open ", path, ": ", errno_str(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    KILN_FAIL("cannot stat ", path, ": ", errno_str(err));
  }
  KILN_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  KILN_CHECK(file_size > 0, path, ": the file is empty (0 bytes), not a safetensors file");
  KILN_CHECK(file_size >= 8, path, ": not a safetensors file: it has ", file_size,
             " bytes, fewer than the 8-byte header length");

  auto read_or_fail = [&](void* buf, std::size_t n, std::uint64_t off) {
    if (!pread_all(fd.get(), buf, n, off)) {
      const int err = errno;
      if (err == 0) KILN_FAIL(path, ": truncated: the file ended while reading it (did it change meanwhile?)");
      KILN_FAIL("cannot read ", path, ": ", errno_str(err));
    }
  };

  unsigned char len_bytes[8];
  read_or_fail(len_bytes, 8, 0);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(len_bytes[i]) << (8 * i);
  KILN_CHECK(n <= kMaxHeaderBytes, path, ": header length ", n, " is over the ", kMaxHeaderBytes,
             "-byte limit (corrupt, or not a safetensors file)");
  KILN_CHECK(n <= file_size - 8, path, ": truncated: header says ", n, " bytes but the file has ", file_size,
             " bytes");
  KILN_CHECK(n >= 2, path, ": header of ", n, " bytes is too short to be a JSON object");

  std::string header(static_cast<std::size_t>(n), '\0');
  read_or_fail(&header[0], header.size(), 8);
  const std::uint64_t data_start = 8 + n;
  const std::uint64_t data_size = file_size - data_start;

  const JValue root = JsonParser(header, path).parse_document();
  KILN_CHECK(root.kind == JValue::Kind::Object, path, ": the header must be a JSON object, found ", root.kind_name());

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (std::size_t k = 0; k < root.keys.size(); ++k) {
    const std::string& key = root.keys[k];
    const JValue& v = root.items[k];
    if (key == kMetadataKey) {
      if (v.kind == JValue::Kind::Null) continue;
      KILN_CHECK(v.kind == JValue::Kind::Object, path, ": \"__metadata__\" must be an object of strings, found ",
                 v.kind_name());
      for (std::size_t m = 0; m < v.keys.size(); ++m) {
        KILN_CHECK(v.items[m].kind == JValue::Kind::String, path, ": \"__metadata__\" value of '", v.keys[m],
                   "' must be a string, found ", json_excerpt(v.items[m]));
        out.metadata[v.keys[m]] = v.items[m].text;
      }
      continue;
    }
    entries.push_back(parse_entry(path, key, v, data_size));
  }

  // In data order; then no range may start before the previous one ends.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (std::size_t k = 1; k < entries.size(); ++k) {
    const Entry& a = entries[k - 1];
    const Entry& b = entries[k];
    KILN_CHECK(a.end <= b.begin, path, ": tensors '", a.name, "' [", a.begin, ", ", a.end, ") and '", b.name, "' [",
               b.begin, ", ", b.end, ") overlap");
  }

  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const std::size_t bytes = static_cast<std::size_t>(e.end - e.begin);
    if (bytes > 0) read_or_fail(t.raw_data(), bytes, data_start + e.begin);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace kiln::io

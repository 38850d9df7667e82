// Showing file-system names: UTF-8 well-formedness (RFC 3629) and escapes for everything else.
#include "io/text.h"

#include <cstdio>

namespace kiln::io {

std::size_t utf8_sequence_length(const std::string& s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  // The lead byte fixes the length and the range the second byte must lie in (which excludes
  // overlong forms, the surrogates U+D800-DFFF and code points above U+10FFFF).
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
  else if (b0 == 0xE0) len = 3, lo = 0xA0;
  else if (b0 == 0xED) len = 3, hi = 0x9F;
  else if (b0 >= 0xE1 && b0 <= 0xEF) len = 3;
  else if (b0 == 0xF0) len = 4, lo = 0x90;
  else if (b0 >= 0xF1 && b0 <= 0xF3) len = 4;
  else if (b0 == 0xF4) len = 4, hi = 0x8F;
  else return 0;
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return len;
}

namespace {
std::string hex_escape(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", b);
  return buf;
}

// The escape of a one-byte character, or "" when it prints as itself.
std::string ascii_escape(unsigned char b) {
  switch (b) {
    case '\n': return "\\n";
    case '\t': return "\\t";
    case '\r': return "\\r";
    case '\\': return "\\\\";
    default: return b < 0x20 || b == 0x7F ? hex_escape(b) : "";
  }
}
}  // namespace

std::string printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) {
      out += hex_escape(static_cast<unsigned char>(s[i++]));
    } else if (len == 1) {
      const std::string e = ascii_escape(static_cast<unsigned char>(s[i]));
      out += e.empty() ? s.substr(i, 1) : e;
      ++i;
    } else {
      out += s.substr(i, len);
      i += len;
    }
  }
  return out;
}

}  // namespace kiln::io

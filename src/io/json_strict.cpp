// Reading untrusted JSON (safetensors headers from anywhere). A first pass through nlohmann's SAX
// interface builds nothing: it bounds the nesting, refuses duplicate keys (nlohmann would keep one
// value silently, and which tensor a name means must not be ambiguous) and turns syntax errors into
// kiln's wording, which names the offending byte. Only a document that passed is then built.
#include <cstdio>
#include <set>
#include <vector>

#include "io/json.h"
#include "kiln/error.h"

namespace kiln::io {

namespace {

// The byte at `at` as a message shows it: 'x', byte 0xff, or the end of the document.
std::string describe_byte(const std::string& text, std::size_t at, const std::string& document) {
  if (at >= text.size()) return "end of " + document;
  const auto c = static_cast<unsigned char>(text[at]);
  if (c >= 0x20 && c < 0x7F) return detail::str("'", static_cast<char>(c), "'");
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", c);
  return detail::str("byte ", buf);
}

// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 1, column 2: ".
std::string their_words(const Json::exception& e) {
  std::string s = e.what();
  const std::size_t tag_end = s.find("] ");
  if (tag_end != std::string::npos) s.erase(0, tag_end + 2);
  const std::size_t colon = s.find(": ");
  if (s.rfind("parse error", 0) == 0 && colon != std::string::npos) s.erase(0, colon + 2);
  return s;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// A number directly after a digit: "02" lexes as 0 then 2, the RFC's way of forbidding leading zeros.
bool after_leading_zero(const std::string& text, std::size_t token_start, const std::string& theirs) {
  return contains(theirs, "unexpected number literal") && token_start > 0 && token_start <= text.size() &&
         text[token_start - 1] >= '0' && text[token_start - 1] <= '9';
}

// The reason for a syntax error at byte `at` (the last byte nlohmann read), in the words kiln has
// always used where nlohmann's differ, and in nlohmann's otherwise.
std::string reason(const std::string& text, std::size_t at, std::size_t token_start, const std::string& theirs,
                   const std::string& document) {
  const std::string here = describe_byte(text, at, document);
  if (contains(theirs, "forbidden character after backslash")) return "invalid escape " + here;
  if (contains(theirs, "must be followed by 4 hex digits")) return "invalid hex digit in a \\u escape";
  if (contains(theirs, "surrogate")) return "unpaired UTF-16 surrogate in a \\u escape";
  if (contains(theirs, "control character")) return "unescaped control character " + here + " in a string";
  if (contains(theirs, "ill-formed UTF-8")) return "invalid UTF-8 in a string";
  if (contains(theirs, "missing closing quote")) return "unterminated string";
  if (contains(theirs, "invalid number")) return theirs.substr(theirs.find("invalid number"));
  if (contains(theirs, "unexpected end of input")) return "unexpected end of " + document;
  if (contains(theirs, "expected end of input")) return "unexpected " + here + " after the JSON value";
  if (contains(theirs, "while parsing object key")) return "expected a string key, found " + here;
  if (contains(theirs, "invalid literal")) return "invalid literal";
  if (after_leading_zero(text, token_start, theirs)) return "invalid number (leading zero)";
  return theirs;
}

// nlohmann SAX events, checked and dropped.
class StrictChecker {
 public:
  StrictChecker(const std::string& text, std::string prefix, const std::string& document)
      : text_(text), prefix_(std::move(prefix)), document_(document) {}

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(Json::binary_t&) { return true; }

  bool start_object(std::size_t) {
    enter();
    keys_.emplace_back();
    return true;
  }
  bool key(std::string& k) {
    if (!keys_.back().insert(k).second) KILN_FAIL(prefix_, ": duplicate key ", to_text(Json(k)));
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    enter();
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }

  // `position` counts the bytes read, the offending one included (nlohmann's convention).
  bool parse_error(std::size_t position, const std::string& last_token, const Json::exception& e) {
    const std::size_t at = position > 0 ? position - 1 : 0;
    const std::size_t token_start = position >= last_token.size() ? position - last_token.size() : 0;
    KILN_FAIL(prefix_, " at byte ", at, ": ", reason(text_, at, token_start, their_words(e), document_));
  }

 private:
  void enter() {
    if (++depth_ > kMaxJsonDepth) KILN_FAIL(prefix_, ": nesting deeper than ", kMaxJsonDepth, " levels");
  }

  const std::string& text_;
  std::string prefix_;
  const std::string& document_;
  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;  // of each object being read, innermost last
};

}  // namespace

Json parse_strict(const std::string& text, const std::string& source, const std::string& document) {
  const std::string prefix = detail::str(source, ": malformed JSON ", document);
  // nlohmann skips a UTF-8 byte-order mark; RFC 8259 parsers need not accept one, and serde_json
  // (the reference safetensors reader) does not.
  KILN_CHECK(text.rfind("\xEF\xBB\xBF", 0) != 0, prefix, " at byte 0: unexpected byte-order mark");
  StrictChecker checker(text, prefix, document);
  Json::sax_parse(text, &checker, Json::input_format_t::json, /*strict=*/true, /*ignore_comments=*/false);
  return Json::parse(text);
}

}  // namespace kiln::io

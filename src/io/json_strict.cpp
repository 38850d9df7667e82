// Reading untrusted JSON (safetensors headers from anywhere) through nlohmann's SAX interface, so that
// each event is checked before it is built into the document: nesting is bounded, duplicate keys are
// refused (nlohmann would keep one value silently, and which tensor a name means must not be
// ambiguous), and syntax errors are reported in kiln's wording, naming the offending byte.
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
// always used where nlohmann's differ (users and tests look for them). Recognised by nlohmann's
// message text; a message it does not recognise (another nlohmann version) passes through as is.
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

// nlohmann SAX events, checked, then added to the document being built.
class StrictBuilder {
 public:
  StrictBuilder(const std::string& text, const std::string& prefix, const std::string& document)
      : text_(text), prefix_(prefix), document_(document) {}

  Json take() { return std::move(root_); }

  bool null() { return add(nullptr); }
  bool boolean(bool v) { return add(v); }
  bool number_integer(Json::number_integer_t v) { return add(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return add(v); }
  bool number_float(Json::number_float_t v, const std::string&) { return add(v); }
  bool string(std::string& v) { return add(std::move(v)); }
  bool binary(Json::binary_t& v) { return add(std::move(v)); }  // not in JSON text; for completeness

  bool start_object(std::size_t) {
    enter(Json::object());
    keys_.emplace_back();
    return true;
  }
  bool key(std::string& k) {
    if (!keys_.back().insert(k).second) KILN_FAIL(prefix_, ": duplicate key ", to_text(Json(k)));
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    enter(Json::array());
    return true;
  }
  bool end_array() {
    open_.pop_back();
    return true;
  }

  // `position` counts the bytes read, the offending one included (nlohmann's convention).
  bool parse_error(std::size_t position, const std::string& last_token, const Json::exception& e) {
    const std::size_t at = position > 0 ? position - 1 : 0;
    const std::size_t token_start = position >= last_token.size() ? position - last_token.size() : 0;
    KILN_FAIL(prefix_, " at byte ", at, ": ", reason(text_, at, token_start, their_words(e), document_));
  }

 private:
  // The members of an ordered_json object: the std::vector that nlohmann's ordered_map is.
  using Members = std::vector<Json::object_t::value_type>;

  template <class V>
  bool add(V&& v) {
    place(Json(std::forward<V>(v)));
    return true;
  }

  void enter(Json container) {
    if (static_cast<int>(open_.size()) >= kMaxJsonDepth)
      KILN_FAIL(prefix_, ": nesting deeper than ", kMaxJsonDepth, " levels");
    open_.push_back(place(std::move(container)));
  }

  // Puts `v` in the innermost open container, after the key just read in an object, or at the root.
  // Object members are appended to the vector directly: ordered_map's own insertion searches it for
  // the key first, which makes a header of n keys cost n^2 (minutes for a hostile 100 MB one), and
  // key() has already refused duplicates.
  Json* place(Json v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    auto& members = static_cast<Members&>(parent.get_ref<Json::object_t&>());
    members.emplace_back(std::move(key_), std::move(v));
    return &members.back().second;
  }

  const std::string& text_;
  const std::string& prefix_;
  const std::string& document_;
  Json root_;
  std::vector<Json*> open_;                  // objects and arrays being filled, innermost last
  std::vector<std::set<std::string>> keys_;  // the keys of each open object
  std::string key_;                          // the key whose value comes next
};

}  // namespace

Json parse_strict(const std::string& text, const std::string& source, const std::string& document) {
  const std::string prefix = detail::str(source, ": malformed JSON ", document);
  // nlohmann skips a UTF-8 byte-order mark; RFC 8259 parsers need not accept one, and serde_json
  // (the reference safetensors reader) does not.
  KILN_CHECK(text.rfind("\xEF\xBB\xBF", 0) != 0, prefix, " at byte 0: unexpected byte-order mark");
  StrictBuilder builder(text, prefix, document);
  Json::sax_parse(text, &builder, Json::input_format_t::json, /*strict=*/true, /*ignore_comments=*/false);
  return builder.take();
}

}  // namespace kiln::io

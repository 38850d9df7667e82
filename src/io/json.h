// Internal: JSON through nlohmann-json. kiln writes JSON for metrics.jsonl, the config stored in
// checkpoints, `kiln predict --json` and safetensors headers, and reads safetensors headers, which
// come from anywhere and are parsed by parse_strict.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kiln::io {

// Keys stay in the order they were inserted (or read), as a reader of the file sees them.
using Json = nlohmann::ordered_json;

// ---- writing ----------------------------------------------------------------------------------------

// The shortest decimal (6 to 9 significant digits) that reads back as exactly `v`: 0.05f is
// "0.05", not "0.05000000074505806". The one way kiln writes a float as text.
std::string shortest_decimal(float v);
// shortest_decimal(v) as a double, for a Json value: nlohmann writes doubles in their shortest
// round-trip form, so the file shows shortest_decimal(v). Not finite: JSON has no such number, and
// nlohmann writes null.
double json_number(float v);

// Compact JSON text (no spaces). Strings that are not valid UTF-8 are written with U+FFFD in place
// of the bad bytes, so output built from arbitrary file names cannot fail.
std::string to_text(const Json& value);
bool is_valid_utf8(const std::string& s);

// ---- reading ----------------------------------------------------------------------------------------

// At most this many nested objects and arrays.
constexpr int kMaxJsonDepth = 64;

// Parses `text` strictly (RFC 8259: no comments, no byte-order mark, nothing after the value),
// refusing duplicate keys and nesting deeper than kMaxJsonDepth before anything is built. Errors
// read "<source>: malformed JSON <document> at byte N: <reason>", e.g. document "header".
Json parse_strict(const std::string& text, const std::string& source, const std::string& document);

// For messages: "a string", "an array", ...; and a value shortened to a few dozen characters.
const char* kind_name(const Json& value);
std::string excerpt(const Json& value);

}  // namespace kiln::io

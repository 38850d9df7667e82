// Writing JSON: float formatting, compact text, and the small descriptions messages use.
#include "io/json.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kiln::io {

std::string shortest_decimal(float v) {
  // %.9g always reads back exactly (9 significant digits determine a float); fewer often do.
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
    const float back = std::strtof(buf, nullptr);
    if (std::memcmp(&back, &v, sizeof v) == 0) break;
  }
  return buf;
}

double json_number(float v) { return std::strtod(shortest_decimal(v).c_str(), nullptr); }

std::string to_text(const Json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

bool is_valid_utf8(const std::string& s) {
  try {
    (void)Json(s).dump();  // the strict error handler throws on an ill-formed sequence
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

const char* kind_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: return "a number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "a binary value";
  }
}

std::string excerpt(const Json& value) {
  constexpr std::size_t kMaxChars = 40;
  if (value.is_number()) return to_text(value);
  if (!value.is_string()) return kind_name(value);
  const std::string& s = value.get_ref<const std::string&>();
  return to_text(s.size() > kMaxChars ? s.substr(0, kMaxChars) + "..." : s);
}

}  // namespace kiln::io

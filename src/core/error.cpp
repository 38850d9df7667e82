#include "kiln/error.h"

namespace kiln {

namespace detail {
void throw_error(const std::string& msg) { throw Error(msg); }
}  // namespace detail

void check_in_range(const char* what, std::int64_t value, std::int64_t lo, std::int64_t hi) {
  KILN_CHECK(value >= lo && value <= hi, what, " must be in [", lo, ", ", hi, "], got ", value);
}

}  // namespace kiln

// kiln/error.h — the one exception type kiln throws, and the argument-check macro.
//
// The library never calls exit() or abort(): every failure becomes a kiln::Error
// (or OutOfMemoryError) and main() or the test decides what to do with it.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace kiln {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Device (or pinned host) memory could not be allocated even after the cache was emptied.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const std::string& msg);
}  // namespace detail

// Every size a user gives (a flag, a field) is bounded before anything is computed from it, so no
// product of sizes can wrap: "<what> must be in [lo, hi], got <value>" when value is outside.
void check_in_range(const char* what, std::int64_t value, std::int64_t lo, std::int64_t hi);

}  // namespace kiln

// KILN_CHECK(cond, parts...): throw kiln::Error with the concatenated message when cond is false.
#define KILN_CHECK(cond, ...)                                                    \
  do {                                                                           \
    if (!(cond)) ::kiln::detail::throw_error(::kiln::detail::str(__VA_ARGS__)); \
  } while (0)

#define KILN_FAIL(...) ::kiln::detail::throw_error(::kiln::detail::str(__VA_ARGS__))

// The host memory limit: an override, the cgroup's limit, the physical memory.
#include "core/host_memory.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "kiln/error.h"

namespace kiln::detail {

namespace {
constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

// "123", "64M", "2G": bytes; anything else is an error naming the variable.
std::size_t parse_size(const std::string& text, const char* what) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  std::string unit = end ? end : "";
  double scale = 1;
  if (unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else KILN_CHECK(unit.empty(), what, "='", text, "': expected bytes, or a number with K, M or G");
  KILN_CHECK(end != text.c_str() && v > 0 && v * scale < 1e19, what, "='", text, "': expected a positive size");
  return static_cast<std::size_t>(v * scale);
}

// cgroup v2's memory.max ("max" when unlimited), else v1's limit_in_bytes.
std::size_t cgroup_limit() {
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    unsigned long long v = 0;
    if (in >> v && v > 0) return static_cast<std::size_t>(v);
  }
  return kUnlimited;
}

std::size_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return kUnlimited;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page);
}

std::size_t compute_limit() {
  if (const char* env = std::getenv("KILN_HOST_MEMORY_LIMIT"); env && *env)
    return parse_size(env, "KILN_HOST_MEMORY_LIMIT");
  return std::min(physical_memory(), cgroup_limit());
}
}  // namespace

std::size_t host_memory_limit() {
  static const std::size_t limit = compute_limit();
  return limit;
}

std::string format_bytes(std::size_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) v /= 1024.0, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace kiln::detail

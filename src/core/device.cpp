// Device names and CUDA device discovery.
#include <cstdlib>
#include <mutex>
#include <string>

#include "core/op_scope.h"
#include "kiln/device.h"
#include "kiln/error.h"

#if defined(KILN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace kiln {

namespace detail {
namespace {
thread_local const char* g_current_op = nullptr;
}
const char* current_op() { return g_current_op ? g_current_op : "(no op)"; }
OpScope::OpScope(const char* name) : previous_(g_current_op) { g_current_op = name; }
OpScope::~OpScope() { g_current_op = previous_; }
}  // namespace detail

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda" || text == "gpu") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string idx = text.substr(5);
    char* end = nullptr;
    long v = std::strtol(idx.c_str(), &end, 10);
    if (end && *end == '\0' && v >= 0 && v < 1024 && idx.find_first_not_of("0123456789") == std::string::npos)
      return cuda(static_cast<int>(v));
  }
  KILN_FAIL("invalid device '", text, "': expected cpu, cuda or cuda:N");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

namespace {
struct CudaProbe {
  int count = 0;
  std::string reason;
};
const CudaProbe& probe() {
  static CudaProbe p;
  static std::once_flag once;
  std::call_once(once, [] {
#if defined(KILN_WITH_CUDA)
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      p.count = 0;
      p.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
      cudaGetLastError();  // clear the (non-sticky) error so later calls do not report it
    } else if (n == 0) {
      p.reason = "cudaGetDeviceCount found no CUDA device";
    } else {
      p.count = n;
    }
#else
    p.reason = "kiln was built without CUDA (KILN_CUDA=OFF or no toolkit at configure time)";
#endif
  });
  return p;
}
}  // namespace

bool cuda_built() {
#if defined(KILN_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return probe().count; }
std::string cuda_unavailable_reason() { return probe().reason; }

void check_device_usable(const Device& d) {
  if (d.is_cpu()) return;
  const CudaProbe& p = probe();
  KILN_CHECK(p.count > 0, "device ", d.str(), " requested but no CUDA device is usable: ", p.reason);
  KILN_CHECK(d.index >= 0 && d.index < p.count, "device ", d.str(), " requested but only ", p.count,
             " CUDA device(s) exist (cuda:0 .. cuda:", p.count - 1, ")");
}

}  // namespace kiln

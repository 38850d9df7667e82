// kiln/cuda.h in a CPU-only build: every query answers that CUDA is not built in.
#include "kiln/cuda.h"
#include "kiln/error.h"

namespace kiln::cuda {

AllocatorStats allocator_stats(int) { return {}; }
void empty_cache(int) {}
void synchronize(int device) { KILN_FAIL("cuda:", device, ": kiln was built without CUDA"); }
Versions versions() { return {"not built", "not built", "not built", "not built"}; }
std::string describe_devices() { return "no CUDA device (" + cuda_unavailable_reason() + ")\n"; }

}  // namespace kiln::cuda

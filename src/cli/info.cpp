// `kiln info`: the build options, the devices found and the CUDA library versions.
#include <cstdio>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "kiln/kiln.h"

namespace kiln::cli {

namespace {
const char* cuda_backend() {
#if defined(KILN_CUDA_EMULATED)
  return "EMULATED on the CPU (KILN_CUDA=EMULATE; not a GPU)";
#else
  return cuda_built() ? "yes" : "no";
#endif
}

int run_info() {
  std::printf("kiln %s\n", KILN_VERSION);
  std::printf("build:    CUDA backend %s, CPU GEMM %s, OpenMP %s\n", cuda_backend(), KILN_CPU_GEMM,
              KILN_OPENMP ? "yes" : "no");
  std::printf("host:     %u hardware threads\n", std::thread::hardware_concurrency());
  const cuda::Versions v = cuda::versions();
  std::printf("CUDA:     runtime %s, driver %s, cuBLAS %s, cuDNN %s\n", v.runtime.c_str(), v.driver.c_str(),
              v.cublas.c_str(), v.cudnn.c_str());
  std::printf("devices:  cpu\n");
  const std::string devs = cuda::describe_devices();  // one line per GPU
  std::size_t pos = 0;
  while (pos < devs.size()) {
    std::size_t nl = devs.find('\n', pos);
    if (nl == std::string::npos) nl = devs.size();
    std::printf("          %s\n", devs.substr(pos, nl - pos).c_str());
    pos = nl + 1;
  }
  return 0;
}
}  // namespace

Subcommand add_info(CLI::App& kiln) {
  return {kiln.add_subcommand("info", "Print the build options, the devices found and the CUDA library versions"),
          run_info};
}

}  // namespace kiln::cli

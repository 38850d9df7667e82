// The `kiln` command-line tool. Every failure reaches main() as a kiln::Error and becomes one
// clear line on stderr and a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <thread>

#include "kiln/kiln.h"

namespace {

int cmd_info() {
  std::printf("kiln %s\n", KILN_VERSION);
  std::printf("build:    CUDA backend %s, CPU GEMM %s, OpenMP %s\n", kiln::cuda_built() ? "yes" : "no",
              KILN_CPU_GEMM, KILN_OPENMP ? "yes" : "no");
  std::printf("host:     %u hardware threads\n", std::thread::hardware_concurrency());
  const kiln::cuda::Versions v = kiln::cuda::versions();
  std::printf("CUDA:     runtime %s, driver %s, cuBLAS %s, cuDNN %s\n", v.runtime.c_str(), v.driver.c_str(),
              v.cublas.c_str(), v.cudnn.c_str());
  std::printf("devices:  cpu\n");
  std::string devs = kiln::cuda::describe_devices();
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

int main(int argc, char** argv) {
  CLI::App app{"kiln — a deep-learning engine in C++17 and CUDA"};
  app.require_subcommand(1);
  auto* info = app.add_subcommand("info", "Print the build options, the devices found and the CUDA library versions");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (info->parsed()) return cmd_info();
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// kiln/device.h — where a tensor lives: the CPU or CUDA device n.
#pragma once

#include <string>

namespace kiln {

enum class DeviceType : unsigned char { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  // Parses "cpu", "cuda", "cuda:N". Throws kiln::Error naming the text on anything else.
  static Device parse(const std::string& text);

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// True when this build of kiln contains the CUDA backend.
bool cuda_built();
// Number of usable CUDA devices (0 when none, when the driver is missing, or in a CPU-only build).
int cuda_device_count();
inline bool cuda_available() { return cuda_device_count() > 0; }
// Why no CUDA device is usable (empty when one is): for skip messages and `kiln info`.
std::string cuda_unavailable_reason();
// Throws kiln::Error when `d` cannot be used (CUDA device absent, index out of range, CPU-only build).
void check_device_usable(const Device& d);

}  // namespace kiln

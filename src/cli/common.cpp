// The kiln tool's shared setup: devices, datasets, model files, flag checks.
#include "cli/common.h"

#include <cstdio>

#include "train/architectures.h"

namespace kiln::cli {

CLI::Option* add_device_flag(CLI::App& cmd, std::string& text) {
  return cmd.add_option("--device", text, "auto | cpu | cuda | cuda:N")->capture_default_str();
}

Device resolve_device(const std::string& text) {
  if (text == "auto") {
    if (cuda_available()) return Device::cuda(0);
    std::fprintf(stderr, "kiln: no CUDA device (%s); running on the CPU\n", cuda_unavailable_reason().c_str());
    return Device::cpu();
  }
  Device d = Device::parse(text);
  check_device_usable(d);
  return d;
}

void dataset_stats(const std::string& name, std::vector<float>& mean, std::vector<float>& std) {
  if (name == "mnist") {
    mean = {0.1307f}, std = {0.3081f};
  } else if (name == "fashion-mnist") {
    mean = {0.2860f}, std = {0.3530f};
  } else if (name == "imagefolder") {  // ImageNet statistics (their mean for grey images)
    mean = {0.485f, 0.456f, 0.406f}, std = {0.229f, 0.224f, 0.225f};
  } else {
    KILN_FAIL("unknown --dataset '", name, "' (expected mnist, fashion-mnist or imagefolder)");
  }
}

std::string default_data_dir(const std::string& dataset) { return "data/" + dataset; }

std::shared_ptr<const data::Source> mnist_split(const std::string& dir, bool train, const std::string& dataset) {
  // in_memory() refers to the Dataset rather than copying it, so one owner keeps both alive.
  struct Owned {
    data::Dataset images;
    std::shared_ptr<const data::Source> source;
  };
  auto owned = std::make_shared<Owned>();
  owned->images = data::load_mnist(dir, train, dataset);
  owned->source = data::in_memory(owned->images);
  return std::shared_ptr<const data::Source>(owned, owned->source.get());
}

data::ImageFolderOptions folder_options(int channels, int size, bool strict, bool augment) {
  data::ImageFolderOptions o;
  o.channels = channels, o.size = size, o.strict = strict, o.augment = augment;
  return o;
}

train::LoadedModel load_model_for(const std::string& path, Device device, const std::string& dataset) {
  train::LoadedModel loaded = train::load_model(path, device);
  if (!loaded.from_kiln && !train::architecture(loaded.spec.arch).infers_normalisation)
    dataset_stats(dataset, loaded.spec.mean, loaded.spec.std);
  return loaded;
}

void require_at_least(const char* flag, std::int64_t value, std::int64_t min) {
  KILN_CHECK(value >= min, flag, " must be at least ", min, ", got ", value);
}

std::string alternatives(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : " | ") + n;
  return s;
}

}  // namespace kiln::cli

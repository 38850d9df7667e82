// Internal to the kiln tool: the setup several subcommands share, written once — the device, the
// datasets and their normalisation, loading a model file, and small flag checks.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/image.h"
#include "kiln/kiln.h"
#include "kiln/train.h"

namespace kiln::cli {

// --device: "auto | cpu | cuda | cuda:N", default auto.
CLI::Option* add_device_flag(CLI::App& cmd, std::string& text);
// "auto": the first GPU, or the CPU with a notice on stderr; otherwise the named device, checked usable.
Device resolve_device(const std::string& text);

// Mean and std per channel of a dataset's training pixels in [0, 1]; an unknown --dataset is an error.
void dataset_stats(const std::string& name, std::vector<float>& mean, std::vector<float>& std);
std::string default_data_dir(const std::string& dataset);
// One split of an MNIST-format dataset (mnist, fashion-mnist) as a Source that owns its images.
std::shared_ptr<const data::Source> mnist_split(const std::string& dir, bool train, const std::string& dataset);
data::ImageFolderOptions folder_options(int channels, int size, bool strict, bool augment);

// A kiln model file or weights-only safetensors; weights-only files whose architecture infers no
// normalisation (an MLP) take `dataset`'s.
train::LoadedModel load_model_for(const std::string& path, Device device, const std::string& dataset);

// kiln::Error "<flag> must be at least <min>, got <value>" when value < min.
void require_at_least(const char* flag, std::int64_t value, std::int64_t min);
// "a | b | c", for help texts.
std::string alternatives(const std::vector<std::string>& names);

}  // namespace kiln::cli

// Internal: the model architectures kiln trains, by name. This is the one place where a model is
// told apart by its name ("mlp", "alexnet", "alexnet2012"): everything that depends on it (building
// it, the input it takes, its defaults, the spec fields only it has, recognising its PyTorch-named
// weights) is a field of its entry. Adding a model is its definition in models/ plus one entry in
// architectures.cpp.
//
// It lives in src/train, not models/, because an entry speaks the training job's language
// (ModelSpec, checkpoint metadata, learning rates); models/ stays plain layer wiring.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/json.h"
#include "kiln/train.h"
#include "train/checkpoint.h"

namespace kiln::train {

struct Architecture {
  std::string name;
  // A freshly initialised model for `spec` (already checked: its fields, input size and classes).
  std::unique_ptr<nn::Module> (*build)(const ModelSpec& spec, Generator& gen, Device device,
                                       const std::shared_ptr<Generator>& dropout_gen) = nullptr;

  // ---- input
  Shape default_input;                // [C, H, W] when none is given (kiln bench)
  std::int64_t default_classes = 10;  // likewise
  // Smaller images are refused, with a hint to upscale (--resize) to default_input's size. 0: any.
  std::int64_t min_image_size = 0;
  bool flattens_input = false;  // true: the model takes [N, C*H*W], so prepare_input flattens
  // The evaluation transform of models whose file does not record one (weights-only files, and
  // checkpoints written before kiln recorded it): what such a model was most likely trained on,
  // MNIST digits for an MLP, photos for a CNN.
  data::EvalTransform default_eval_transform = data::EvalTransform::Resize;

  // ---- training defaults
  // The learning rate when none is given, by optimizer family (optim/registry.h): plain SGD needs a
  // smaller step for deeper models, Adam's 1e-3 suits all of them.
  std::map<std::string, float> default_lr;

  // ---- the spec fields only this architecture has (MLP hidden sizes, AlexNet-2012 groups)
  void (*check_fields)(const ModelSpec& spec) = [](const ModelSpec&) {};  // kiln::Error naming the flag
  void (*encode_fields)(const ModelSpec& spec, detail::Metadata& md) = [](const ModelSpec&, detail::Metadata&) {};
  void (*decode_fields)(const detail::Metadata& md, const std::string& path, ModelSpec& spec) =
      [](const detail::Metadata&, const std::string&, ModelSpec&) {};
  // Adds them to the run's config JSON (metrics.jsonl, checkpoints), right after "model". Except
  // "groups": that key's place in the config is fixed for every architecture (1 outside alexnet2012).
  void (*add_json_fields)(const ModelSpec& spec, io::Json& config) = [](const ModelSpec&, io::Json&) {};

  // ---- weights-only (PyTorch-written) files
  // The spec of `tensors` (classes, input, own fields) when they are named like this architecture's
  // parameters, nullopt when they are not; kiln::Error when the names fit but the shapes do not.
  std::optional<ModelSpec> (*infer)(const io::NamedTensors& tensors, const std::string& path) =
      [](const io::NamedTensors&, const std::string&) { return std::optional<ModelSpec>(); };
  std::string weights_hint;  // what infer looks for, named in the error when no entry recognises a file
  // true: infer sets the normalisation such weights were trained with (torchvision's ImageNet
  // statistics); false: a weights-only file takes the normalisation of the dataset it is used on.
  bool infers_normalisation = false;
};

// Every architecture, in the order help texts and errors list them.
const std::vector<Architecture>& architectures();
std::vector<std::string> architecture_names();
// The entry called `name`; kiln::Error "unknown <what> 'name' (available: mlp, alexnet, ...)" otherwise.
const Architecture& architecture(const std::string& name, const std::string& what = "model");
// The learning rate for `arch` trained with `optimizer` when --lr is not given.
float default_lr(const std::string& arch, const std::string& optimizer);

}  // namespace kiln::train

// The architecture registry: one entry per model, built by a function that fills its fields by
// name, listed in an explicit table (no static-initializer registration, which silently drops
// entries under static linking). Each section below holds what one architecture needs beyond its
// definition in models/.
#include "train/architectures.h"

#include "core/by_name.h"
#include "kiln/models.h"
#include "optim/registry.h"

namespace kiln::train {

namespace {

const Tensor* find_tensor(const io::NamedTensors& tensors, const std::string& name) {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

// --groups belongs to alexnet2012 alone; elsewhere it must keep its default.
void reject_groups(const ModelSpec& spec) {
  KILN_CHECK(spec.groups == 1, "--groups 2 is only for --model alexnet2012");
}

// ---- mlp: nn.Sequential(Linear, ReLU, ..., Linear) on flattened 28x28 grey images ---------------

void check_mlp(const ModelSpec& spec) {
  reject_groups(spec);
  for (std::int64_t h : spec.hidden) KILN_CHECK(h > 0, "--hidden: layer sizes must be positive, got ", h);
}

// Weights at indices 0, 2, 4, ... (the ReLUs in between have none); each layer takes the one
// before's outputs.
std::optional<ModelSpec> infer_mlp(const io::NamedTensors& tensors, const std::string& path) {
  if (!find_tensor(tensors, "0.weight")) return std::nullopt;
  ModelSpec s;
  s.hidden.clear();
  std::int64_t prev_out = -1;
  for (int idx = 0;; idx += 2) {
    const std::string w = std::to_string(idx) + ".weight";
    const Tensor* t = find_tensor(tensors, w);
    if (!t) break;
    KILN_CHECK(t->dim() == 2 && t->dtype() == DType::Float32, path, ": tensor '", w, "' is ", t->str(),
               ", expected a float32 Linear weight [out, in]");
    if (prev_out >= 0) {
      KILN_CHECK(t->size(1) == prev_out, path, ": tensor '", w, "' ", shape_str(t->shape()), " does not follow the ",
                 prev_out, " outputs of the layer before");
      s.hidden.push_back(prev_out);
    } else {
      KILN_CHECK(t->size(1) == 784, path, ": first layer takes ", t->size(1),
                 " inputs; only 28x28 single-channel (784) MLPs can be inferred from weights alone");
    }
    prev_out = t->size(0);
  }
  s.input = {1, 28, 28};
  s.classes = prev_out;
  return s;
}

Architecture mlp() {
  Architecture a;
  a.name = "mlp";
  a.build = [](const ModelSpec& s, Generator& gen, Device device, const std::shared_ptr<Generator>&) {
    return std::unique_ptr<nn::Module>(models::mlp(shape_numel(s.input), s.hidden, s.classes, gen, device));
  };
  a.default_input = {1, 28, 28};
  a.default_classes = 10;
  a.flattens_input = true;
  a.default_lr = {{"sgd", 0.05f}, {"adam", 1e-3f}};
  a.check_fields = check_mlp;
  a.encode_fields = [](const ModelSpec& s, detail::Metadata& md) { md["hidden"] = detail::join_ints(s.hidden); };
  a.decode_fields = [](const detail::Metadata& md, const std::string& path, ModelSpec& s) {
    s.hidden = detail::parse_ints(detail::metadata_value(md, "hidden", path), path + ": hidden");
  };
  a.add_json_fields = [](const ModelSpec& s, io::Json& j) { j["hidden"] = s.hidden; };
  a.infer = infer_mlp;
  a.weights_hint = "MLP weights ('0.weight', '2.weight', ...)";
  return a;
}

// ---- alexnet, alexnet2012: torchvision's single tower, and the paper's with LRN and groups ------

constexpr std::int64_t kAlexNetSize = 224;

// Both layouts share torchvision's names; conv1's 96 filters (64 in torchvision's) tell them apart.
std::optional<ModelSpec> infer_alexnet_layout(const io::NamedTensors& tensors, const std::string& path,
                                              bool paper_layout) {
  const Tensor* f0 = find_tensor(tensors, "features.0.weight");
  if (!f0) return std::nullopt;
  const Tensor* last = find_tensor(tensors, "classifier.6.weight");
  KILN_CHECK(f0->dim() == 4 && last && last->dim() == 2, path,
             ": has 'features.0.weight' but not the AlexNet layout (classifier.6.weight missing or misshapen)");
  if ((f0->size(0) == 96) != paper_layout) return std::nullopt;
  ModelSpec s;
  if (paper_layout) {  // grouped convolutions see 96 / groups input channels
    const Tensor* f4 = find_tensor(tensors, "features.4.weight");
    KILN_CHECK(f4 && f4->dim() == 4 && f4->size(1) > 0, path, ": alexnet2012 weights without features.4.weight");
    s.groups = 96 / f4->size(1);
  }
  const std::int64_t channels = f0->size(1);
  s.input = {channels, kAlexNetSize, kAlexNetSize};
  s.classes = last->size(0);
  s.hidden.clear();
  // torchvision's weights are trained on ImageNet with its statistics; grey ones get a neutral 0.5.
  s.mean = channels == 3 ? std::vector<float>{0.485f, 0.456f, 0.406f} : std::vector<float>{0.5f};
  s.std = channels == 3 ? std::vector<float>{0.229f, 0.224f, 0.225f} : std::vector<float>{0.5f};
  return s;
}

Architecture alexnet_family(const std::string& name) {
  Architecture a;
  a.name = name;
  a.default_input = {3, kAlexNetSize, kAlexNetSize};
  a.default_classes = 1000;
  a.min_image_size = 63;  // conv1 (11x11 stride 4) and three 3x3/2 poolings
  a.default_eval_transform = data::EvalTransform::CenterCrop;
  a.default_lr = {{"sgd", 0.01f}, {"adam", 1e-3f}};
  a.infers_normalisation = true;
  return a;
}

Architecture alexnet() {
  Architecture a = alexnet_family("alexnet");
  a.build = [](const ModelSpec& s, Generator& gen, Device device, const std::shared_ptr<Generator>& dropout_gen) {
    return std::unique_ptr<nn::Module>(models::alexnet(s.input[0], s.classes, gen, dropout_gen, device));
  };
  a.check_fields = reject_groups;
  a.infer = [](const io::NamedTensors& t, const std::string& path) { return infer_alexnet_layout(t, path, false); };
  a.weights_hint = "AlexNet weights ('features.0.weight' ... 'classifier.6.weight')";
  return a;
}

Architecture alexnet2012() {
  Architecture a = alexnet_family("alexnet2012");
  a.build = [](const ModelSpec& s, Generator& gen, Device device, const std::shared_ptr<Generator>& dropout_gen) {
    return std::unique_ptr<nn::Module>(models::alexnet2012(s.input[0], s.classes, s.groups, gen, dropout_gen, device));
  };
  a.check_fields = [](const ModelSpec& s) {
    KILN_CHECK(s.groups == 1 || s.groups == 2, "--groups must be 1 or 2 for alexnet2012, got ", s.groups);
  };
  a.encode_fields = [](const ModelSpec& s, detail::Metadata& md) { md["groups"] = std::to_string(s.groups); };
  a.decode_fields = [](const detail::Metadata& md, const std::string& path, ModelSpec& s) {
    if (md.count("groups")) s.groups = detail::parse_ints(md.at("groups"), path + ": groups").at(0);
  };
  a.infer = [](const io::NamedTensors& t, const std::string& path) { return infer_alexnet_layout(t, path, true); };
  return a;
}

}  // namespace

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table = {mlp(), alexnet(), alexnet2012()};
  return table;
}

std::vector<std::string> architecture_names() { return kiln::detail::names_of(architectures()); }

const Architecture& architecture(const std::string& name, const std::string& what) {
  return kiln::detail::find_by_name(architectures(), name, what);
}

float default_lr(const std::string& arch, const std::string& optimizer) {
  const Architecture& a = architecture(arch, "--model");
  const std::string& family = optim::lookup(optimizer, "--optimizer").family;
  const auto it = a.default_lr.find(family);
  KILN_CHECK(it != a.default_lr.end(), "no default learning rate for ", arch, " with ", optimizer, "; give --lr");
  return it->second;
}

}  // namespace kiln::train

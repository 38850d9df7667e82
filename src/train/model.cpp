// Model specs: building models, preparing their input, and recognising saved models.
#include <cstdlib>
#include <sstream>

#include "io/json.h"
#include "kiln/models.h"
#include "kiln/ops.h"
#include "kiln/random.h"
#include "train/checkpoint.h"

namespace kiln::train {

namespace detail {

std::string join_ints(const std::vector<std::int64_t>& v, char sep) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? std::string(1, sep) : "") + std::to_string(v[i]);
  return s;
}

std::vector<std::int64_t> parse_ints(const std::string& s, const std::string& what) {
  std::vector<std::int64_t> out;
  if (s.empty()) return out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    KILN_CHECK(!item.empty() && end && *end == '\0' && v > 0, what, ": '", s, "' is not a list of positive integers");
    out.push_back(v);
  }
  return out;
}

std::string fmt_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

double parse_double(const std::string& s, const std::string& what) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  KILN_CHECK(!s.empty() && end && *end == '\0', what, ": '", s, "' is not a number");
  return v;
}

namespace {
std::string join_floats(const std::vector<float>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + io::shortest_decimal(v[i]);
  return s;
}
std::vector<float> parse_floats(const std::string& s, const std::string& what) {
  std::vector<float> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(static_cast<float>(parse_double(item, what)));
  return out;
}
const std::string& get(const Metadata& md, const std::string& key, const std::string& path) {
  auto it = md.find(key);
  KILN_CHECK(it != md.end(), path, ": checkpoint metadata has no '", key, "'");
  return it->second;
}
}  // namespace

void encode_spec(const ModelSpec& spec, Metadata& md) {
  md["arch"] = spec.arch;
  md["hidden"] = join_ints(spec.hidden);
  md["groups"] = std::to_string(spec.groups);
  md["input"] = join_ints(spec.input);
  md["classes"] = std::to_string(spec.classes);
  std::string names;
  for (std::size_t i = 0; i < spec.class_names.size(); ++i) names += (i ? "\n" : "") + spec.class_names[i];
  md["class_names"] = names;
  md["mean"] = join_floats(spec.mean);
  md["std"] = join_floats(spec.std);
}

ModelSpec decode_spec(const Metadata& md, const std::string& path) {
  ModelSpec s;
  s.arch = get(md, "arch", path);
  KILN_CHECK(s.arch == "mlp" || s.arch == "alexnet" || s.arch == "alexnet2012", path,
             ": unknown model architecture '", s.arch, "'");
  s.hidden = parse_ints(get(md, "hidden", path), path + ": hidden");
  if (md.count("groups")) s.groups = parse_ints(get(md, "groups", path), path + ": groups").at(0);
  s.input = parse_ints(get(md, "input", path), path + ": input");
  KILN_CHECK(s.input.size() == 3, path, ": input shape must be C,H,W, got '", get(md, "input", path), "'");
  const auto classes = parse_ints(get(md, "classes", path), path + ": classes");
  KILN_CHECK(classes.size() == 1, path, ": classes must be one number");
  s.classes = classes[0];
  s.class_names.clear();
  std::stringstream ss(get(md, "class_names", path));
  std::string name;
  while (std::getline(ss, name, '\n')) s.class_names.push_back(name);
  s.mean = parse_floats(get(md, "mean", path), path + ": mean");
  s.std = parse_floats(get(md, "std", path), path + ": std");
  return s;
}

ModelSpec infer_spec(const io::NamedTensors& tensors, const std::string& path) {
  auto find = [&](const std::string& name) -> const Tensor* {
    for (const auto& [n, v] : tensors)
      if (n == name) return &v;
    return nullptr;
  };
  ModelSpec s;
  // torchvision AlexNet ("features.0.weight" [64, C, 11, 11]) or the 2012 layout ([96, C, 11, 11]).
  if (const Tensor* f0 = find("features.0.weight")) {
    const Tensor* last = find("classifier.6.weight");
    KILN_CHECK(f0->dim() == 4 && last && last->dim() == 2, path,
               ": has 'features.0.weight' but not the AlexNet layout (classifier.6.weight missing or misshapen)");
    s.arch = f0->size(0) == 96 ? "alexnet2012" : "alexnet";
    if (s.arch == "alexnet2012") {
      const Tensor* f4 = find("features.4.weight");
      KILN_CHECK(f4 && f4->dim() == 4 && f4->size(1) > 0, path, ": alexnet2012 weights without features.4.weight");
      s.groups = 96 / f4->size(1);
    }
    s.input = {f0->size(1), 224, 224};
    s.classes = last->size(0);
    s.hidden.clear();
    for (std::int64_t i = 0; i < s.classes; ++i) s.class_names.push_back(std::to_string(i));
    s.mean = f0->size(1) == 3 ? std::vector<float>{0.485f, 0.456f, 0.406f} : std::vector<float>{0.5f};
    s.std = f0->size(1) == 3 ? std::vector<float>{0.229f, 0.224f, 0.225f} : std::vector<float>{0.5f};
    return s;
  }
  // nn.Sequential(Linear, ReLU, Linear, ReLU, ..., Linear): weights at indices 0, 2, 4, ...
  s.hidden.clear();
  std::int64_t prev_out = -1;
  int layers = 0;
  for (int idx = 0;; idx += 2) {
    const std::string w = std::to_string(idx) + ".weight";
    const Tensor* t = nullptr;
    for (const auto& [n, v] : tensors)
      if (n == w) t = &v;
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
    ++layers;
  }
  KILN_CHECK(layers > 0, path, ": no kiln metadata and no MLP weights ('0.weight', '2.weight', ...) found");
  s.classes = prev_out;
  s.class_names.clear();
  for (std::int64_t i = 0; i < s.classes; ++i) s.class_names.push_back(std::to_string(i));
  return s;
}

}  // namespace detail

std::unique_ptr<nn::Module> build_model(const ModelSpec& spec, Generator& gen, Device device,
                                        std::shared_ptr<Generator> dropout_gen) {
  KILN_CHECK(spec.input.size() == 3, "model input must be [C, H, W], got ", shape_str(spec.input));
  KILN_CHECK(spec.classes >= 2, "a classifier needs at least 2 classes, got ", spec.classes);
  if (!dropout_gen) dropout_gen = std::make_shared<Generator>(gen.seed() + 1);
  if (spec.arch == "mlp") return models::mlp(shape_numel(spec.input), spec.hidden, spec.classes, gen, device);
  if (spec.arch == "alexnet" || spec.arch == "alexnet2012") {
    // conv1 (11x11 stride 4) and three 3x3/2 poolings need at least 63x63 inputs.
    KILN_CHECK(spec.input[1] >= 63 && spec.input[2] >= 63, spec.arch, " needs images of at least 63x63, got ",
               spec.input[1], "x", spec.input[2], "; upscale with --resize 224");
    if (spec.arch == "alexnet") return models::alexnet(spec.input[0], spec.classes, gen, dropout_gen, device);
    return models::alexnet2012(spec.input[0], spec.classes, spec.groups, gen, dropout_gen, device);
  }
  KILN_FAIL("unknown model '", spec.arch, "' (available: mlp, alexnet, alexnet2012)");
}

Tensor prepare_input(const ModelSpec& spec, const Tensor& images) {
  KILN_CHECK(images.dim() == 4 && images.size(1) == spec.input[0], "the model takes ", spec.input[0],
             "-channel images ", shape_str(spec.input), ", got a batch ", images.str());
  Tensor x = normalize_images(images, spec.mean, spec.std);
  if (x.size(2) != spec.input[1] || x.size(3) != spec.input[2]) x = resize_bilinear(x, spec.input[1], spec.input[2]);
  return spec.arch == "mlp" ? x.flatten(1) : x;
}

LoadedModel load_model(const std::string& path, Device device) {
  io::SafetensorsFile f = io::load_safetensors(path);
  LoadedModel m;
  m.from_kiln = f.metadata.count("arch") > 0;
  m.spec = m.from_kiln ? detail::decode_spec(f.metadata, path) : detail::infer_spec(f.tensors, path);
  Generator gen(0);
  m.model = build_model(m.spec, gen, device);
  try {
    m.model->load_state(f.tensors);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  m.model->set_training(false);
  return m;
}

}  // namespace kiln::train

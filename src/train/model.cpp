// Model specs: building models, preparing their input, and recognising saved models.
#include <cstdlib>
#include <sstream>

#include "kiln/models.h"
#include "kiln/ops.h"
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
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + fmt_double(v[i]);
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
  KILN_CHECK(s.arch == "mlp", path, ": unknown model architecture '", s.arch, "'");
  s.hidden = parse_ints(get(md, "hidden", path), path + ": hidden");
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
  // nn.Sequential(Linear, ReLU, Linear, ReLU, ..., Linear): weights at indices 0, 2, 4, ...
  ModelSpec s;
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

std::unique_ptr<nn::Module> build_model(const ModelSpec& spec, Generator& gen, Device device) {
  KILN_CHECK(spec.arch == "mlp", "unknown model '", spec.arch, "' (available: mlp)");
  KILN_CHECK(spec.input.size() == 3, "model input must be [C, H, W], got ", shape_str(spec.input));
  KILN_CHECK(spec.classes >= 2, "a classifier needs at least 2 classes, got ", spec.classes);
  return models::mlp(shape_numel(spec.input), spec.hidden, spec.classes, gen, device);
}

Tensor prepare_input(const ModelSpec& spec, const Tensor& images) {
  KILN_CHECK(images.dim() == 4 && Shape(images.shape().begin() + 1, images.shape().end()) == spec.input,
             "the model takes images of shape ", shape_str(spec.input), ", got a batch ", images.str());
  Tensor x = normalize_images(images, spec.mean, spec.std);
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

// Model specs: building models, preparing their input, and recognising saved models. What differs
// between architectures comes from their registry entries (train/architectures.cpp).
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "io/json.h"
#include "kiln/ops.h"
#include "train/architectures.h"
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

const std::string& metadata_value(const Metadata& md, const std::string& key, const std::string& path) {
  auto it = md.find(key);
  KILN_CHECK(it != md.end(), path, ": checkpoint metadata has no '", key, "'");
  return it->second;
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

// A damaged or hand-edited file must fail here, naming it, not later as an allocation of terabytes
// or a NaN loss: sizes within what kiln could train, one finite normalisation per channel.
void check_spec_bounds(const ModelSpec& s, const std::string& path) {
  check_in_range((path + ": input channels").c_str(), s.input[0], 1, 64);
  check_in_range((path + ": input height").c_str(), s.input[1], 1, 8192);
  check_in_range((path + ": input width").c_str(), s.input[2], 1, 8192);
  check_in_range((path + ": classes").c_str(), s.classes, 2, 1 << 20);
  const auto channels = static_cast<std::size_t>(s.input[0]);
  KILN_CHECK(s.mean.size() == channels && s.std.size() == channels, path, ": ", s.mean.size(), " mean and ",
             s.std.size(), " std values for ", channels, " input channels");
  for (std::size_t c = 0; c < channels; ++c)
    KILN_CHECK(std::isfinite(s.mean[c]) && std::isfinite(s.std[c]) && s.std[c] > 0.0f, path,
               ": channel ", c, " has mean ", s.mean[c], " and std ", s.std[c], " (finite, std > 0 expected)");
}
}  // namespace

// A JSON array of strings: a name may hold any character, a newline too.
std::string encode_class_names(const std::vector<std::string>& names) { return io::to_text(io::Json(names)); }

std::vector<std::string> decode_class_names(const std::string& value, const std::string& path) {
  if (value.empty() || value[0] != '[') {  // older checkpoints: newline-separated
    std::vector<std::string> names;
    std::stringstream ss(value);
    std::string name;
    while (std::getline(ss, name, '\n')) names.push_back(name);
    return names;
  }
  const io::Json j = io::parse_strict(value, path, "class_names");
  KILN_CHECK(j.is_array(), path, ": class_names must be an array of strings, got ", io::kind_name(j));
  std::vector<std::string> names;
  for (const io::Json& name : j) {
    KILN_CHECK(name.is_string(), path, ": class_names must be an array of strings, holds ", io::excerpt(name));
    names.push_back(name.get<std::string>());
  }
  return names;
}

// The fields every architecture has; each entry adds its own (Architecture::encode_fields).
void encode_spec(const ModelSpec& spec, Metadata& md) {
  md["arch"] = spec.arch;
  architecture(spec.arch).encode_fields(spec, md);
  md["input"] = join_ints(spec.input);
  md["classes"] = std::to_string(spec.classes);
  md["class_names"] = encode_class_names(spec.class_names);
  md["mean"] = join_floats(spec.mean);
  md["std"] = join_floats(spec.std);
  md["eval_transform"] = data::eval_transform_name(spec.eval_transform);
}

ModelSpec decode_spec(const Metadata& md, const std::string& path) {
  ModelSpec s;
  s.arch = metadata_value(md, "arch", path);
  const Architecture* arch = nullptr;
  try {
    arch = &architecture(s.arch, "model architecture");
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  arch->decode_fields(md, path, s);
  s.input = parse_ints(metadata_value(md, "input", path), path + ": input");
  KILN_CHECK(s.input.size() == 3, path, ": input shape must be C,H,W, got '", metadata_value(md, "input", path), "'");
  const auto classes = parse_ints(metadata_value(md, "classes", path), path + ": classes");
  KILN_CHECK(classes.size() == 1, path, ": classes must be one number");
  s.classes = classes[0];
  s.class_names = decode_class_names(metadata_value(md, "class_names", path), path);
  KILN_CHECK(s.class_names.empty() || static_cast<std::int64_t>(s.class_names.size()) == s.classes, path, ": ",
             s.class_names.size(), " class names for ", s.classes, " classes");
  s.mean = parse_floats(metadata_value(md, "mean", path), path + ": mean");
  s.std = parse_floats(metadata_value(md, "std", path), path + ": std");
  auto transform = md.find("eval_transform");
  s.eval_transform = transform == md.end() ? arch->default_eval_transform
                                           : data::parse_eval_transform(transform->second, path + ": eval_transform");
  check_spec_bounds(s, path);
  return s;
}

// The first architecture that recognises the tensor names; classes are named by their index.
ModelSpec infer_spec(const io::NamedTensors& tensors, const std::string& path) {
  std::string looked_for;
  for (const Architecture& a : architectures()) {
    if (std::optional<ModelSpec> s = a.infer(tensors, path)) {
      s->arch = a.name;
      s->eval_transform = a.default_eval_transform;
      s->class_names.clear();
      for (std::int64_t i = 0; i < s->classes; ++i) s->class_names.push_back(std::to_string(i));
      return *s;
    }
    if (!a.weights_hint.empty()) looked_for += (looked_for.empty() ? "" : " or ") + a.weights_hint;
  }
  KILN_FAIL(path, ": no kiln metadata and no ", looked_for, " found");
}

}  // namespace detail

std::unique_ptr<nn::Module> build_model(const ModelSpec& spec, Generator& gen, Device device,
                                        std::shared_ptr<Generator> dropout_gen) {
  const Architecture& arch = architecture(spec.arch);
  arch.check_fields(spec);
  KILN_CHECK(spec.input.size() == 3, "model input must be [C, H, W], got ", shape_str(spec.input));
  KILN_CHECK(spec.classes >= 2, "a classifier needs at least 2 classes, got ", spec.classes);
  const std::int64_t min = arch.min_image_size;
  KILN_CHECK(spec.input[1] >= min && spec.input[2] >= min, spec.arch, " needs images of at least ", min, "x", min,
             ", got ", spec.input[1], "x", spec.input[2], "; upscale with --resize ", arch.default_input[1]);
  if (!dropout_gen) dropout_gen = std::make_shared<Generator>(gen.seed() + 1);
  return arch.build(spec, gen, device, dropout_gen);
}

Tensor prepare_input(const ModelSpec& spec, const Tensor& images) {
  KILN_CHECK(images.dim() == 4 && images.size(1) == spec.input[0], "the model takes ", spec.input[0],
             "-channel images ", shape_str(spec.input), ", got a batch ", images.str());
  Tensor x = normalize_images(images, spec.mean, spec.std);
  if (x.size(2) != spec.input[1] || x.size(3) != spec.input[2]) x = resize_bilinear(x, spec.input[1], spec.input[2]);
  return architecture(spec.arch).flattens_input ? x.flatten(1) : x;
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

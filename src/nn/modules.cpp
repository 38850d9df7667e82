// Layers and the MLP model.
#include <cctype>
#include <cmath>

#include "kiln/autograd.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "kiln/profile.h"

namespace kiln::nn {

io::NamedTensors Module::named_parameters() {
  Slots slots;
  collect("", slots);
  io::NamedTensors out;
  out.reserve(slots.size());
  for (auto& [name, t] : slots) out.emplace_back(name, *t);
  return out;
}

std::vector<Tensor> Module::parameters() {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

void Module::to(Device device) {
  Slots slots;
  collect("", slots);
  for (auto& [name, t] : slots) {
    if (t->device() == device) continue;
    const bool rg = t->requires_grad();
    *t = t->detach().to(device);
    t->set_requires_grad(rg);
  }
}

void Module::load_state(const io::NamedTensors& state) {
  Slots slots;
  collect("", slots);
  for (auto& [name, t] : slots) {
    const Tensor* src = nullptr;
    for (const auto& [n, v] : state)
      if (n == name) src = &v;
    KILN_CHECK(src != nullptr, "parameter '", name, "' ", shape_str(t->shape()), " is missing from the loaded state");
    KILN_CHECK(src->shape() == t->shape() && src->dtype() == t->dtype(), "parameter '", name, "': the loaded tensor ",
               src->str(), " does not fit the model's ", t->str());
    t->copy_(*src);
  }
}

std::int64_t Module::parameter_count() {
  std::int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

namespace {
void init_params(Tensor& weight, Tensor& bias, const Shape& wshape, std::int64_t out, float fan_in, Init init,
                 Generator& gen, Device device) {
  if (init == Init::HeNormal) {
    weight = Tensor::randn(wshape, gen, device, 0.0f, std::sqrt(2.0f / fan_in));
    bias = Tensor::zeros({out}, DType::Float32, device);
  } else {
    const float bound = 1.0f / std::sqrt(fan_in);
    weight = Tensor::rand(wshape, gen, device, -bound, bound);
    bias = Tensor::rand({out}, gen, device, -bound, bound);
  }
  weight.set_requires_grad(true);
  bias.set_requires_grad(true);
}
}  // namespace

Linear::Linear(std::int64_t in, std::int64_t out, Generator& gen, Device device, Init init) {
  KILN_CHECK(in > 0 && out > 0, "Linear(", in, ", ", out, "): sizes must be positive");
  init_params(weight, bias, {out, in}, out, static_cast<float>(in), init, gen, device);
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

double Linear::flops(const Shape& input) const {
  return input.size() == 2 ? 2.0 * static_cast<double>(input[0]) * static_cast<double>(weight.numel()) : 0.0;
}

void Linear::collect(const std::string& prefix, Slots& out) {
  out.emplace_back(prefix + "weight", &weight);
  out.emplace_back(prefix + "bias", &bias);
}

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

void Module::set_path(const std::string& path) {
  std::string k = kind();
  for (char& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  path_ = path;
  label_ = path + " " + k;
}

Sequential& Sequential::add(std::unique_ptr<Module> m) { return add(std::to_string(children_.size()), std::move(m)); }

Sequential& Sequential::add(const std::string& name, std::unique_ptr<Module> m) {
  m->set_path(path().empty() ? name : path() + "." + name);
  children_.emplace_back(name, std::move(m));
  return *this;
}

void Sequential::set_path(const std::string& p) {
  Module::set_path(p);
  for (auto& [name, c] : children_) c->set_path(p.empty() ? name : p + "." + name);
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& [name, c] : children_) {
    if (dynamic_cast<Sequential*>(c.get())) {
      profile::Range range(c->path());
      h = c->forward(h);
      continue;
    }
    // A leaf layer: an NVTX range and a timed region named after it; its autograd nodes carry the
    // name (and backward FLOPs) into the backward pass.
    const double f = c->flops(h.shape());
    profile::LayerScope layer(c->label(), 2.0 * f);
    profile::Scope scope(c->label(), "fwd", h.device(), f);
    h = c->forward(h);
  }
  return h;
}

void Sequential::collect(const std::string& prefix, Slots& out) {
  for (auto& [name, c] : children_) c->collect(prefix + name + ".", out);
}

void Sequential::set_training(bool training) {
  Module::set_training(training);
  for (auto& [name, c] : children_) c->set_training(training);
}

Conv2d::Conv2d(std::int64_t in, std::int64_t out, std::int64_t kernel, Generator& gen, Device device,
               std::int64_t stride, std::int64_t padding, std::int64_t groups, Init init) {
  KILN_CHECK(in > 0 && out > 0 && kernel > 0 && groups > 0 && in % groups == 0 && out % groups == 0,
             "Conv2d(", in, ", ", out, ", kernel ", kernel, ", groups ", groups,
             "): sizes must be positive and channels divisible by groups");
  init_params(weight, bias, {out, in / groups, kernel, kernel}, out, static_cast<float>(in / groups * kernel * kernel),
              init, gen, device);
  params.stride_h = params.stride_w = stride;
  params.pad_h = params.pad_w = padding;
  params.groups = groups;
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, params); }

double Conv2d::flops(const Shape& in) const {
  if (in.size() != 4) return 0.0;
  const double P = static_cast<double>(Conv2dParams::out_size(in[2], weight.size(2), params.stride_h, params.pad_h, params.dilation_h));
  const double Q = static_cast<double>(Conv2dParams::out_size(in[3], weight.size(3), params.stride_w, params.pad_w, params.dilation_w));
  return 2.0 * static_cast<double>(in[0]) * P * Q * static_cast<double>(weight.numel());
}

void Conv2d::collect(const std::string& prefix, Slots& out) {
  out.emplace_back(prefix + "weight", &weight);
  out.emplace_back(prefix + "bias", &bias);
}

MaxPool2d::MaxPool2d(std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  params.kernel_h = params.kernel_w = kernel;
  params.stride_h = params.stride_w = stride;
  params.pad_h = params.pad_w = padding;
}

Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, params); }
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, h_, w_); }
Tensor LocalResponseNorm::forward(const Tensor& x) { return local_response_norm(x, size_, alpha_, beta_, k_); }
Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, *gen_, training()); }

}  // namespace kiln::nn

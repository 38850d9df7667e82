// Layers and the MLP model.
#include <cmath>

#include "kiln/autograd.h"
#include "kiln/nn.h"
#include "kiln/ops.h"

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

Linear::Linear(std::int64_t in, std::int64_t out, Generator& gen, Device device) {
  KILN_CHECK(in > 0 && out > 0, "Linear(", in, ", ", out, "): sizes must be positive");
  weight = Tensor::randn({out, in}, gen, device, 0.0f, std::sqrt(2.0f / static_cast<float>(in)));
  weight.set_requires_grad(true);
  bias = Tensor::zeros({out}, DType::Float32, device);
  bias.set_requires_grad(true);
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

void Linear::collect(const std::string& prefix, Slots& out) {
  out.emplace_back(prefix + "weight", &weight);
  out.emplace_back(prefix + "bias", &bias);
}

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

Sequential& Sequential::add(std::unique_ptr<Module> m) {
  children_.push_back(std::move(m));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& c : children_) h = c->forward(h);
  return h;
}

void Sequential::collect(const std::string& prefix, Slots& out) {
  for (std::size_t i = 0; i < children_.size(); ++i) children_[i]->collect(prefix + std::to_string(i) + ".", out);
}

void Sequential::set_training(bool training) {
  Module::set_training(training);
  for (auto& c : children_) c->set_training(training);
}

}  // namespace kiln::nn

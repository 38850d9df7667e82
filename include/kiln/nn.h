// kiln/nn.h — layers and models. Parameters are named exactly as the equivalent PyTorch module's
// state_dict names them ("0.weight", "2.bias", ...), so weights move both ways with PyTorch.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/io.h"
#include "kiln/ops.h"
#include "kiln/tensor.h"

namespace kiln::nn {

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  virtual std::string kind() const = 0;  // "Linear", "ReLU", ...

  using Slots = std::vector<std::pair<std::string, Tensor*>>;
  // Appends pointers to this module's parameter slots, named with `prefix`, in definition order.
  virtual void collect(const std::string& prefix, Slots& out) { (void)prefix; (void)out; }
  virtual void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  io::NamedTensors named_parameters();
  std::vector<Tensor> parameters();
  // Moves every parameter to `device` (keeps names and requires_grad).
  void to(Device device);
  // Copies values from `state` into the parameters; every parameter must be present with the same
  // shape (kiln::Error naming the tensor otherwise). Extra entries in `state` are ignored.
  void load_state(const io::NamedTensors& state);
  std::int64_t parameter_count();

  // Dotted path of this module in its model ("features.0"), set when it is added to a Sequential.
  const std::string& path() const { return path_; }
  // "path kind" ("features.0 conv2d"): the name of its NVTX ranges, profile rows and backward nodes.
  const std::string& label() const { return label_; }
  virtual void set_path(const std::string& path);
  // Forward floating-point operations for an input of this shape (0 where not counted); the
  // backward of GEMM/conv layers costs twice that.
  virtual double flops(const Shape& input) const { (void)input; return 0.0; }

 private:
  bool training_ = true;
  std::string path_, label_;
};

// Weight initialisation: He/Kaiming normal (std = sqrt(2 / fan_in), zero bias), or PyTorch's default
// for Linear/Conv2d (weights and biases uniform in +-1/sqrt(fan_in)), which torchvision's AlexNet uses.
enum class Init { HeNormal, TorchDefault };

class Linear final : public Module {
 public:
  Linear(std::int64_t in, std::int64_t out, Generator& gen, Device device = Device::cpu(), Init init = Init::HeNormal);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Linear"; }
  void collect(const std::string& prefix, Slots& out) override;
  double flops(const Shape& input) const override;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out]
};

class ReLU final : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "ReLU"; }
};

class Flatten final : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.flatten(1); }
  std::string kind() const override { return "Flatten"; }
};

// Children named "0", "1", ... like torch.nn.Sequential, or by the name given to add().
class Sequential final : public Module {
 public:
  Sequential& add(std::unique_ptr<Module> m);
  Sequential& add(const std::string& name, std::unique_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Sequential"; }
  void collect(const std::string& prefix, Slots& out) override;
  void set_training(bool training) override;
  void set_path(const std::string& path) override;
  std::size_t size() const { return children_.size(); }
  Module& operator[](std::size_t i) { return *children_[i].second; }

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

class Conv2d final : public Module {
 public:
  // fan_in = in / groups * kernel * kernel.
  Conv2d(std::int64_t in, std::int64_t out, std::int64_t kernel, Generator& gen, Device device = Device::cpu(),
         std::int64_t stride = 1, std::int64_t padding = 0, std::int64_t groups = 1, Init init = Init::HeNormal);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Conv2d"; }
  void collect(const std::string& prefix, Slots& out) override;
  double flops(const Shape& input) const override;
  Tensor weight;  // [out, in / groups, k, k]
  Tensor bias;    // [out]
  Conv2dParams params;
};

class MaxPool2d final : public Module {
 public:
  MaxPool2d(std::int64_t kernel, std::int64_t stride, std::int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "MaxPool2d"; }
  Pool2dParams params;
};

class AdaptiveAvgPool2d final : public Module {
 public:
  AdaptiveAvgPool2d(std::int64_t h, std::int64_t w) : h_(h), w_(w) {}
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "AdaptiveAvgPool2d"; }

 private:
  std::int64_t h_, w_;
};

class LocalResponseNorm final : public Module {
 public:
  LocalResponseNorm(std::int64_t size, float alpha, float beta, float k) : size_(size), alpha_(alpha), beta_(beta), k_(k) {}
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "LocalResponseNorm"; }

 private:
  std::int64_t size_;
  float alpha_, beta_, k_;
};

// Draws its masks from a generator shared by the model (saved in checkpoints for exact resume).
class Dropout final : public Module {
 public:
  Dropout(float p, std::shared_ptr<Generator> gen) : p_(p), gen_(std::move(gen)) {}
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Dropout"; }

 private:
  float p_;
  std::shared_ptr<Generator> gen_;
};

}  // namespace kiln::nn

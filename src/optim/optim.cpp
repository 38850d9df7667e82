// Optimizers and learning-rate schedules. The update of each parameter is one fused kernel.
#include <cmath>

#include "kiln/autograd.h"
#include "kiln/optim.h"
#include "ops/dispatch.h"

namespace kiln::optim {

namespace {
const Tensor& find_state(const io::NamedTensors& state, const std::string& name, const Tensor& like) {
  for (const auto& [n, t] : state)
    if (n == name) {
      KILN_CHECK(t.shape() == like.shape() && t.dtype() == like.dtype(), "optimizer state '", name, "' ", t.str(),
                 " does not fit parameter ", like.str());
      return t;
    }
  KILN_FAIL("optimizer state '", name, "' is missing (was the checkpoint written with another optimizer?)");
}

Tensor zeros_like(const Tensor& p) { return Tensor::zeros(p.shape(), DType::Float32, p.device()); }

class SGD final : public Optimizer {
 public:
  SGD(io::NamedTensors params, const SGDOptions& o) : Optimizer(std::move(params)), o_(o) {
    KILN_CHECK(std::isfinite(o.lr) && o.lr >= 0.0f, "sgd: learning rate must be a finite number >= 0, got ", o.lr);
    KILN_CHECK(o.momentum >= 0.0f && o.momentum < 1.0f, "sgd: momentum must be in [0, 1), got ", o.momentum);
    KILN_CHECK(o.weight_decay >= 0.0f, "sgd: weight decay must be >= 0, got ", o.weight_decay);
    KILN_CHECK(!o.nesterov || o.momentum > 0.0f, "sgd: Nesterov momentum needs momentum > 0");
    lr_ = o.lr;
    if (o.momentum > 0.0f)
      for (auto& [n, p] : params_) buf_.push_back(zeros_like(p));
  }
  void step() override {
    NoGradGuard no_grad;
    detail::OpScope scope("sgd.step");
    for (std::size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = params_[i].second;
      Tensor g = p.grad();
      if (!g.defined()) continue;
      Tensor buf = buf_.empty() ? Tensor() : buf_[i];
      KILN_DISPATCH(p.device(), sgd_update, p, g, buf, lr_, o_.momentum, o_.weight_decay, o_.nesterov);
    }
    ++steps_;
  }
  io::NamedTensors state() const override {
    io::NamedTensors s{{"optim.step", steps_tensor()}};
    for (std::size_t i = 0; i < buf_.size(); ++i) s.emplace_back("optim." + params_[i].first + ".momentum", buf_[i]);
    return s;
  }
  void load_state(const io::NamedTensors& state) override {
    load_steps(state);
    for (std::size_t i = 0; i < buf_.size(); ++i)
      buf_[i].copy_(find_state(state, "optim." + params_[i].first + ".momentum", buf_[i]));
  }
  std::string name() const override { return "sgd"; }

 private:
  SGDOptions o_;
  std::vector<Tensor> buf_;
};

class Adam final : public Optimizer {
 public:
  Adam(io::NamedTensors params, const AdamOptions& o) : Optimizer(std::move(params)), o_(o) {
    KILN_CHECK(std::isfinite(o.lr) && o.lr >= 0.0f, "adam: learning rate must be a finite number >= 0, got ", o.lr);
    KILN_CHECK(o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f && o.beta2 < 1.0f,
               "adam: betas must be in [0, 1), got ", o.beta1, ", ", o.beta2);
    KILN_CHECK(o.eps > 0.0f && o.weight_decay >= 0.0f, "adam: eps must be > 0 and weight decay >= 0");
    lr_ = o.lr;
    for (auto& [n, p] : params_) {
      m_.push_back(zeros_like(p));
      v_.push_back(zeros_like(p));
    }
  }
  void step() override {
    NoGradGuard no_grad;
    detail::OpScope scope("adam.step");
    const double t = static_cast<double>(steps_ + 1);
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o_.beta1), t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o_.beta2), t));
    for (std::size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = params_[i].second;
      Tensor g = p.grad();
      if (!g.defined()) continue;
      KILN_DISPATCH(p.device(), adam_update, p, g, m_[i], v_[i], lr_, o_.beta1, o_.beta2, o_.eps, o_.weight_decay,
                    o_.decoupled, bc1, bc2);
    }
    ++steps_;
  }
  io::NamedTensors state() const override {
    io::NamedTensors s{{"optim.step", steps_tensor()}};
    for (std::size_t i = 0; i < params_.size(); ++i) {
      s.emplace_back("optim." + params_[i].first + ".exp_avg", m_[i]);
      s.emplace_back("optim." + params_[i].first + ".exp_avg_sq", v_[i]);
    }
    return s;
  }
  void load_state(const io::NamedTensors& state) override {
    load_steps(state);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      m_[i].copy_(find_state(state, "optim." + params_[i].first + ".exp_avg", m_[i]));
      v_[i].copy_(find_state(state, "optim." + params_[i].first + ".exp_avg_sq", v_[i]));
    }
  }
  std::string name() const override { return o_.decoupled ? "adamw" : "adam"; }

 private:
  AdamOptions o_;
  std::vector<Tensor> m_, v_;
};
}  // namespace

void Optimizer::zero_grad() {
  for (auto& [n, p] : params_) p.zero_grad();
}

Tensor Optimizer::steps_tensor() const { return Tensor::from_vector<std::int64_t>({steps_}, {}); }

void Optimizer::load_steps(const io::NamedTensors& state) {
  for (const auto& [n, t] : state)
    if (n == "optim.step") {
      KILN_CHECK(t.dtype() == DType::Int64 && t.numel() == 1, "optimizer state 'optim.step' must be one int64, got ",
                 t.str());
      steps_ = t.to_vector<std::int64_t>()[0];
      return;
    }
  KILN_FAIL("optimizer state 'optim.step' is missing");
}

std::unique_ptr<Optimizer> sgd(io::NamedTensors params, const SGDOptions& options) {
  return std::make_unique<SGD>(std::move(params), options);
}

std::unique_ptr<Optimizer> adam(io::NamedTensors params, const AdamOptions& options) {
  return std::make_unique<Adam>(std::move(params), options);
}

float Schedule::lr_at(std::int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps)
    return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  const std::int64_t s = step - warmup_steps;
  switch (kind) {
    case Kind::Constant: return base_lr;
    case Kind::Step: return base_lr * std::pow(gamma, static_cast<float>(s / std::max<std::int64_t>(step_size, 1)));
    case Kind::Cosine: {
      const std::int64_t span = std::max<std::int64_t>(total_steps - warmup_steps, 1);
      const double frac = std::min(1.0, static_cast<double>(s) / static_cast<double>(span));
      return min_lr + static_cast<float>(0.5 * (1.0 + std::cos(3.141592653589793 * frac))) * (base_lr - min_lr);
    }
  }
  return base_lr;
}

Schedule::Kind Schedule::parse(const std::string& name) {
  if (name == "constant") return Kind::Constant;
  if (name == "step") return Kind::Step;
  if (name == "cosine") return Kind::Cosine;
  KILN_FAIL("unknown learning-rate schedule '", name, "' (expected constant, step or cosine)");
}

}  // namespace kiln::optim

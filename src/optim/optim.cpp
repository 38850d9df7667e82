// Optimizers over a parameter store, and learning-rate schedules.
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

std::int64_t load_step_count(const io::NamedTensors& state) {
  for (const auto& [n, t] : state)
    if (n == "optim.step") {
      KILN_CHECK(t.dtype() == DType::Int64 && t.numel() == 1, "optimizer state 'optim.step' must be one int64, got ",
                 t.str());
      return t.to_vector<std::int64_t>()[0];
    }
  KILN_FAIL("optimizer state 'optim.step' is missing");
}

using Range = nn::ParameterStore::Range;

class SGD final : public Optimizer {
 public:
  SGD(std::shared_ptr<nn::ParameterStore> store, const SGDOptions& o) : Optimizer(std::move(store)), o_(o) {
    KILN_CHECK(std::isfinite(o.lr) && o.lr >= 0.0f, "sgd: learning rate must be a finite number >= 0, got ", o.lr);
    KILN_CHECK(o.momentum >= 0.0f && o.momentum < 1.0f, "sgd: momentum must be in [0, 1), got ", o.momentum);
    KILN_CHECK(o.weight_decay >= 0.0f, "sgd: weight decay must be >= 0, got ", o.weight_decay);
    KILN_CHECK(!o.nesterov || o.momentum > 0.0f, "sgd: Nesterov momentum needs momentum > 0");
    schedule_ = Schedule::constant(o.lr);
    if (o.momentum > 0.0f) add_state("momentum");
  }
  std::string name() const override { return "sgd"; }

 private:
  void update(const Range& run, const Tensor& scalars) override {
    const auto& group = store_->groups()[run.group];
    Tensor p = slice(group.params, run);
    Tensor buf = state_.empty() ? Tensor() : slice(state_[0].per_group[run.group], run);
    KILN_DISPATCH(p.device(), sgd_update, p, slice(group.grads, run), buf, scalars, o_.momentum, o_.weight_decay,
                  o_.nesterov);
  }
  SGDOptions o_;
};

class Adam final : public Optimizer {
 public:
  Adam(std::shared_ptr<nn::ParameterStore> store, const AdamOptions& o) : Optimizer(std::move(store)), o_(o) {
    KILN_CHECK(std::isfinite(o.lr) && o.lr >= 0.0f, "adam: learning rate must be a finite number >= 0, got ", o.lr);
    KILN_CHECK(o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f && o.beta2 < 1.0f,
               "adam: betas must be in [0, 1), got ", o.beta1, ", ", o.beta2);
    KILN_CHECK(o.eps > 0.0f && o.weight_decay >= 0.0f, "adam: eps must be > 0 and weight decay >= 0");
    schedule_ = Schedule::constant(o.lr);
    add_state("exp_avg");
    add_state("exp_avg_sq");
  }
  std::string name() const override { return o_.decoupled ? "adamw" : "adam"; }

 private:
  float beta1() const override { return o_.beta1; }
  float beta2() const override { return o_.beta2; }
  void update(const Range& run, const Tensor& scalars) override {
    const auto& group = store_->groups()[run.group];
    Tensor p = slice(group.params, run), m = slice(state_[0].per_group[run.group], run),
           v = slice(state_[1].per_group[run.group], run);
    KILN_DISPATCH(p.device(), adam_update, p, slice(group.grads, run), m, v, scalars, o_.beta1, o_.beta2, o_.eps,
                  o_.weight_decay, o_.decoupled);
  }
  AdamOptions o_;
};
}  // namespace

Optimizer::Optimizer(std::shared_ptr<nn::ParameterStore> store) : store_(std::move(store)) {
  KILN_CHECK(store_ != nullptr, "optimizer: no parameter store");
  for (const auto& g : store_->groups())
    device_.push_back({Tensor::zeros({1}, DType::Int64, g.device), Tensor::zeros({4}, DType::Float32, g.device)});
}

void Optimizer::add_state(const std::string& suffix) {
  StateBuffer b{suffix, {}};
  for (const auto& g : store_->groups()) b.per_group.push_back(Tensor::zeros(g.params.shape(), g.dtype, g.device));
  state_.push_back(std::move(b));
}

Tensor Optimizer::slice(const Tensor& flat, const Range& run) { return flat.narrow0(run.offset, run.numel); }

void Optimizer::step() {
  NoGradGuard no_grad;
  detail::OpScope scope("optimizer.step");
  for (std::size_t g = 0; g < device_.size(); ++g) {
    DeviceScalars& d = device_[g];
    KILN_DISPATCH(d.step.device(), optim_advance, d.step, d.scalars, schedule_, beta1(), beta2());
    for (const Range& run : store_->runs_with_grad(g)) update(run, d.scalars);
  }
  ++steps_;
}

io::NamedTensors Optimizer::state() const {
  io::NamedTensors s{{"optim.step", Tensor::from_vector<std::int64_t>({steps_}, {})}};
  const auto& slots = store_->slots();
  for (std::size_t i = 0; i < slots.size(); ++i)
    for (const StateBuffer& b : state_)
      s.emplace_back("optim." + slots[i].name + "." + b.suffix, store_->view_of(b.per_group[slots[i].group], i));
  return s;
}

void Optimizer::load_state(const io::NamedTensors& state) {
  steps_ = load_step_count(state);
  for (DeviceScalars& d : device_) d.step.copy_(Tensor::from_vector<std::int64_t>({steps_}, {1}));
  const auto& slots = store_->slots();
  for (std::size_t i = 0; i < slots.size(); ++i)
    for (StateBuffer& b : state_) {
      Tensor view = store_->view_of(b.per_group[slots[i].group], i);
      view.copy_(find_state(state, "optim." + slots[i].name + "." + b.suffix, view));
    }
}

std::unique_ptr<Optimizer> sgd(std::shared_ptr<nn::ParameterStore> store, const SGDOptions& options) {
  return std::make_unique<SGD>(std::move(store), options);
}

std::unique_ptr<Optimizer> sgd(io::NamedTensors params, const SGDOptions& options) {
  return sgd(std::make_shared<nn::ParameterStore>(params), options);
}

std::unique_ptr<Optimizer> adam(std::shared_ptr<nn::ParameterStore> store, const AdamOptions& options) {
  return std::make_unique<Adam>(std::move(store), options);
}

std::unique_ptr<Optimizer> adam(io::NamedTensors params, const AdamOptions& options) {
  return adam(std::make_shared<nn::ParameterStore>(params), options);
}

Schedule::Kind Schedule::parse(const std::string& name) {
  if (name == "constant") return Kind::Constant;
  if (name == "step") return Kind::Step;
  if (name == "cosine") return Kind::Cosine;
  KILN_FAIL("unknown learning-rate schedule '", name, "' (expected constant, step or cosine)");
}

}  // namespace kiln::optim

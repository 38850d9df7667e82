// kiln/optim.h — optimizers over a parameter store (fused update kernels on both devices) and
// learning-rate schedules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/io.h"
#include "kiln/parameter_store.h"
#include "kiln/schedule.h"
#include "kiln/tensor.h"

namespace kiln::optim {

// An optimizer updates the parameters of a ParameterStore from their gradients: per group, one launch
// that advances the device-resident step scalars (lr, bias corrections), then one fused update launch
// per run of parameters holding a gradient (one per group when every parameter has one; parameters
// without a gradient are left as they are). The learning rate comes from a Schedule evaluated on the
// device at the device's step count, so no argument of those launches changes from step to step.
class Optimizer {
 public:
  explicit Optimizer(std::shared_ptr<nn::ParameterStore> store);
  virtual ~Optimizer() = default;
  // Applies one update from the parameters' gradients.
  void step();
  void zero_grad() { store_->zero_grad(); }
  // The learning rate of every later step (a constant schedule).
  void set_lr(float lr) { schedule_ = Schedule::constant(lr); }
  // The learning rate of step t is schedule.lr_at(t), t counting every step() since the first.
  void set_schedule(const Schedule& schedule) { schedule_ = schedule; }
  // The learning rate the next step() applies.
  float lr() const { return schedule_.lr_at(steps_); }
  std::int64_t steps() const { return steps_; }
  nn::ParameterStore& store() const { return *store_; }
  // Optimizer state as named tensors ("optim.<param>.momentum", ...) plus the step count, for checkpoints.
  io::NamedTensors state() const;
  // Restores state() output; a missing or mis-shaped tensor is a kiln::Error naming it.
  void load_state(const io::NamedTensors& state);
  virtual std::string name() const = 0;

 protected:
  // Per-parameter state tensors ("momentum", "exp_avg", ...), each a flat buffer per store group.
  struct StateBuffer {
    std::string suffix;
    std::vector<Tensor> per_group;
  };
  // Adds a zero-initialised state buffer laid out like the store's parameters.
  void add_state(const std::string& suffix);
  // Updates the parameters of `run` (a contiguous range of the group's buffers); `scalars` holds lr and
  // the bias corrections on the group's device.
  virtual void update(const nn::ParameterStore::Range& run, const Tensor& scalars) = 0;
  virtual float beta1() const { return 0.0f; }
  virtual float beta2() const { return 0.0f; }
  // The slice of a flat per-group buffer that `run` covers.
  static Tensor slice(const Tensor& flat, const nn::ParameterStore::Range& run);

  std::shared_ptr<nn::ParameterStore> store_;
  std::vector<StateBuffer> state_;
  Schedule schedule_;

 private:
  struct DeviceScalars {
    Tensor step;     // int64 [1]
    Tensor scalars;  // float32 [4]: lr, bc1, bc2, unused
  };
  std::vector<DeviceScalars> device_;  // per group
  std::int64_t steps_ = 0;
};

struct SGDOptions {
  float lr = 0.01f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
};
std::unique_ptr<Optimizer> sgd(std::shared_ptr<nn::ParameterStore> store, const SGDOptions& options);
// Registers `params` in a new ParameterStore (the tensors become views of its buffers).
std::unique_ptr<Optimizer> sgd(io::NamedTensors params, const SGDOptions& options);

struct AdamOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled = false;  // true: AdamW
};
std::unique_ptr<Optimizer> adam(std::shared_ptr<nn::ParameterStore> store, const AdamOptions& options);
std::unique_ptr<Optimizer> adam(io::NamedTensors params, const AdamOptions& options);

}  // namespace kiln::optim

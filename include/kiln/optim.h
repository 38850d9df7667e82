// kiln/optim.h — optimizers over a parameter store (fused update kernels on both devices) and
// learning-rate schedules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/io.h"
#include "kiln/parameter_store.h"
#include "kiln/tensor.h"

namespace kiln::optim {

// An optimizer updates the parameters of a ParameterStore from their gradients: per group, one launch
// that advances the device-resident step scalars (lr, bias corrections), then one fused update launch
// per run of parameters holding a gradient (one per group when every parameter has one; parameters
// without a gradient are left as they are). No argument of those launches changes from step to step
// except the learning rate handed to the advance launch.
class Optimizer {
 public:
  explicit Optimizer(std::shared_ptr<nn::ParameterStore> store);
  virtual ~Optimizer() = default;
  // Applies one update from the parameters' gradients.
  void step();
  void zero_grad() { store_->zero_grad(); }
  void set_lr(float lr) { lr_ = lr; }
  float lr() const { return lr_; }
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
  float lr_ = 0.01f;

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

// Learning rate per step: base lr, shaped by a schedule, after an optional linear warm-up.
struct Schedule {
  enum class Kind { Constant, Step, Cosine } kind = Kind::Constant;
  float base_lr = 0.01f;
  std::int64_t total_steps = 1;    // for cosine
  std::int64_t step_size = 1;      // for step: decay every step_size steps
  float gamma = 0.1f;              // for step
  std::int64_t warmup_steps = 0;   // linear from base_lr / warmup_steps up to base_lr
  float min_lr = 0.0f;             // cosine floor
  float lr_at(std::int64_t step) const;
  static Kind parse(const std::string& name);  // "constant" | "step" | "cosine"
};

}  // namespace kiln::optim

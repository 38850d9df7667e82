// kiln/optim.h — optimizers (fused update kernels on both devices) and learning-rate schedules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/io.h"
#include "kiln/tensor.h"

namespace kiln::optim {

class Optimizer {
 public:
  explicit Optimizer(io::NamedTensors params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  // Applies one update from the parameters' gradients (parameters without a gradient are skipped).
  virtual void step() = 0;
  void zero_grad();
  void set_lr(float lr) { lr_ = lr; }
  float lr() const { return lr_; }
  std::int64_t steps() const { return steps_; }
  // Optimizer state as named tensors ("optim.<param>.momentum", ...) plus the step count, for checkpoints.
  virtual io::NamedTensors state() const = 0;
  // Restores state() output; a missing or mis-shaped tensor is a kiln::Error naming it.
  virtual void load_state(const io::NamedTensors& state) = 0;
  virtual std::string name() const = 0;

 protected:
  io::NamedTensors params_;
  float lr_ = 0.01f;
  std::int64_t steps_ = 0;
  Tensor steps_tensor() const;
  void load_steps(const io::NamedTensors& state);
};

struct SGDOptions {
  float lr = 0.01f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
};
std::unique_ptr<Optimizer> sgd(io::NamedTensors params, const SGDOptions& options);

struct AdamOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled = false;  // true: AdamW
};
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

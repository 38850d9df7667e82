// kiln/schedule.h — learning-rate schedules. lr_at() is compiled for the host and the device: the
// optimizer evaluates it on the device from the device-resident step count (optim_advance), so no
// launch of a training step takes an argument that changes from step to step.
#pragma once

#include <math.h>

#include <cstdint>
#include <string>

#include "kiln/host_device.h"

namespace kiln::optim {

// Learning rate per step: base lr, shaped by a schedule, after an optional linear warm-up.
struct Schedule {
  enum class Kind { Constant, Step, Cosine } kind = Kind::Constant;
  float base_lr = 0.01f;
  std::int64_t total_steps = 1;    // for cosine
  std::int64_t step_size = 1;      // for step: decay every step_size steps
  float gamma = 0.1f;              // for step
  std::int64_t warmup_steps = 0;   // linear from base_lr / warmup_steps up to base_lr
  float min_lr = 0.0f;             // cosine floor

  static Schedule constant(float lr) {
    Schedule s;
    s.base_lr = lr;
    return s;
  }
  static Kind parse(const std::string& name);  // "constant" | "step" | "cosine"

  // The learning rate of step `step` (0-based).
  KILN_HD float lr_at(std::int64_t step) const {
    if (warmup_steps > 0 && step < warmup_steps)
      return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
    const std::int64_t s = step - warmup_steps;
    switch (kind) {
      case Kind::Constant: return base_lr;
      case Kind::Step: {
        const std::int64_t size = step_size > 1 ? step_size : 1;
        return base_lr * powf(gamma, static_cast<float>(s / size));
      }
      case Kind::Cosine: {
        const std::int64_t span = total_steps - warmup_steps > 1 ? total_steps - warmup_steps : 1;
        const double f = static_cast<double>(s) / static_cast<double>(span), frac = f < 1.0 ? f : 1.0;
        return min_lr + static_cast<float>(0.5 * (1.0 + cos(3.141592653589793 * frac))) * (base_lr - min_lr);
      }
    }
    return base_lr;
  }
};

}  // namespace kiln::optim

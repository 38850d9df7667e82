// Internal: one training step, and the device tallies of an epoch.
#pragma once

#include <cstdint>
#include <functional>

#include "kiln/loader.h"
#include "kiln/nn.h"
#include "kiln/optim.h"
#include "kiln/train.h"

namespace kiln::train::detail {

// An epoch's running loss sum and correct count, kept on the training device: each step adds to them
// without a host sync; the host reads them only at progress ticks and at the end of the epoch.
class Tallies {
 public:
  // Continues from saved values (zeros for a fresh epoch).
  Tallies(Device device, double loss_sum, std::int64_t correct, std::int64_t seen);
  void add(const Tensor& loss, const Tensor& logits, const Tensor& labels);
  std::int64_t seen() const { return seen_; }
  double loss_sum() const;        // host sync
  std::int64_t correct() const;   // host sync

 private:
  Tensor loss_sum_, correct_;
  std::int64_t seen_;
};

// The next batch of `loader`, timed as the NVTX/profile "data wait" region.
bool next_batch(data::Loader& loader, data::Batch& batch);

// prepare input -> forward -> loss -> backward -> gradient hook -> update -> tallies, with no host
// reads: on a GPU the host only enqueues work, so a step can later be captured as a CUDA graph.
class TrainStep {
 public:
  TrainStep(nn::Module& model, const ModelSpec& spec, optim::Optimizer& optimizer);
  // Runs after backward and before the update, with every gradient final: where data-parallel
  // training reduces the gradients across ranks.
  using GradientHook = std::function<void(nn::ParameterStore&)>;
  void set_gradient_hook(GradientHook hook) { gradient_hook_ = std::move(hook); }
  // One step on `batch` (at the learning rate the optimizer's schedule gives its step count); returns
  // the loss (on the device).
  Tensor run(const data::Batch& batch, Tallies& tallies);

 private:
  nn::Module& model_;
  const ModelSpec& spec_;
  optim::Optimizer& optimizer_;
  GradientHook gradient_hook_;
};

}  // namespace kiln::train::detail

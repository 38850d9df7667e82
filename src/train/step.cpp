// One training step and the epoch tallies.
#include "train/step.h"

#include "kiln/ops.h"
#include "kiln/profile.h"

namespace kiln::train::detail {

bool next_batch(data::Loader& loader, data::Batch& batch) {
  profile::Scope wait_scope("data", "wait", Device::cpu());  // NVTX "data wait"
  return loader.next(batch);
}

Tallies::Tallies(Device device, double loss_sum, std::int64_t correct, std::int64_t seen)
    : loss_sum_(Tensor::full({}, static_cast<float>(loss_sum), device)),
      correct_(Tensor::from_vector<std::int64_t>({correct}, {}, device)),
      seen_(seen) {}

void Tallies::add(const Tensor& loss, const Tensor& logits, const Tensor& labels) {
  axpy_(static_cast<float>(labels.numel()), loss.detach(), loss_sum_);
  count_correct_(logits.detach(), labels, correct_);
  seen_ += labels.numel();
}

double Tallies::loss_sum() const { return loss_sum_.item(); }

std::int64_t Tallies::correct() const { return correct_.to_vector<std::int64_t>()[0]; }

TrainStep::TrainStep(nn::Module& model, const ModelSpec& spec, optim::Optimizer& optimizer)
    : model_(model), spec_(spec), optimizer_(optimizer) {}

Tensor TrainStep::run(const data::Batch& batch, Tallies& tallies) {
  Tensor logits = model_(prepare_input(spec_, batch.images));
  Tensor loss;
  {
    profile::LayerScope layer("loss cross_entropy");
    profile::Scope scope("loss cross_entropy", "fwd", logits.device());
    loss = cross_entropy(logits, batch.labels);
  }
  optimizer_.zero_grad();
  loss.backward();
  if (gradient_hook_) gradient_hook_(optimizer_.store());
  {
    profile::Scope scope("optimizer " + optimizer_.name(), "step", logits.device());
    optimizer_.step();
  }
  tallies.add(loss, logits, batch.labels);
  return loss;
}

}  // namespace kiln::train::detail

// Evaluation: the model in inference mode over a loader, no gradients recorded.
#include "train/evaluate.h"

#include "kiln/autograd.h"
#include "kiln/ops.h"

namespace kiln::train {

namespace detail {
EvalResult run_eval(nn::Module& model, const ModelSpec& spec, data::Loader& loader) {
  NoGradGuard no_grad;
  const bool was_training = model.training();
  model.set_training(false);
  loader.start_epoch(0);
  data::Batch b;
  Tensor loss_sum, correct;
  std::int64_t n = 0;
  while (loader.next(b)) {
    if (b.labels.numel() == 0) continue;  // every sample of the batch failed to load (Unloadable::Drop)
    if (!loss_sum.defined()) {
      loss_sum = Tensor::zeros({}, DType::Float32, b.images.device());
      correct = Tensor::zeros({}, DType::Int64, b.images.device());
    }
    Tensor logits = model(prepare_input(spec, b.images));
    Tensor loss = cross_entropy(logits, b.labels);
    axpy_(static_cast<float>(b.labels.numel()), loss, loss_sum);
    count_correct_(logits, b.labels, correct);
    n += b.labels.numel();
  }
  model.set_training(was_training);
  EvalResult r;
  r.samples = n;
  r.skipped = loader.skipped_samples();
  if (n > 0) {
    r.loss = loss_sum.item() / static_cast<double>(n);
    r.accuracy = static_cast<double>(correct.to_vector<std::int64_t>()[0]) / static_cast<double>(n);
  }
  return r;
}
}  // namespace detail

EvalResult evaluate(nn::Module& model, const ModelSpec& spec, std::shared_ptr<const data::Source> source,
                    Device device, std::int64_t batch_size, int workers) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size, lo.shuffle = false, lo.workers = workers, lo.device = device;
  lo.unloadable = data::Unloadable::Drop;  // a file that fails to decode is not evaluated, nor counted
  data::Loader loader(std::move(source), lo);
  return detail::run_eval(model, spec, loader);
}

EvalResult evaluate(nn::Module& model, const ModelSpec& spec, const data::Dataset& dataset, Device device,
                    std::int64_t batch_size, int workers) {
  return evaluate(model, spec, data::in_memory(dataset), device, batch_size, workers);
}

}  // namespace kiln::train

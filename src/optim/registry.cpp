// The optimizer registry: an explicit table (no static-initializer registration, which silently
// drops entries under static linking), each entry adapting Hyper to its factory's options.
#include "optim/registry.h"

#include "core/by_name.h"

namespace kiln::optim {

namespace {
std::unique_ptr<Optimizer> create_sgd(std::shared_ptr<nn::ParameterStore> store, const Hyper& h) {
  SGDOptions o;
  o.lr = h.lr, o.momentum = h.momentum, o.weight_decay = h.weight_decay, o.nesterov = h.nesterov;
  return sgd(std::move(store), o);
}

// Adam and AdamW differ only in how weight decay enters: L2 in the gradient, or decoupled.
template <bool kDecoupled>
std::unique_ptr<Optimizer> create_adam(std::shared_ptr<nn::ParameterStore> store, const Hyper& h) {
  AdamOptions o;
  o.lr = h.lr, o.weight_decay = h.weight_decay, o.decoupled = kDecoupled;
  return adam(std::move(store), o);
}
}  // namespace

const std::vector<OptimizerEntry>& optimizers() {
  static const std::vector<OptimizerEntry> table = {
      {"sgd", "sgd", create_sgd},
      {"adam", "adam", create_adam<false>},
      {"adamw", "adam", create_adam<true>},
  };
  return table;
}

std::vector<std::string> known_names() { return detail::names_of(optimizers()); }

const OptimizerEntry& lookup(const std::string& name, const std::string& what) {
  return detail::find_by_name(optimizers(), name, what);
}

std::unique_ptr<Optimizer> create(const std::string& name, std::shared_ptr<nn::ParameterStore> store,
                                  const Hyper& hyper) {
  return lookup(name).create(std::move(store), hyper);
}

std::unique_ptr<Optimizer> create(const std::string& name, io::NamedTensors params, const Hyper& hyper) {
  const OptimizerEntry& entry = lookup(name);  // an unknown name fails before a store takes the tensors
  return entry.create(std::make_shared<nn::ParameterStore>(params), hyper);
}

}  // namespace kiln::optim

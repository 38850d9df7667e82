// Internal: the optimizers kiln can train with, by name. The one place where an optimizer is chosen
// by its name ("sgd", "adam", "adamw"): config validation, the CLI and fit() look names up here.
// Adding an optimizer is a factory in optim.cpp plus one entry in registry.cpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kiln/optim.h"

namespace kiln::optim {

// The hyper-parameters a run gives its optimizer; each optimizer uses the ones it has (Adam has no
// momentum) and keeps its own defaults for the rest (Adam's betas and eps).
struct Hyper {
  float lr = 0.01f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
};

struct OptimizerEntry {
  std::string name;
  // Optimizers of one family share a default learning rate for a given model (adam and adamw do),
  // so an architecture states its defaults per family rather than per optimizer.
  std::string family;
  std::unique_ptr<Optimizer> (*create)(std::shared_ptr<nn::ParameterStore> store, const Hyper& hyper);
};

// Every optimizer, in the order help texts list them.
const std::vector<OptimizerEntry>& optimizers();
std::vector<std::string> known_names();
// The entry called `name`; kiln::Error "unknown <what> 'name' (available: sgd, adam, adamw)" otherwise.
const OptimizerEntry& lookup(const std::string& name, const std::string& what = "optimizer");
// An optimizer over `store`'s parameters (what a training session uses).
std::unique_ptr<Optimizer> create(const std::string& name, std::shared_ptr<nn::ParameterStore> store,
                                  const Hyper& hyper);
// Registers `params` in a new ParameterStore (the tensors become views of its buffers), as
// optim::sgd(params, ...) and optim::adam(params, ...) do.
std::unique_ptr<Optimizer> create(const std::string& name, io::NamedTensors params, const Hyper& hyper);

}  // namespace kiln::optim

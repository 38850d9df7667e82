// Internal: what a training run sets up before its first step — shared by fit() and profile().
#pragma once

#include <memory>
#include <string>

#include "kiln/loader.h"
#include "kiln/nn.h"
#include "kiln/optim.h"
#include "kiln/parameter_store.h"
#include "kiln/train.h"
#include "io/run_lock.h"
#include "train/run_state.h"

namespace kiln::train::detail {

// The files of a run folder ("" writes nothing).
struct RunPaths {
  explicit RunPaths(const std::string& dir);
  bool enabled() const { return !dir.empty(); }
  std::string dir, checkpoint, model, metrics, curves;
};

// The validated config, the model spec the data asks for, the run state (resumed from the run
// folder's checkpoint when config.resume), and the model, parameter store, optimizer (with its
// learning-rate schedule) and loaders built from them.
struct Session {
  Session(const Config& config, std::shared_ptr<const data::Source> train, std::shared_ptr<const data::Source> test);
  // Writes the checkpoint (model, optimizer, `at`) and the weights-only model file, each atomically.
  void save(const RunState& at) const;
  // For errors that stop a run: where its last good state is ("The last good checkpoint is kept in DIR").
  std::string last_good_checkpoint() const;

  const Config& config;
  const RunPaths paths;
  // Held while the Session lives (declared early, so released after everything else is torn down).
  std::unique_ptr<io::RunLock> lock;
  std::shared_ptr<const data::Source> train_source, test_source;
  ModelSpec spec;
  RunState state;
  std::shared_ptr<Generator> dropout_gen;
  std::unique_ptr<nn::Module> model;
  std::shared_ptr<nn::ParameterStore> store;
  std::unique_ptr<optim::Optimizer> optimizer;
  std::unique_ptr<data::Loader> loader, test_loader;
  std::int64_t steps_per_epoch = 0;

 private:
  io::SafetensorsFile open_run_folder();
  void claim_run_folder();
  void discard_unfinished_run() const;
  void check_weights_finite() const;
  void build_model(const io::SafetensorsFile& resumed);
  void build_loaders();
};

}  // namespace kiln::train::detail

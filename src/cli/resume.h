// Internal to the kiln tool: `kiln train --resume` continues the run as it was started. Every
// training flag the command line does not give takes the run's own value (from the config saved in
// its checkpoint), so `--resume --epochs 20` extends a run with its --lr, --schedule and --model
// instead of silently restarting from the defaults. A flag that is given wins; the run-shaping ones
// (--model, --hidden, --dataset, --optimizer) must then agree with the checkpoint (train::Session).
#pragma once

#include <CLI/CLI.hpp>

#include <set>
#include <string>

#include "kiln/train.h"

namespace kiln::cli {

// Reads `config.out_dir`/checkpoint.safetensors' saved config and sets the values of the flags of
// `cmd` that were not given: config's fields, and `model` / `hidden` (the flags' texts). Prints what
// it changed on stderr unless `quiet`, and returns the flags it set. A missing checkpoint is left to
// the run to report.
std::set<std::string> inherit_run_flags(const CLI::App& cmd, train::Config& config, std::string& model,
                                        std::string& hidden, bool quiet);

}  // namespace kiln::cli

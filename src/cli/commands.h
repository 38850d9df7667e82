// Internal to the kiln tool: its subcommands, one file each (train.cpp, bench.cpp, eval.cpp,
// predict.cpp, info.cpp). main.cpp adds them in the order `kiln --help` lists them and runs the
// one that was given.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace kiln::cli {

// A subcommand's CLI11 app, whose flags are bound to options that `run` owns, and what to do when
// it is the one given. `run` returns the exit status; failures are thrown (main() reports them).
// `check` validates the parsed flags alone, touching no file, device or dataset: main() calls it
// before `run`, and tests/fuzz/fuzz_cli.cpp drives every flag through it. Empty: nothing to check.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
  std::function<void()> check;
};

// Adds every subcommand to `kiln` (the top-level app), in the order `kiln --help` lists them, with
// the flag policies main() parses under.
std::vector<Subcommand> add_subcommands(CLI::App& kiln);

Subcommand add_train(CLI::App& kiln);
Subcommand add_bench(CLI::App& kiln);
Subcommand add_eval(CLI::App& kiln);
Subcommand add_predict(CLI::App& kiln);
Subcommand add_info(CLI::App& kiln);

}  // namespace kiln::cli

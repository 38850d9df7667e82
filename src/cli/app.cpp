// The `kiln` tool's command tree, built in one place for main() and for the CLI fuzzer
// (tests/fuzz/fuzz_cli.cpp), so that the fuzzer parses exactly the flags users type.
#include "cli/commands.h"

namespace kiln::cli {

std::vector<Subcommand> add_subcommands(CLI::App& kiln) {
  kiln.require_subcommand(1);
  // A flag given twice takes its last value, so `./kiln.sh train mnist --epochs 1` overrides the
  // script's. Set before the subcommands are added: they copy the defaults when created.
  kiln.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  return {add_train(kiln), add_bench(kiln), add_eval(kiln), add_predict(kiln), add_info(kiln)};
}

}  // namespace kiln::cli

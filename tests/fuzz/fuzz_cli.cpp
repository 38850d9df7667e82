// libFuzzer target: the `kiln` command line. The input is split at NUL bytes into arguments (at
// most 64); they are parsed by the very command tree main() builds (cli::add_subcommands), then the
// chosen subcommand's flags are checked alone (Subcommand::check), as main() does before running it.
//
// A parse error (CLI::ParseError, which includes --help) and a refused flag (kiln::Error) are the
// expected outcomes; any other exception escaping, or a crash, is a finding.
#include <cstdint>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "kiln/error.h"

namespace {

constexpr std::size_t kMaxArgs = 64;

std::vector<std::string> split_arguments(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args{"kiln"};
  std::string arg;
  for (std::size_t i = 0; i < size && args.size() < kMaxArgs; ++i) {
    if (data[i] != 0) {
      arg += static_cast<char>(data[i]);
      continue;
    }
    args.push_back(arg);
    arg.clear();
  }
  if (!arg.empty() && args.size() < kMaxArgs) args.push_back(arg);
  return args;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::string> args = split_arguments(data, size);
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  CLI::App app;
  const std::vector<kiln::cli::Subcommand> commands = kiln::cli::add_subcommands(app);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
    for (const kiln::cli::Subcommand& command : commands)
      if (command.app->parsed() && command.check) command.check();
  } catch (const CLI::ParseError&) {
  } catch (const kiln::Error&) {
  }
  return 0;
}

// The `kiln` command-line tool: train, bench, eval, predict, info (one file each, see commands.h).
// Every failure reaches main() as an exception and becomes one clear line on stderr and an exit
// status: 1 for a kiln::Error, 130 for an interrupted run (checkpoint written), 2 for a flag that
// does not parse and for anything else.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "kiln/train.h"

namespace {

// Results go to stdout, which may be a file on a full disk or a closed pipe: output that was lost
// is a failure, reported like any other, not a success.
void check_stdout_written() {
  errno = 0;
  const bool failed = std::fflush(stdout) != 0 || std::ferror(stdout);
  KILN_CHECK(!failed, "cannot write the results to standard output: ",
             errno ? std::strerror(errno) : "write error");
}

int run_reporting_errors(const kiln::cli::Subcommand& command) {
  try {
    if (command.check) command.check();
    const int status = command.run();
    check_stdout_written();
    return status;
  } catch (const kiln::train::Interrupted& e) {
    std::fprintf(stderr, "kiln: %s\n", e.what());
    return 130;
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
    return 2;
  }
}

// " train" when a subcommand was named, else "": where --help tells more.
std::string subcommand_name(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) return " " + sub->get_name();
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln — train MLPs and CNNs in C++17/CUDA, on a GPU or the CPU"};
  const std::vector<kiln::cli::Subcommand> commands = kiln::cli::add_subcommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    // A bad flag reads like every other failure: one "kiln: error:" line.
    std::fprintf(stderr, "kiln: error: %s (see kiln%s --help)\n", e.what(), subcommand_name(app).c_str());
    return 2;
  }
  for (const auto& command : commands)
    if (command.app->parsed()) return run_reporting_errors(command);
  return 0;
}

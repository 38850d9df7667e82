// `--resume`: the flags a run was started with, for those the command line leaves out.
#include "cli/resume.h"

#include <cstdio>
#include <functional>
#include <type_traits>
#include <vector>

#include "io/files.h"
#include "io/json.h"

namespace kiln::cli {

namespace {

// A flag, its key in the saved config, its value now, and how to take the saved one.
struct Inherited {
  const char* flag;
  const char* key;
  std::function<io::Json()> now;
  std::function<void(const io::Json&)> take;
};

template <class T>
Inherited bind(const char* flag, const char* key, T& field) {
  auto now = [&field] {
    if constexpr (std::is_same_v<T, float>) return io::Json(io::json_number(field));  // 0.1, not 0.100000001
    else return io::Json(field);
  };
  return {flag, key, now, [&field](const io::Json& v) { field = v.get<T>(); }};
}

// --hidden is text on the command line ("512,256") and an array in the config.
Inherited bind_hidden(std::string& hidden) {
  auto join = [](const std::vector<std::int64_t>& v) {
    std::string s;
    for (std::int64_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
  };
  return {"--hidden", "hidden", [&hidden] { return io::Json(hidden); },
          [&hidden, join](const io::Json& v) { hidden = join(v.get<std::vector<std::int64_t>>()); }};
}

std::vector<Inherited> inheritable(train::Config& c, std::string& model, std::string& hidden) {
  return {bind("--model", "model", model),
          bind_hidden(hidden),
          bind("--groups", "groups", c.model.groups),
          bind("--dataset", "dataset", c.dataset),
          bind("--batch-size", "batch_size", c.batch_size),
          bind("--optimizer", "optimizer", c.optimizer),
          bind("--lr", "lr", c.lr),
          bind("--momentum", "momentum", c.momentum),
          bind("--nesterov", "nesterov", c.nesterov),
          bind("--weight-decay", "weight_decay", c.weight_decay),
          bind("--schedule", "schedule", c.schedule),
          bind("--warmup-epochs", "warmup_epochs", c.warmup_epochs),
          bind("--step-epochs", "step_epochs", c.step_epochs),
          bind("--gamma", "gamma", c.gamma),
          bind("--resize", "resize", c.resize),
          bind("--seed", "seed", c.seed)};
}

// "--lr 0.1", as a user would type it.
std::string flag_text(const Inherited& f) {
  const io::Json v = f.now();
  return std::string(" ") + f.flag + " " + (v.is_string() ? v.get<std::string>() : io::to_text(v));
}

}  // namespace

std::set<std::string> inherit_run_flags(const CLI::App& cmd, train::Config& config, std::string& model,
                                        std::string& hidden, bool quiet) {
  const std::string path = config.out_dir + "/checkpoint.safetensors";
  std::set<std::string> taken;
  if (!io::exists(path)) return taken;
  const auto metadata = io::load_safetensors_metadata(path);
  const auto saved_text = metadata.find("config");
  if (saved_text == metadata.end()) return taken;  // a checkpoint without one: every flag as given
  const io::Json saved = io::parse_strict(saved_text->second, path, "config");
  std::string changed;  // the flags whose value differs from what this command line alone meant
  for (const Inherited& f : inheritable(config, model, hidden)) {
    if (cmd.get_option(f.flag)->count() > 0 || !saved.contains(f.key)) continue;
    const std::string before = flag_text(f);
    try {
      f.take(saved[f.key]);
    } catch (const io::Json::exception& e) {
      KILN_FAIL(path, ": the saved config's '", f.key, "' is ", io::excerpt(saved[f.key]), ": ", e.what());
    }
    taken.insert(f.flag);
    if (flag_text(f) != before) changed += flag_text(f);
  }
  if (!quiet && !changed.empty()) std::fprintf(stderr, "kiln: --resume continues with the run's%s\n", changed.c_str());
  return taken;
}

}  // namespace kiln::cli

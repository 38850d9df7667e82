// `kiln train`: flags -> a train::Config and the two data sources, then train::fit() (or, with
// --profile, train::profile()).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/resume.h"
#include "optim/registry.h"
#include "train/architectures.h"

namespace kiln::cli {

namespace {

struct TrainOptions {
  train::Config cfg;
  std::string model = "mlp", hidden = "512,256", data_dir, val_dir, device = "auto";
  int image_size = 224, channels = 3;
  bool strict = false, quiet = false;
  CLI::Option* lr = nullptr;       // not given: the architecture's default for the optimizer
  CLI::Option* workers = nullptr;  // not given: more threads for image folders, which decode
  std::vector<CLI::Option*> folder_flags;  // meaningful for --dataset imagefolder only
  const CLI::App* cmd = nullptr;           // which flags were given (--resume takes the others from the run)
};

using Sources = std::pair<std::shared_ptr<const data::Source>, std::shared_ptr<const data::Source>>;

void add_model_flags(CLI::App& cmd, TrainOptions& o) {
  cmd.add_option("--model", o.model, "Model architecture: " + alternatives(train::architecture_names()))
      ->capture_default_str();
  cmd.add_option("--hidden", o.hidden, "MLP hidden layer sizes, comma-separated")->capture_default_str();
  cmd.add_option("--groups", o.cfg.model.groups, "alexnet2012: 2 for the paper's two-tower convolutions")
      ->capture_default_str();
}

void add_data_flags(CLI::App& cmd, TrainOptions& o) {
  cmd.add_option("--dataset", o.cfg.dataset, "mnist | fashion-mnist | imagefolder")->capture_default_str();
  cmd.add_option("--data", o.data_dir, "Dataset folder (default: data/<dataset>; imagefolder: DIR/<class>/<image>)");
  o.folder_flags = {
      cmd.add_option("--val-data", o.val_dir, "imagefolder: validation folder (default: a seeded 10% hold-out)"),
      cmd.add_option("--image-size", o.image_size, "imagefolder: crop size fed to the model")->capture_default_str(),
      cmd.add_option("--channels", o.channels, "imagefolder: 3 (RGB) or 1 (grey)")->capture_default_str(),
      cmd.add_flag("--strict", o.strict,
                   "imagefolder: a file that fails to decode is an error (default: skipped, counted)")};
  cmd.add_option("--resize", o.cfg.resize, "Resize images to NxN on the device (e.g. 224 for AlexNet on MNIST)");
}

void add_optimisation_flags(CLI::App& cmd, TrainOptions& o) {
  train::Config& c = o.cfg;
  cmd.add_option("--epochs", c.epochs, "Number of epochs (the total, also when resuming)")->capture_default_str();
  cmd.add_option("--batch-size", c.batch_size, "Images per step")->capture_default_str();
  o.lr = cmd.add_option("--lr", c.lr, "Learning rate (default: sgd 0.05 for mlp, 0.01 for alexnet; adam/adamw 0.001)");
  cmd.add_option("--optimizer", c.optimizer, alternatives(optim::known_names()))->capture_default_str();
  cmd.add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str();
  cmd.add_flag("--nesterov", c.nesterov, "Nesterov momentum (SGD)");
  cmd.add_option("--weight-decay", c.weight_decay, "Weight decay (L2 for sgd/adam, decoupled for adamw)")
      ->capture_default_str();
  cmd.add_option("--schedule", c.schedule, "Learning-rate schedule: constant | step | cosine")->capture_default_str();
  cmd.add_option("--warmup-epochs", c.warmup_epochs, "Linear learning-rate warm-up epochs")->capture_default_str();
  cmd.add_option("--step-epochs", c.step_epochs, "Step schedule: multiply lr by --gamma every N epochs (0: epochs/3)");
  cmd.add_option("--gamma", c.gamma, "Step schedule decay factor")->capture_default_str();
  cmd.add_option("--seed", c.seed, "Seed for initialisation and shuffling")
      ->capture_default_str()
      ->check(CLI::Validator(  // "-1" would otherwise wrap to 2^64 - 1
          [](std::string& v) { return v.rfind('-', 0) == 0 ? std::string("must not be negative") : std::string(); },
          ""));
}

void add_run_flags(CLI::App& cmd, TrainOptions& o) {
  train::Config& c = o.cfg;
  o.workers = cmd.add_option(
      "--workers", c.workers,
      "Batch-assembly threads (default: 2 for in-memory datasets; for image folders, which decode JPEG/PNG, "
      "one per hardware thread but one, at most 16)");
  add_device_flag(cmd, o.device);
  cmd.add_option("--out", c.out_dir,
                 "Run folder for checkpoint.safetensors, model.safetensors, metrics.jsonl, curves.svg")
      ->required();
  cmd.add_flag("--resume", c.resume, "Continue the run in --out from its checkpoint");
  cmd.add_flag("--quiet", o.quiet, "No progress or summary lines");
  cmd.add_option("--profile", c.profile_steps,
                 "Profile N steps after 5 warm-up steps: per-layer forward/backward times, then stop")
      ->expected(0, 1)
      ->default_str("20");
}

std::vector<std::int64_t> parse_hidden(const std::string& text) {
  std::vector<std::int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    KILN_CHECK(!item.empty() && *end == '\0' && v > 0 && v <= (1 << 20), "--hidden '", text,
               "': expected positive layer sizes separated by commas, e.g. 512,256");
    out.push_back(v);
    start = comma + 1;
  }
  return out;
}

// The flags alone, no file or device touched: the model, the normalisation of --dataset, the flags
// of image folders, and Config::validate's bounds. `inherited`: the flags --resume took from the run.
void apply_flags(TrainOptions& o, const std::set<std::string>& inherited) {
  train::Config& c = o.cfg;
  KILN_CHECK(!c.out_dir.empty(), "--out must name a run folder, got an empty path");
  c.model.arch = o.model;
  c.model.hidden = parse_hidden(o.hidden);
  dataset_stats(c.dataset, c.model.mean, c.model.std);
  c.progress = !o.quiet;
  for (const CLI::Option* flag : o.folder_flags)  // silently ignored, it would mislead
    KILN_CHECK(c.dataset == "imagefolder" || flag->count() == 0, flag->get_name(),
               " applies to --dataset imagefolder only (this run is --dataset ", c.dataset, ")");
  KILN_CHECK(o.channels == 1 || o.channels == 3, "--channels must be 1 or 3, got ", o.channels);
  check_in_range("--image-size", o.image_size, 8, 4096);  // data::ImageFolder's bounds, named by flag
  if (o.lr->count() == 0 && inherited.count("--lr") == 0) c.lr = train::default_lr(o.model, c.optimizer);
  c.validate();
}

// Everything fit() needs from the flags except the data; --resume first takes the run's own values.
void configure(TrainOptions& o) {
  train::Config& c = o.cfg;
  const std::set<std::string> inherited =
      c.resume ? inherit_run_flags(*o.cmd, c, o.model, o.hidden, o.quiet) : std::set<std::string>{};
  apply_flags(o, inherited);
  c.device = resolve_device(o.device);
  if (o.data_dir.empty()) o.data_dir = default_data_dir(c.dataset);
}

// DIR/<class>/<image> files, augmented for training; validation from --val-data or a seeded 10% hold-out.
Sources image_folder_sources(TrainOptions& o) {
  train::Config& c = o.cfg;
  if (o.workers->count() == 0)
    c.workers = static_cast<int>(std::clamp(static_cast<int>(std::thread::hardware_concurrency()) - 1, 2, 16));
  if (o.channels == 1) c.model.mean = {0.449f}, c.model.std = {0.226f};
  const data::ImageFolderOptions tr = folder_options(o.channels, o.image_size, o.strict, true);
  const data::ImageFolderOptions ev = folder_options(o.channels, o.image_size, o.strict, false);
  if (!o.val_dir.empty())
    return {std::make_shared<data::ImageFolder>(o.data_dir, tr), std::make_shared<data::ImageFolder>(o.val_dir, ev)};
  const data::ImageFolder all(o.data_dir, tr);
  return data::ImageFolder::split(all, 0.1, c.seed, tr, ev);
}

int run_train(TrainOptions& o) {
  configure(o);
  const train::Config& c = o.cfg;
  const Sources data =
      c.dataset == "imagefolder"
          ? image_folder_sources(o)
          : Sources{mnist_split(o.data_dir, true, c.dataset), mnist_split(o.data_dir, false, c.dataset)};
  train::install_signal_handlers();
  if (c.profile_steps > 0) {
    train::profile(c, data.first, data.second);
    return 0;
  }
  const auto history = train::fit(c, data.first, data.second);
  if (!o.quiet && !history.empty())
    std::printf("done: test accuracy %.2f%% after %d epochs; run folder %s\n", 100 * history.back().test_acc,
                history.back().epoch, c.out_dir.c_str());
  return 0;
}

}  // namespace

Subcommand add_train(CLI::App& kiln) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd =
      kiln.add_subcommand("train", "Train a model; writes checkpoints, metrics.jsonl and curves.svg to --out");
  o->cmd = cmd;
  add_model_flags(*cmd, *o);
  add_data_flags(*cmd, *o);
  add_optimisation_flags(*cmd, *o);
  add_run_flags(*cmd, *o);
  // The check works on a copy, and not under --resume: the run's own flags (its --dataset, say)
  // come first there, which needs the run folder; run_train applies them and checks then.
  return {cmd, [o] { return run_train(*o); }, [o] {
            if (o->cfg.resume) return;
            TrainOptions copy = *o;
            apply_flags(copy, {});
          }};
}

}  // namespace kiln::cli

// `kiln eval`: a model file's loss and accuracy on a dataset's test split or an image folder.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/text.h"

namespace kiln::cli {

namespace {

struct EvalOptions {
  std::string checkpoint, dataset = "mnist", data_dir, device = "auto";
  std::int64_t batch_size = 256;
  bool strict = false;
};

// The data to evaluate on, what to call it in messages, and (image folders) its files' paths.
struct EvalData {
  std::shared_ptr<const data::Source> source;
  std::shared_ptr<const data::ImageFolder> folder;  // null for a test split
  std::string what;
};

// The images the model was trained on: an image folder at the model's input size and with its
// evaluation transform, else a test split.
EvalData eval_data(const EvalOptions& o, const train::ModelSpec& spec) {
  if (o.dataset == "imagefolder") {
    data::ImageFolderOptions ev = folder_options(static_cast<int>(spec.input[0]), static_cast<int>(spec.input[1]),
                                                 o.strict, false);
    ev.eval_transform = spec.eval_transform;
    auto folder = std::make_shared<data::ImageFolder>(o.data_dir, ev);
    return {folder, folder, "image folder " + io::printable(o.data_dir)};
  }
  return {mnist_split(o.data_dir, false, o.dataset), nullptr, "the " + o.dataset + " test set in " + o.data_dir};
}

// "skipped 2 undecodable files: a.png, b.png" on stderr, the first few named.
void report_skipped(const EvalData& d, const std::vector<std::int64_t>& skipped) {
  constexpr std::size_t kNamed = 5;
  std::string names;
  for (std::size_t i = 0; i < skipped.size() && i < kNamed; ++i)
    names += (i ? ", " : "") + (d.folder ? io::printable(d.folder->path(skipped[i])) : "#" + std::to_string(skipped[i]));
  if (skipped.size() > kNamed) names += detail::str(" and ", skipped.size() - kNamed, " more");
  std::fprintf(stderr, "kiln: skipped %zu undecodable file%s: %s (--strict makes that an error)\n", skipped.size(),
               skipped.size() == 1 ? "" : "s", names.c_str());
}

int run_eval(EvalOptions& o) {
  const Device dev = resolve_device(o.device);
  train::LoadedModel loaded = load_model_for(o.checkpoint, dev, o.dataset);
  const train::ModelSpec& spec = loaded.spec;
  if (o.data_dir.empty()) o.data_dir = default_data_dir(o.dataset);
  KILN_CHECK(o.dataset == "imagefolder" || spec.input[0] == 1, o.checkpoint, " holds a ", spec.input[0],
             "-channel ", spec.arch, "; evaluate it on an image folder (--dataset imagefolder --data DIR)");
  const EvalData d = eval_data(o, spec);
  // A weights-only file's classes have no names: only their count can be compared.
  data::check_same_classes("the model in " + o.checkpoint, spec.classes,
                           loaded.from_kiln ? spec.class_names : std::vector<std::string>{}, d.what, *d.source);
  const auto r = train::evaluate(*loaded.model, spec, d.source, dev, o.batch_size);
  if (!r.skipped.empty()) report_skipped(d, r.skipped);
  KILN_CHECK(r.samples > 0, "none of the ", d.source->size(), " images of ", d.what, " could be decoded");
  std::printf("%s on %s test (%lld images): loss %.4f accuracy %.2f%%\n", o.checkpoint.c_str(), o.dataset.c_str(),
              static_cast<long long>(r.samples), r.loss, 100 * r.accuracy);
  return 0;
}

}  // namespace

Subcommand add_eval(CLI::App& kiln) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = kiln.add_subcommand("eval", "Evaluate a checkpoint on a dataset's test split (or an image folder)");
  cmd->add_option("--checkpoint", o->checkpoint,
                  "A kiln checkpoint/model file, or PyTorch-written weights (safetensors)")
      ->required();
  cmd->add_option("--dataset", o->dataset, "mnist | fashion-mnist | imagefolder")->capture_default_str();
  cmd->add_option("--data", o->data_dir, "Dataset folder (default: data/<dataset>)");
  cmd->add_option("--batch-size", o->batch_size, "Images per batch")->capture_default_str();
  cmd->add_flag("--strict", o->strict,
                "imagefolder: a file that fails to decode is an error (default: skipped, counted, named)");
  add_device_flag(*cmd, o->device);
  return {cmd, [o] { return run_eval(*o); },
          [o] { check_in_range("--batch-size", o->batch_size, 1, train::kMaxBatchSize); }};
}

}  // namespace kiln::cli

// `kiln eval`: a model file's loss and accuracy on a dataset's test split or an image folder.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"

namespace kiln::cli {

namespace {

struct EvalOptions {
  std::string checkpoint, dataset = "mnist", data_dir, device = "auto";
  std::int64_t batch_size = 256;
};

// The images the model was trained on: an image folder at the model's input size, else a test split.
std::shared_ptr<const data::Source> eval_source(const EvalOptions& o, const train::ModelSpec& spec) {
  if (o.dataset == "imagefolder") {
    const auto ev = folder_options(static_cast<int>(spec.input[0]), static_cast<int>(spec.input[1]), false, false);
    return std::make_shared<data::ImageFolder>(o.data_dir, ev);
  }
  return mnist_split(o.data_dir, false, o.dataset);
}

int run_eval(EvalOptions& o) {
  check_in_range("--batch-size", o.batch_size, 1, train::kMaxBatchSize);
  const Device dev = resolve_device(o.device);
  train::LoadedModel loaded = load_model_for(o.checkpoint, dev, o.dataset);
  if (o.data_dir.empty()) o.data_dir = default_data_dir(o.dataset);
  KILN_CHECK(o.dataset == "imagefolder" || loaded.spec.input[0] == 1, o.checkpoint, " holds a ", loaded.spec.input[0],
             "-channel ", loaded.spec.arch, "; evaluate it on an image folder (--dataset imagefolder --data DIR)");
  const auto r = train::evaluate(*loaded.model, loaded.spec, eval_source(o, loaded.spec), dev, o.batch_size);
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
  add_device_flag(*cmd, o->device);
  return {cmd, [o] { return run_eval(*o); }};
}

}  // namespace kiln::cli

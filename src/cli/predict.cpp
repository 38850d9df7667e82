// `kiln predict`: class probabilities of image files, as top-k text lines or one JSON object each.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/json.h"
#include "io/text.h"

namespace kiln::cli {

namespace {

struct PredictOptions {
  std::string checkpoint, device = "auto", stats_dataset = "mnist";
  std::vector<std::string> images;
  int top_k = 3;
  bool as_json = false;
};

// Images per forward pass: the activations of a batch, not of every file given, must fit in memory.
constexpr std::size_t kBatchImages = 64;

// paths[first, first + count) through the model's evaluation transform (the one `kiln eval` applies).
Tensor decode_images(const std::vector<std::string>& paths, std::size_t first, std::size_t count,
                     const train::ModelSpec& spec) {
  const int C = static_cast<int>(spec.input[0]), H = static_cast<int>(spec.input[1]),
            W = static_cast<int>(spec.input[2]);
  Tensor batch = Tensor::empty({static_cast<std::int64_t>(count), C, H, W}, DType::UInt8);
  for (std::size_t i = 0; i < count; ++i)
    data::apply_eval_transform(data::decode_image(paths[first + i], C), spec.eval_transform, H, W,
                         batch.data<std::uint8_t>() + static_cast<std::int64_t>(i) * C * H * W);
  return batch;
}

// (probability, class) of every class, in class order.
using Probabilities = std::vector<std::pair<double, std::int64_t>>;

std::string class_name(const train::ModelSpec& spec, std::int64_t k) {
  return k < static_cast<std::int64_t>(spec.class_names.size()) ? spec.class_names[static_cast<std::size_t>(k)]
                                                                : std::to_string(k);
}

void sort_most_likely_first(Probabilities& probs) {
  std::sort(probs.begin(), probs.end(), [](auto& a, auto& b) { return a.first > b.first; });
}

// JSON strings take any name: to_text replaces bytes that are not UTF-8.
std::string json_line(const std::string& path, Probabilities probs, const train::ModelSpec& spec) {
  io::Json probabilities = io::Json::object();
  for (std::size_t k = 0; k < probs.size(); ++k)
    probabilities[class_name(spec, static_cast<std::int64_t>(k))] = io::json_number(static_cast<float>(probs[k].first));
  sort_most_likely_first(probs);
  const io::Json line = {{"image", path}, {"probabilities", probabilities}, {"top", class_name(spec, probs[0].second)}};
  return io::to_text(line) + "\n";
}

// One line per image, names escaped (io::printable): a newline in a file name must not start a line.
std::string top_k_line(const std::string& path, Probabilities probs, const train::ModelSpec& spec, int top_k) {
  sort_most_likely_first(probs);
  std::string line = io::printable(path) + ":";
  char pct[32];
  for (std::size_t k = 0; k < std::min<std::size_t>(static_cast<std::size_t>(top_k), probs.size()); ++k) {
    std::snprintf(pct, sizeof pct, " (%.2f%%)", 100.0 * probs[k].first);
    line += (k ? ", " : " ") + io::printable(class_name(spec, probs[k].second)) + pct;
  }
  return line + "\n";
}

// The output lines of images[first, first + count), from one forward pass.
std::string predict_batch(const PredictOptions& o, const train::LoadedModel& loaded, Device dev, std::size_t first,
                          std::size_t count) {
  const train::ModelSpec& spec = loaded.spec;
  const Tensor batch = decode_images(o.images, first, count, spec);
  NoGradGuard no_grad;
  const std::vector<float> lp =
      log_softmax((*loaded.model)(train::prepare_input(spec, batch.to(dev)))).to_vector<float>();
  const std::int64_t K = spec.classes;
  std::string out;
  for (std::size_t i = 0; i < count; ++i) {
    Probabilities probs;
    for (std::int64_t k = 0; k < K; ++k)
      probs.emplace_back(std::exp(static_cast<double>(lp[static_cast<std::int64_t>(i) * K + k])), k);
    const std::string& path = o.images[first + i];
    out += o.as_json ? json_line(path, std::move(probs), spec) : top_k_line(path, std::move(probs), spec, o.top_k);
  }
  return out;
}

int run_predict(const PredictOptions& o) {
  const Device dev = resolve_device(o.device);
  const train::LoadedModel loaded = load_model_for(o.checkpoint, dev, o.stats_dataset);
  // The output is held back until every image has been classified, so that a file that fails to
  // decode fails the command before anything is printed; a line is far smaller than an image.
  std::string out;
  for (std::size_t first = 0; first < o.images.size(); first += kBatchImages)
    out += predict_batch(o, loaded, dev, first, std::min(kBatchImages, o.images.size() - first));
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

Subcommand add_predict(CLI::App& kiln) {
  auto o = std::make_shared<PredictOptions>();
  CLI::App* cmd = kiln.add_subcommand("predict", "Classify image files (PNG, JPEG, BMP, ...) with a trained model");
  cmd->add_option("--dataset", o->stats_dataset,
                  "For weights-only MLP files: whose normalisation to use (mnist | fashion-mnist)")
      ->capture_default_str();
  cmd->add_option("--checkpoint", o->checkpoint, "A kiln checkpoint/model file, or PyTorch-written weights")
      ->required();
  cmd->add_option("images", o->images, "Image files")->required();
  cmd->add_option("--top-k", o->top_k, "Classes to print per image")->capture_default_str();
  cmd->add_flag("--json", o->as_json, "One JSON object per image with every class probability");
  add_device_flag(*cmd, o->device);
  return {cmd, [o] { return run_predict(*o); }, [o] { require_at_least("--top-k", o->top_k, 1); }};
}

}  // namespace kiln::cli

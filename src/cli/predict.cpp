// `kiln predict`: class probabilities of image files, as top-k text lines or one JSON object each.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/json.h"

namespace kiln::cli {

namespace {

struct PredictOptions {
  std::string checkpoint, device = "auto", stats_dataset = "mnist";
  std::vector<std::string> images;
  int top_k = 3;
  bool as_json = false;
};

// Decodes every image first, so that one bad file fails the command before anything is printed.
Tensor decode_images(const std::vector<std::string>& paths, const train::ModelSpec& spec) {
  const int C = static_cast<int>(spec.input[0]), H = static_cast<int>(spec.input[1]),
            W = static_cast<int>(spec.input[2]);
  const std::int64_t n = static_cast<std::int64_t>(paths.size());
  Tensor batch = Tensor::empty({n, C, H, W}, DType::UInt8);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::string& path = paths[static_cast<std::size_t>(i)];
    std::uint8_t* dst = batch.data<std::uint8_t>() + i * C * H * W;
    if (H >= 64) {  // CNNs: the image folders' evaluation transform
      data::center_crop_resize(data::decode_image(path, C), H, W, dst);
    } else {
      Tensor img = data::load_image(path, C, H, W);
      std::memcpy(dst, img.raw_data(), img.nbytes());
    }
  }
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

void print_json(const std::string& path, Probabilities probs, const train::ModelSpec& spec) {
  io::Json probabilities = io::Json::object();
  for (std::size_t k = 0; k < probs.size(); ++k)
    probabilities[class_name(spec, static_cast<std::int64_t>(k))] = io::json_number(static_cast<float>(probs[k].first));
  sort_most_likely_first(probs);
  const io::Json line = {{"image", path}, {"probabilities", probabilities}, {"top", class_name(spec, probs[0].second)}};
  std::printf("%s\n", io::to_text(line).c_str());
}

void print_top_k(const std::string& path, Probabilities probs, const train::ModelSpec& spec, int top_k) {
  sort_most_likely_first(probs);
  std::printf("%s:", path.c_str());
  for (std::size_t k = 0; k < std::min<std::size_t>(static_cast<std::size_t>(top_k), probs.size()); ++k)
    std::printf("%s %s (%.2f%%)", k ? "," : "", class_name(spec, probs[k].second).c_str(), 100.0 * probs[k].first);
  std::printf("\n");
}

int run_predict(const PredictOptions& o) {
  require_at_least("--top-k", o.top_k, 1);
  const Device dev = resolve_device(o.device);
  const train::LoadedModel loaded = load_model_for(o.checkpoint, dev, o.stats_dataset);
  const train::ModelSpec& spec = loaded.spec;
  const Tensor batch = decode_images(o.images, spec);
  NoGradGuard no_grad;
  const std::vector<float> lp =
      log_softmax((*loaded.model)(train::prepare_input(spec, batch.to(dev)))).to_vector<float>();
  const std::int64_t K = spec.classes;
  for (std::size_t i = 0; i < o.images.size(); ++i) {
    Probabilities probs;
    for (std::int64_t k = 0; k < K; ++k)
      probs.emplace_back(std::exp(static_cast<double>(lp[static_cast<std::int64_t>(i) * K + k])), k);
    if (o.as_json)
      print_json(o.images[i], std::move(probs), spec);
    else
      print_top_k(o.images[i], std::move(probs), spec, o.top_k);
  }
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
  return {cmd, [o] { return run_predict(*o); }};
}

}  // namespace kiln::cli

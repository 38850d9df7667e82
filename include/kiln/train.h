// kiln/train.h — the training job behind `kiln train`: model construction from a spec, the epoch
// loop with progress and metrics, evaluation, and checkpoints that make a run resumable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/data.h"
#include "kiln/io.h"
#include "kiln/nn.h"
#include "kiln/optim.h"

namespace kiln::train {

// What a model is, as stored in a checkpoint's metadata.
struct ModelSpec {
  std::string arch = "mlp";                   // a name in the architecture registry (src/train/architectures.cpp)
  std::vector<std::int64_t> hidden{512, 256}; // MLP hidden sizes
  std::int64_t groups = 1;                    // alexnet2012: 2 for the paper's two-tower convolutions
  Shape input{1, 28, 28};                     // [C, H, W] the model takes (images are resized to it)
  std::int64_t classes = 10;
  std::vector<std::string> class_names;
  std::vector<float> mean{0.1307f}, std{0.3081f};  // input normalisation, per channel
  // How an image file becomes an input at evaluation: the training data's (Source::eval_transform).
  data::EvalTransform eval_transform = data::EvalTransform::Resize;
};

// `dropout_gen` feeds the model's dropout masks (a fresh one when null).
std::unique_ptr<nn::Module> build_model(const ModelSpec& spec, Generator& gen, Device device,
                                        std::shared_ptr<Generator> dropout_gen = nullptr);
// uint8 images [N, C, H, W] on the model's device -> the model's input: normalised, resized on the
// device to spec.input when the images are smaller or larger, flattened for MLPs.
Tensor prepare_input(const ModelSpec& spec, const Tensor& images);

// Bounds on what a user can ask for, so that no size computed from them can overflow.
constexpr std::int64_t kMaxBatchSize = std::int64_t{1} << 24;
constexpr int kMaxEpochs = 1000000, kMaxSteps = 10000000;

struct Config {
  ModelSpec model;
  std::string dataset = "mnist";
  std::int64_t resize = 0;  // > 0: resize images to resize x resize on the device (MNIST at 224 for AlexNet)
  int epochs = 10;
  std::int64_t batch_size = 128;
  std::string optimizer = "sgd";  // a name in the optimizer registry (src/optim/registry.cpp)
  float lr = 0.01f, momentum = 0.9f, weight_decay = 0.0f;
  bool nesterov = false;
  std::string schedule = "constant";  // constant | step | cosine
  int warmup_epochs = 0;
  int step_epochs = 0;  // step schedule: decay every N epochs (0: a third of the run)
  float gamma = 0.1f;
  std::uint64_t seed = 0;
  int workers = 2;
  Device device = Device::cpu();
  std::string out_dir;  // run folder: checkpoint, model, metrics.jsonl, curves.svg ("" writes nothing)
  bool resume = false;
  bool progress = true;  // progress and summary lines on stderr / stdout
  // > 0: profile instead of training to the end: after profile_warmup_steps, time this many steps per
  // layer (forward, backward, loss, optimizer, data wait), print the table and return.
  int profile_steps = 0;
  int profile_warmup_steps = 5;  // untimed steps before the profiled ones
  // Checks values a user can get wrong (kiln::Error naming the flag and the value).
  void validate() const;
  std::string to_json() const;
};

struct EpochMetrics {
  int epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0;
  double epoch_s = 0, images_per_s = 0, data_wait_pct = 0, lr = 0;
  std::string to_json() const;
};

// Thrown by fit() when a stop was requested (SIGINT/SIGTERM/SIGHUP); the checkpoint has been written.
class Interrupted : public Error {
 public:
  using Error::Error;
};

// Async-signal-safe: asks fit() (running, or about to run) to finish its current step, checkpoint and
// stop; the request is consumed when fit() throws Interrupted.
void request_stop();
// Installs request_stop() as the SIGINT, SIGTERM and SIGHUP handler.
void install_signal_handlers();

// Trains per `config` (resuming from out_dir/checkpoint.safetensors when config.resume), evaluating on
// `test` after every epoch, and returns the metrics of every epoch (earlier ones too, when resumed).
std::vector<EpochMetrics> fit(const Config& config, std::shared_ptr<const data::Source> train,
                              std::shared_ptr<const data::Source> test);
std::vector<EpochMetrics> fit(const Config& config, const data::Dataset& train, const data::Dataset& test);
// The training step of the run `config` describes, timed per layer (forward, backward, loss, optimizer,
// data wait) over config.profile_steps steps after config.profile_warmup_steps untimed ones; prints the
// table and saves nothing. fit() calls it when config.profile_steps > 0.
std::vector<EpochMetrics> profile(const Config& config, std::shared_ptr<const data::Source> train,
                                  std::shared_ptr<const data::Source> test);

struct EvalResult {
  double loss = 0, accuracy = 0;
  std::int64_t samples = 0;           // evaluated: the source's size less the skipped ones
  std::vector<std::int64_t> skipped;  // source indices of samples that could not be loaded
};
EvalResult evaluate(nn::Module& model, const ModelSpec& spec, const data::Dataset& dataset, Device device,
                    std::int64_t batch_size = 256, int workers = 2);
EvalResult evaluate(nn::Module& model, const ModelSpec& spec, std::shared_ptr<const data::Source> source,
                    Device device, std::int64_t batch_size = 256, int workers = 2);

// A loaded model: from a kiln checkpoint, or a weights-only safetensors file (PyTorch-written) whose
// architecture is inferred from its tensor names and shapes.
struct LoadedModel {
  ModelSpec spec;
  bool from_kiln = false;  // false: weights only (normalisation then follows the dataset)
  std::unique_ptr<nn::Module> model;
};
LoadedModel load_model(const std::string& path, Device device);

}  // namespace kiln::train

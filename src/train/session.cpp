// Setting up a training run: checks, the run folder (fresh or resumed), model, store, optimizer,
// loaders and schedule.
#include "train/session.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>

#include "io/files.h"
#include "kiln/autograd.h"
#include "kiln/cuda.h"
#include "kiln/ops.h"
#include "kiln/random.h"
#include "optim/registry.h"
#include "train/architectures.h"

namespace kiln::train::detail {

namespace {
void check_sources(const data::Source* train, const data::Source* test) {
  KILN_CHECK(train && test && train->size() > 0 && test->size() > 0, "the training and test sets must not be empty");
  KILN_CHECK(train->sample_shape() == test->sample_shape(), "the training set (", train->describe(),
             ") and the test set (", test->describe(), ") do not match");
  data::check_same_classes("the training set (" + train->describe() + ")", train->num_classes(),
                           train->class_names(), "the test set (" + test->describe() + ")", *test);
}

// The model the data asks for: its sample shape (or --resize), classes and class names.
ModelSpec spec_for(const Config& config, const data::Source& train) {
  ModelSpec spec = config.model;
  spec.input = train.sample_shape();
  if (config.resize > 0) spec.input[1] = spec.input[2] = config.resize;
  spec.classes = train.num_classes();
  spec.class_names = train.class_names();
  spec.eval_transform = train.eval_transform();
  return spec;
}

// "--<flag> <saved>, not <asked>": the flags a resumed run must repeat (the model, its
// architecture's own fields, the dataset and the optimizer), else it would keep training the saved
// model while metrics.jsonl records the new flags.
void check_same_flag(const std::string& path, const std::string& flag, const std::string& saved,
                     const std::string& asked) {
  KILN_CHECK(saved == asked, path, ": the run was started with --", flag, " ", saved, ", not ", asked,
             "; resume it with the same --", flag, " (or start a new run in another --out)");
}

void check_same_run(const Config& config, const ModelSpec& data_spec, const ModelSpec& saved, const Metadata& md,
                    const std::string& path) {
  check_same_flag(path, "model", saved.arch, data_spec.arch);
  Metadata saved_fields, asked_fields;
  architecture(saved.arch).encode_fields(saved, saved_fields);
  architecture(saved.arch).encode_fields(data_spec, asked_fields);
  for (const auto& [field, value] : saved_fields) check_same_flag(path, field, value, asked_fields[field]);
  auto dataset = md.find("dataset");
  KILN_CHECK(dataset != md.end(), path, ": checkpoint metadata has no 'dataset'");
  check_same_flag(path, "dataset", dataset->second, config.dataset);
  auto optimizer = md.find("optimizer");
  KILN_CHECK(optimizer != md.end(), path, ": checkpoint metadata has no 'optimizer'");
  check_same_flag(path, "optimizer", optimizer->second, config.optimizer);
}

// What a resumed run must agree on with the checkpoint it continues.
void check_resumable(const Config& config, const ModelSpec& data_spec, const ModelSpec& saved, const Metadata& md,
                     const RunState& s, std::int64_t train_images, const std::string& path) {
  check_same_run(config, data_spec, saved, md, path);
  KILN_CHECK(saved.input == data_spec.input && saved.classes == data_spec.classes, path,
             ": the checkpoint's model takes ", shape_str(saved.input), " images and ", saved.classes,
             " classes, the dataset has ", shape_str(data_spec.input), " and ", data_spec.classes);
  KILN_CHECK(s.batch == 0 || s.batch_size == config.batch_size, path,
             ": the run stopped in the middle of an epoch with --batch-size ", s.batch_size,
             "; resume it with the same batch size (got ", config.batch_size, ")");
  // The epoch's order is a permutation of the training set: the rest of it only exists for the same set.
  KILN_CHECK(s.batch == 0 || s.train_images == 0 || s.train_images == train_images, path,
             ": the run stopped in the middle of an epoch on a training set of ", s.train_images,
             " images; this one has ", train_images, ". Resume it on the same data");
  KILN_CHECK(s.epoch < config.epochs, path, ": the run already completed ", s.epoch,
             " epochs; pass a larger --epochs to train further");
}
}  // namespace

RunPaths::RunPaths(const std::string& d)
    : dir(d),
      checkpoint(d + "/checkpoint.safetensors"),
      model(d + "/model.safetensors"),
      metrics(d + "/metrics.jsonl"),
      curves(d + "/curves.svg") {}

Session::Session(const Config& c, std::shared_ptr<const data::Source> train, std::shared_ptr<const data::Source> test)
    : config(c), paths(c.out_dir), train_source(std::move(train)), test_source(std::move(test)) {
  config.validate();
  check_device_usable(config.device);
  check_sources(train_source.get(), test_source.get());
  spec = spec_for(config, *train_source);
  state.seed = config.seed;
  state.batch_size = config.batch_size;
  state.train_images = train_source->size();
  const io::SafetensorsFile resumed = open_run_folder();
  build_model(resumed);
  build_loaders();
}

// A fresh run needs a folder without a run in it; a resumed one takes its state and spec from the
// checkpoint (the saved seed too, so shuffling and dropout continue exactly).
io::SafetensorsFile Session::open_run_folder() {
  io::SafetensorsFile resumed;
  if (!paths.enabled()) return resumed;
  claim_run_folder();
  if (config.resume) {
    KILN_CHECK(io::exists(paths.checkpoint), "--resume: no checkpoint at ", paths.checkpoint,
               " (start a new run without --resume)");
    resumed = io::load_safetensors(paths.checkpoint);
    const ModelSpec saved = decode_spec(resumed.metadata, paths.checkpoint);
    state = decode_run_state(resumed.metadata, paths.checkpoint);
    check_resumable(config, spec, saved, resumed.metadata, state, train_source->size(), paths.checkpoint);
    state.batch_size = config.batch_size;
    spec = saved;
  } else {
    KILN_CHECK(!io::exists(paths.checkpoint), paths.dir, " already holds a run (", paths.checkpoint,
               "); continue it with --resume or choose another --out");
    KILN_CHECK(!io::exists(paths.model), paths.dir, " already holds a trained model (", paths.model,
               ") but no checkpoint to resume; choose another --out, or move the model away to train anew here");
    discard_unfinished_run();
  }
  return resumed;
}

// A run that was killed before its first checkpoint left only its config line in metrics.jsonl:
// nothing to resume, and appending to it would mix two runs, so it goes. A metrics.jsonl with epoch
// rows (or not kiln's) is someone's results: refused, never removed.
void Session::discard_unfinished_run() const {
  if (!io::exists(paths.metrics)) return;
  std::istringstream lines(io::read_all(paths.metrics));
  for (std::string line; std::getline(lines, line);)
    KILN_CHECK(line.rfind("{\"config\":", 0) == 0, paths.dir, " holds ", paths.metrics,
               " with results but no checkpoint; choose another --out, or move the file away to train anew here");
  io::remove_file(paths.metrics);
  if (config.progress)
    std::fprintf(stderr, "kiln: %s held a run that stopped before its first checkpoint; starting afresh\n",
                 paths.dir.c_str());
}

// NaN or infinite weights (a last step that diverged, after its loss was checked) never replace a
// good checkpoint or model: one reduction per save, x * 0 summing to NaN iff some x is not finite.
void Session::check_weights_finite() const {
  NoGradGuard no_grad;
  for (const auto& group : store->groups()) {
    const double probe = sum(scale(group.params, 0.0f)).item();
    KILN_CHECK(std::isfinite(probe), "the weights became NaN or infinite (the training diverged); try a lower --lr. ",
               last_good_checkpoint());
  }
}

std::string Session::last_good_checkpoint() const {
  if (paths.enabled() && io::exists(paths.checkpoint)) return "The last good checkpoint is kept in " + paths.dir;
  return "No checkpoint had been written yet";
}

// Before any other check or write: the lock (a second run on the folder fails here), a probe that
// the folder takes files (so a read-only one fails now, not at the first save after an epoch), and
// the temporaries of writers that were killed mid-save (hundreds of MB each for AlexNet). Under the
// lock no other kiln writes here, so those are the dead writers' leftovers only.
void Session::claim_run_folder() {
  KILN_CHECK(!config.resume || io::exists(paths.dir), "--resume: no checkpoint at ", paths.checkpoint,
             " (the folder ", paths.dir, " does not exist)");
  io::make_dirs(paths.dir);
  lock = std::make_unique<io::RunLock>(paths.dir);
  io::check_writable(paths.dir);
  io::remove_stale_temporaries(paths.dir);
}

void Session::build_model(const io::SafetensorsFile& resumed) {
  Generator gen(state.seed);
  dropout_gen = std::make_shared<Generator>(state.seed + 1);
  model = train::build_model(spec, gen, config.device, dropout_gen);
  store = std::make_shared<nn::ParameterStore>(model->named_parameters());
  optimizer =
      optim::create(config.optimizer, store, {config.lr, config.momentum, config.weight_decay, config.nesterov});
  if (!config.resume) return;
  try {
    model->load_state(resumed.tensors);
    optimizer->load_state(resumed.tensors);
    dropout_gen->set_state(state.seed + 1, state.dropout_offset);
  } catch (const Error& e) {
    throw Error(paths.checkpoint + ": " + e.what());
  }
}

void Session::build_loaders() {
  data::LoaderOptions lo;
  lo.batch_size = config.batch_size, lo.seed = state.seed, lo.workers = config.workers, lo.device = config.device;
  loader = std::make_unique<data::Loader>(train_source, lo);
  data::LoaderOptions to = lo;
  to.shuffle = false;
  to.unloadable = data::Unloadable::Drop;  // each test image counts once, or not at all
  // Evaluation holds no activations for backward: larger batches, except for the big CNN inputs.
  if (shape_numel(spec.input) <= 64 * 64 * 3) to.batch_size = std::max<std::int64_t>(config.batch_size, 256);
  test_loader = std::make_unique<data::Loader>(test_source, to);
  steps_per_epoch = loader->batches_per_epoch();
  KILN_CHECK(state.batch < steps_per_epoch, paths.checkpoint, ": the run stopped after step ", state.batch,
             " of an epoch, but this training set (", train_source->size(), " images) has ", steps_per_epoch,
             " steps per epoch; resume it on the data it was started with");

  optim::Schedule schedule;
  schedule.kind = optim::Schedule::parse(config.schedule);
  schedule.base_lr = config.lr;
  schedule.total_steps = steps_per_epoch * config.epochs;
  schedule.warmup_steps = steps_per_epoch * config.warmup_epochs;
  schedule.step_size =
      steps_per_epoch * (config.step_epochs > 0 ? config.step_epochs : std::max(1, config.epochs / 3));
  schedule.gamma = config.gamma;
  optimizer->set_schedule(schedule);  // the optimizer's step count is the run's global step
}

void Session::save(const RunState& at) const {
  if (!paths.enabled()) return;
  check_weights_finite();
  RunState s = at;
  s.seed = state.seed;
  s.batch_size = config.batch_size;
  s.train_images = train_source->size();
  s.dropout_offset = dropout_gen->offset();
  Metadata md;
  encode_run_state(s, config, spec, md);
  io::NamedTensors tensors = model->named_parameters();
  const io::NamedTensors weights = tensors;
  for (auto& t : optimizer->state()) tensors.push_back(t);
  io::save_safetensors(paths.checkpoint, tensors, md);
  Metadata wmd;
  encode_spec(spec, wmd);
  wmd["format"] = "kiln-weights-1";
  io::save_safetensors(paths.model, weights, wmd);
}

}  // namespace kiln::train::detail

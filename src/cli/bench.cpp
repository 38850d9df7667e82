// `kiln bench`: training steps on random data with the per-layer table (train::fit's profile mode),
// or only the image-folder pipeline (--loader-only), or the memory-bound kernels (--kernels).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "bench/kernels.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "train/architectures.h"

namespace kiln::cli {

namespace {

struct BenchOptions {
  train::Config cfg;
  std::string model = "alexnet", device = "auto", loader_folder;
  int image_size = 224, channels = 3, classes = 1000;
  // Not given: the architecture's own input and classes (an MLP is MNIST-shaped unless told otherwise).
  CLI::Option *image_size_flag = nullptr, *channels_flag = nullptr, *classes_flag = nullptr;
  bool kernels = false;
  bench::KernelBenchOptions kernel;
};

void add_model_flags(CLI::App& cmd, BenchOptions& o) {
  cmd.add_option("--model", o.model, alternatives(train::architecture_names()))->capture_default_str();
  cmd.add_option("--batch-size", o.cfg.batch_size, "Images per step")->capture_default_str();
  o.image_size_flag =
      cmd.add_option("--image-size", o.image_size, "Input height and width (mlp: 28)")->capture_default_str();
  o.channels_flag = cmd.add_option("--channels", o.channels, "Input channels (mlp: 1)")->capture_default_str();
  o.classes_flag = cmd.add_option("--classes", o.classes, "Number of classes (default: 1000, mlp: 10)");
  cmd.add_option("--steps", o.cfg.profile_steps, "Timed steps (after the warm-up steps)")->capture_default_str();
  cmd.add_option("--warmup", o.cfg.profile_warmup_steps, "Untimed warm-up steps before the timed ones")
      ->capture_default_str();
  cmd.add_option("--workers", o.cfg.workers, "Batch-assembly threads")->capture_default_str();
  add_device_flag(cmd, o.device);
  cmd.add_option("--loader-only", o.loader_folder,
                 "Time only the data pipeline on an image folder (decode + random-resized crop + flip), no model");
}

void add_kernel_flags(CLI::App& cmd, BenchOptions& o) {
  bench::KernelBenchOptions& k = o.kernel;
  cmd.add_flag("--kernels", o.kernels,
               "Time kiln's memory-bound kernels on large tensors against the device's copy bandwidth, no model");
  cmd.add_option("--elements", k.elements, "--kernels: floats per large tensor")->capture_default_str();
  cmd.add_option("--repeat", k.repeat,
                 "--kernels: timed runs per kernel, median reported (default 20 on a GPU, 5 on the CPU)");
  cmd.add_option("--filter", k.filter, "--kernels: only kernels whose name contains this text");
  cmd.add_flag("--markdown", k.markdown, "--kernels: print the table as Markdown (for bench/RESULTS.md)");
  cmd.add_option("--min-fraction", k.min_fraction,
                 "--kernels: exit with status 1 if an elementwise/reduction kernel is below this fraction of the copy "
                 "bandwidth (default: report only, the target 0.8 is marked)");
}

// Decoded images per second of the image-folder pipeline, in total and per worker thread.
int bench_loader(const BenchOptions& o) {
  const train::Config& c = o.cfg;
  auto src = std::make_shared<data::ImageFolder>(o.loader_folder, folder_options(3, o.image_size, false, true));
  data::LoaderOptions lo;
  lo.batch_size = c.batch_size, lo.workers = c.workers, lo.device = Device::cpu(), lo.seed = 1;
  data::Loader loader(src, lo);
  loader.start_epoch(0);
  data::Batch b;
  std::int64_t n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (loader.next(b)) n += b.labels.numel();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("image folder %s: %lld images -> %dx%d in %.2f s with %d workers: %.1f images/s, %.1f per worker "
              "(%lld undecodable, skipped)\n",
              o.loader_folder.c_str(), static_cast<long long>(n), o.image_size, o.image_size, s, c.workers, n / s,
              n / s / c.workers, static_cast<long long>(loader.skipped()));
  return 0;
}

// The flag when given, else the architecture's default.
int given_or(const CLI::Option* flag, int value, std::int64_t fallback) {
  return flag->count() > 0 ? value : static_cast<int>(fallback);
}

// The random images' shape and classes: the flags when given, else the architecture's defaults.
struct RandomData {
  int size, channels, classes;
};

RandomData random_data(const BenchOptions& o) {
  const train::Architecture& arch = train::architecture(o.model, "--model");
  const RandomData d{given_or(o.image_size_flag, o.image_size, arch.default_input[1]),
                     given_or(o.channels_flag, o.channels, arch.default_input[0]),
                     given_or(o.classes_flag, o.classes, arch.default_classes)};
  check_in_range("--image-size", d.size, 1, 8192);
  check_in_range("--channels", d.channels, 1, 64);
  check_in_range("--classes", d.classes, 2, 1 << 20);
  return d;
}

// The flags of the mode given, alone (Subcommand::check); --kernels checks its own.
void check_bench_flags(const BenchOptions& o) {
  const train::Config& c = o.cfg;
  if (o.kernels) return;
  if (!o.loader_folder.empty()) {
    check_in_range("--batch-size", c.batch_size, 1, train::kMaxBatchSize);
    check_in_range("--workers", c.workers, 1, 256);
    return;
  }
  check_in_range("--steps", c.profile_steps, 1, train::kMaxSteps);
  KILN_CHECK(c.profile_warmup_steps >= 1,
             "--warmup must be at least 1 (the first step plans the convolutions and fills the caches), got ",
             c.profile_warmup_steps);
  random_data(o);
}

// train::profile() on random images: warm-up steps, timed steps, the per-layer table.
int bench_model(BenchOptions& o) {
  train::Config& c = o.cfg;
  const auto [size, channels, classes] = random_data(o);
  c.model.arch = o.model;
  c.model.mean = std::vector<float>(static_cast<std::size_t>(channels), 0.5f);
  c.model.std = std::vector<float>(static_cast<std::size_t>(channels), 0.25f);
  c.dataset = "random";
  c.epochs = 1;
  c.lr = train::default_lr(o.model, c.optimizer);
  c.validate();  // before the random data is made: a bad --batch-size is named, not a bad data size
  c.device = resolve_device(o.device);
  const std::int64_t n = c.batch_size * (c.profile_steps + c.profile_warmup_steps + 1);
  const Shape shape{channels, size, size};
  train::profile(c, data::random_images(n, shape, classes, 1),
                 data::random_images(c.batch_size, shape, classes, 2));
  return 0;
}

int run_bench(BenchOptions& o) {
  if (!o.loader_folder.empty()) return bench_loader(o);
  if (o.kernels) return bench::kernel_bandwidth(resolve_device(o.device), o.kernel);
  return bench_model(o);
}

}  // namespace

Subcommand add_bench(CLI::App& kiln) {
  auto o = std::make_shared<BenchOptions>();
  o->cfg.profile_steps = 20;
  CLI::App* cmd = kiln.add_subcommand("bench", "Time training steps on random data and print the per-layer table");
  add_model_flags(*cmd, *o);
  add_kernel_flags(*cmd, *o);
  return {cmd, [o] { return run_bench(*o); }, [o] { check_bench_flags(*o); }};
}

}  // namespace kiln::cli

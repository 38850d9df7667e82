// The `kiln` command-line tool: train, eval, predict, info. Every failure reaches main() as a kiln::Error
// and becomes one clear line on stderr and a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>

#include "kiln/kiln.h"
#include "kiln/image.h"
#include "kiln/train.h"
#include "bench/kernels.h"
#include "io/json.h"

namespace {

using kiln::Device;

int cmd_info() {
  std::printf("kiln %s\n", KILN_VERSION);
#if defined(KILN_CUDA_EMULATED)
  const char* cuda = "EMULATED on the CPU (KILN_CUDA=EMULATE; not a GPU)";
#else
  const char* cuda = kiln::cuda_built() ? "yes" : "no";
#endif
  std::printf("build:    CUDA backend %s, CPU GEMM %s, OpenMP %s\n", cuda,
              KILN_CPU_GEMM, KILN_OPENMP ? "yes" : "no");
  std::printf("host:     %u hardware threads\n", std::thread::hardware_concurrency());
  const kiln::cuda::Versions v = kiln::cuda::versions();
  std::printf("CUDA:     runtime %s, driver %s, cuBLAS %s, cuDNN %s\n", v.runtime.c_str(), v.driver.c_str(),
              v.cublas.c_str(), v.cudnn.c_str());
  std::printf("devices:  cpu\n");
  const std::string devs = kiln::cuda::describe_devices();
  std::size_t pos = 0;
  while (pos < devs.size()) {
    std::size_t nl = devs.find('\n', pos);
    if (nl == std::string::npos) nl = devs.size();
    std::printf("          %s\n", devs.substr(pos, nl - pos).c_str());
    pos = nl + 1;
  }
  return 0;
}

Device resolve_device(const std::string& text) {
  if (text == "auto") {
    if (kiln::cuda_available()) return Device::cuda(0);
    std::fprintf(stderr, "kiln: no CUDA device (%s); running on the CPU\n", kiln::cuda_unavailable_reason().c_str());
    return Device::cpu();
  }
  Device d = Device::parse(text);
  kiln::check_device_usable(d);
  return d;
}

// Normalisation constants of each dataset (mean and std of the training pixels in [0, 1]).
void dataset_stats(const std::string& name, std::vector<float>& mean, std::vector<float>& std) {
  if (name == "mnist") {
    mean = {0.1307f}, std = {0.3081f};
  } else if (name == "fashion-mnist") {
    mean = {0.2860f}, std = {0.3530f};
  } else if (name == "imagefolder") {  // ImageNet statistics (their mean for grey images)
    mean = {0.485f, 0.456f, 0.406f}, std = {0.229f, 0.224f, 0.225f};
  } else {
    KILN_FAIL("unknown --dataset '", name, "' (expected mnist, fashion-mnist or imagefolder)");
  }
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

std::string default_data_dir(const std::string& dataset) { return "data/" + dataset; }

int cmd_predict(const std::string& ckpt, const std::vector<std::string>& images, int top_k, bool as_json,
                const std::string& device_text, const std::string& stats_dataset) {
  KILN_CHECK(top_k >= 1, "--top-k must be at least 1, got ", top_k);
  const Device dev = resolve_device(device_text);
  auto loaded = kiln::train::load_model(ckpt, dev);
  const auto& spec = loaded.spec;
  // Weights-only MLPs carry no normalisation: use the named dataset's (AlexNet: set when inferred).
  if (!loaded.from_kiln && spec.arch == "mlp") dataset_stats(stats_dataset, loaded.spec.mean, loaded.spec.std);
  const int C = static_cast<int>(spec.input[0]), H = static_cast<int>(spec.input[1]), W = static_cast<int>(spec.input[2]);
  // Decode everything first: one bad file fails the command before anything is printed.
  const std::int64_t n = static_cast<std::int64_t>(images.size());
  kiln::Tensor batch = kiln::Tensor::empty({n, C, H, W}, kiln::DType::UInt8);
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint8_t* dst = batch.data<std::uint8_t>() + i * C * H * W;
    if (H >= 64) {  // CNNs: the image folders' evaluation transform
      kiln::data::center_crop_resize(kiln::data::decode_image(images[static_cast<std::size_t>(i)], C), H, W, dst);
    } else {
      kiln::Tensor img = kiln::data::load_image(images[static_cast<std::size_t>(i)], C, H, W);
      std::memcpy(dst, img.raw_data(), img.nbytes());
    }
  }
  kiln::NoGradGuard no_grad;
  kiln::Tensor logp = kiln::log_softmax((*loaded.model)(kiln::train::prepare_input(spec, batch.to(dev))));
  const std::vector<float> lp = logp.to_vector<float>();
  const std::int64_t K = spec.classes;
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<std::pair<double, std::int64_t>> probs;
    for (std::int64_t k = 0; k < K; ++k) probs.emplace_back(std::exp(static_cast<double>(lp[i * K + k])), k);
    auto name = [&](std::int64_t k) {
      return k < static_cast<std::int64_t>(spec.class_names.size()) ? spec.class_names[static_cast<std::size_t>(k)]
                                                                      : std::to_string(k);
    };
    const std::string& path = images[static_cast<std::size_t>(i)];
    if (as_json) {
      kiln::io::Json probabilities = kiln::io::Json::object();
      for (std::int64_t k = 0; k < K; ++k)
        probabilities[name(k)] = kiln::io::json_number(static_cast<float>(probs[static_cast<std::size_t>(k)].first));
      std::sort(probs.begin(), probs.end(), [](auto& a, auto& b) { return a.first > b.first; });
      const kiln::io::Json line = {{"image", path}, {"probabilities", probabilities}, {"top", name(probs[0].second)}};
      std::printf("%s\n", kiln::io::to_text(line).c_str());
    } else {
      std::sort(probs.begin(), probs.end(), [](auto& a, auto& b) { return a.first > b.first; });
      std::printf("%s:", path.c_str());
      for (int k = 0; k < std::min<std::int64_t>(top_k, K); ++k)
        std::printf("%s %s (%.2f%%)", k ? "," : "", name(probs[static_cast<std::size_t>(k)].second).c_str(),
                    100.0 * probs[static_cast<std::size_t>(k)].first);
      std::printf("\n");
    }
  }
  return 0;
}

// Decoded images per second of the image-folder pipeline, in total and per worker thread.
int cmd_bench_loader(const std::string& dir, int size, const kiln::train::Config& c) {
  kiln::data::ImageFolderOptions o;
  o.size = size;
  auto src = std::make_shared<kiln::data::ImageFolder>(dir, o);
  kiln::data::LoaderOptions lo;
  lo.batch_size = c.batch_size, lo.workers = c.workers, lo.device = Device::cpu(), lo.seed = 1;
  kiln::data::Loader loader(src, lo);
  loader.start_epoch(0);
  kiln::data::Batch b;
  std::int64_t n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (loader.next(b)) n += b.labels.numel();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("image folder %s: %lld images -> %dx%d in %.2f s with %d workers: %.1f images/s, %.1f per worker "
              "(%lld undecodable, skipped)\n",
              dir.c_str(), static_cast<long long>(n), size, size, s, c.workers, n / s, n / s / c.workers,
              static_cast<long long>(loader.skipped()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln — train MLPs and CNNs in C++17/CUDA, on a GPU or the CPU"};
  app.require_subcommand(1);
  // A flag given twice takes its last value, so `./kiln.sh train mnist --epochs 1` overrides the script's.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  // ---- train
  kiln::train::Config cfg;
  std::string device_text = "auto", data_dir, hidden_text = "512,256", model_name = "mlp";
  auto* train = app.add_subcommand("train", "Train a model; writes checkpoints, metrics.jsonl and curves.svg to --out");
  std::string val_dir;
  int image_size = 224, channels = 3;
  bool strict = false;
  train->add_option("--model", model_name, "Model architecture: mlp | alexnet | alexnet2012")->capture_default_str();
  train->add_option("--hidden", hidden_text, "MLP hidden layer sizes, comma-separated")->capture_default_str();
  train->add_option("--groups", cfg.model.groups, "alexnet2012: 2 for the paper's two-tower convolutions")
      ->capture_default_str();
  train->add_option("--dataset", cfg.dataset, "mnist | fashion-mnist | imagefolder")->capture_default_str();
  train->add_option("--data", data_dir, "Dataset folder (default: data/<dataset>; imagefolder: DIR/<class>/<image>)");
  train->add_option("--val-data", val_dir, "imagefolder: validation folder (default: a seeded 10% hold-out)");
  train->add_option("--image-size", image_size, "imagefolder: crop size fed to the model")->capture_default_str();
  train->add_option("--channels", channels, "imagefolder: 3 (RGB) or 1 (grey)")->capture_default_str();
  train->add_flag("--strict", strict, "imagefolder: a file that fails to decode is an error (default: skipped, counted)");
  train->add_option("--resize", cfg.resize, "Resize images to NxN on the device (e.g. 224 for AlexNet on MNIST)");
  train->add_option("--epochs", cfg.epochs, "Number of epochs (the total, also when resuming)")->capture_default_str();
  train->add_option("--batch-size", cfg.batch_size, "Images per step")->capture_default_str();
  auto* lr_opt = train->add_option("--lr", cfg.lr, "Learning rate (default: sgd 0.05 for mlp, 0.01 for alexnet; adam/adamw 0.001)");
  train->add_option("--optimizer", cfg.optimizer, "sgd | adam | adamw")->capture_default_str();
  train->add_option("--momentum", cfg.momentum, "SGD momentum")->capture_default_str();
  train->add_flag("--nesterov", cfg.nesterov, "Nesterov momentum (SGD)");
  train->add_option("--weight-decay", cfg.weight_decay, "Weight decay (L2 for sgd/adam, decoupled for adamw)")
      ->capture_default_str();
  train->add_option("--schedule", cfg.schedule, "Learning-rate schedule: constant | step | cosine")->capture_default_str();
  train->add_option("--warmup-epochs", cfg.warmup_epochs, "Linear learning-rate warm-up epochs")->capture_default_str();
  train->add_option("--step-epochs", cfg.step_epochs, "Step schedule: multiply lr by --gamma every N epochs (0: epochs/3)");
  train->add_option("--gamma", cfg.gamma, "Step schedule decay factor")->capture_default_str();
  train->add_option("--seed", cfg.seed, "Seed for initialisation and shuffling")->capture_default_str();
  auto* workers_opt = train->add_option(
      "--workers", cfg.workers,
      "Batch-assembly threads (default: 2 for in-memory datasets; for image folders, which decode JPEG/PNG, "
      "one per hardware thread but one, at most 16)");
  train->add_option("--device", device_text, "auto | cpu | cuda | cuda:N")->capture_default_str();
  train->add_option("--out", cfg.out_dir, "Run folder for checkpoint.safetensors, model.safetensors, metrics.jsonl, curves.svg")
      ->required();
  train->add_flag("--resume", cfg.resume, "Continue the run in --out from its checkpoint");
  bool quiet = false;
  train->add_flag("--quiet", quiet, "No progress or summary lines");
  train->add_option("--profile", cfg.profile_steps,
                    "Profile N steps after 5 warm-up steps: per-layer forward/backward times, then stop")
      ->expected(0, 1)
      ->default_str("20");

  // ---- bench
  kiln::train::Config bcfg;
  bcfg.profile_steps = 20;
  std::string bench_model = "alexnet", bench_device = "auto";
  int bench_size = 224, bench_channels = 3, bench_classes = 1000;
  auto* bench = app.add_subcommand("bench", "Time training steps on random data and print the per-layer table");
  bench->add_option("--model", bench_model, "mlp | alexnet | alexnet2012")->capture_default_str();
  bench->add_option("--batch-size", bcfg.batch_size, "Images per step")->capture_default_str();
  bench->add_option("--image-size", bench_size, "Input height and width (mlp: 28)")->capture_default_str();
  bench->add_option("--channels", bench_channels, "Input channels (mlp: 1)")->capture_default_str();
  auto* classes_opt = bench->add_option("--classes", bench_classes, "Number of classes (default: 1000, mlp: 10)");
  bench->add_option("--steps", bcfg.profile_steps, "Timed steps (after the warm-up steps)")->capture_default_str();
  bench->add_option("--warmup", bcfg.profile_warmup_steps, "Untimed warm-up steps before the timed ones")
      ->capture_default_str();
  bench->add_option("--workers", bcfg.workers, "Batch-assembly threads")->capture_default_str();
  bench->add_option("--device", bench_device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  std::string bench_folder;
  bench->add_option("--loader-only", bench_folder,
                    "Time only the data pipeline on an image folder (decode + random-resized crop + flip), no model");
  bool bench_kernels = false;
  kiln::bench::KernelBenchOptions kopt;
  bench->add_flag("--kernels", bench_kernels,
                  "Time kiln's memory-bound kernels on large tensors against the device's copy bandwidth, no model");
  bench->add_option("--elements", kopt.elements, "--kernels: floats per large tensor")->capture_default_str();
  bench->add_option("--repeat", kopt.repeat, "--kernels: timed runs per kernel, median reported (default 20 on a GPU, 5 on the CPU)");
  bench->add_option("--filter", kopt.filter, "--kernels: only kernels whose name contains this text");
  bench->add_flag("--markdown", kopt.markdown, "--kernels: print the table as Markdown (for bench/RESULTS.md)");
  bench->add_option("--min-fraction", kopt.min_fraction,
                    "--kernels: exit with status 1 if an elementwise/reduction kernel is below this fraction of the copy "
                    "bandwidth (default: report only, the target 0.8 is marked)");

  // ---- eval
  std::string ckpt, eval_dataset = "mnist", eval_data, eval_device = "auto";
  std::int64_t eval_batch = 256;
  auto* eval = app.add_subcommand("eval", "Evaluate a checkpoint on a dataset's test split (or an image folder)");
  eval->add_option("--checkpoint", ckpt, "A kiln checkpoint/model file, or PyTorch-written weights (safetensors)")
      ->required();
  eval->add_option("--dataset", eval_dataset, "mnist | fashion-mnist | imagefolder")->capture_default_str();
  eval->add_option("--data", eval_data, "Dataset folder (default: data/<dataset>)");
  eval->add_option("--batch-size", eval_batch, "Images per batch")->capture_default_str();
  eval->add_option("--device", eval_device, "auto | cpu | cuda | cuda:N")->capture_default_str();

  // ---- predict
  std::string pred_ckpt, pred_device = "auto";
  std::vector<std::string> pred_images;
  int top_k = 3;
  bool as_json = false;
  std::string pred_stats = "mnist";
  auto* predict = app.add_subcommand("predict", "Classify image files (PNG, JPEG, BMP, ...) with a trained model");
  predict->add_option("--dataset", pred_stats,
                      "For weights-only MLP files: whose normalisation to use (mnist | fashion-mnist)")
      ->capture_default_str();
  predict->add_option("--checkpoint", pred_ckpt, "A kiln checkpoint/model file, or PyTorch-written weights")->required();
  predict->add_option("images", pred_images, "Image files")->required();
  predict->add_option("--top-k", top_k, "Classes to print per image")->capture_default_str();
  predict->add_flag("--json", as_json, "One JSON object per image with every class probability");
  predict->add_option("--device", pred_device, "auto | cpu | cuda | cuda:N")->capture_default_str();

  auto* info = app.add_subcommand("info", "Print the build options, the devices found and the CUDA library versions");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (info->parsed()) return cmd_info();

    if (train->parsed()) {
      KILN_CHECK(model_name == "mlp" || model_name == "alexnet" || model_name == "alexnet2012", "unknown --model '",
                 model_name, "' (available: mlp, alexnet, alexnet2012)");
      KILN_CHECK(cfg.model.groups == 1 || (cfg.model.groups == 2 && model_name == "alexnet2012"),
                 "--groups 2 is only for --model alexnet2012");
      cfg.model.arch = model_name;
      cfg.model.hidden = parse_hidden(hidden_text);
      dataset_stats(cfg.dataset, cfg.model.mean, cfg.model.std);
      cfg.progress = !quiet;
      if (lr_opt->count() == 0) cfg.lr = cfg.optimizer != "sgd" ? 1e-3f : model_name == "mlp" ? 0.05f : 0.01f;
      cfg.validate();
      cfg.device = resolve_device(device_text);
      if (data_dir.empty()) data_dir = default_data_dir(cfg.dataset);
      std::shared_ptr<const kiln::data::Source> train_src, test_src;
      kiln::data::Dataset train_set, test_set;
      if (cfg.dataset == "imagefolder") {
        KILN_CHECK(channels == 1 || channels == 3, "--channels must be 1 or 3, got ", channels);
        if (workers_opt->count() == 0)
          cfg.workers = static_cast<int>(std::clamp(static_cast<int>(std::thread::hardware_concurrency()) - 1, 2, 16));
        if (channels == 1) cfg.model.mean = {0.449f}, cfg.model.std = {0.226f};
        kiln::data::ImageFolderOptions tr, ev;
        tr.channels = ev.channels = channels;
        tr.size = ev.size = image_size;
        tr.strict = ev.strict = strict;
        ev.augment = false;
        if (!val_dir.empty()) {
          train_src = std::make_shared<kiln::data::ImageFolder>(data_dir, tr);
          test_src = std::make_shared<kiln::data::ImageFolder>(val_dir, ev);
        } else {
          const kiln::data::ImageFolder all(data_dir, tr);
          auto [a, b] = kiln::data::ImageFolder::split(all, 0.1, cfg.seed, tr, ev);
          train_src = a, test_src = b;
        }
      } else {
        train_set = kiln::data::load_mnist(data_dir, true, cfg.dataset);
        test_set = kiln::data::load_mnist(data_dir, false, cfg.dataset);
        train_src = kiln::data::in_memory(train_set);
        test_src = kiln::data::in_memory(test_set);
      }
      kiln::train::install_signal_handlers();
      const auto history = kiln::train::fit(cfg, train_src, test_src);
      if (!quiet && !history.empty())
        std::printf("done: test accuracy %.2f%% after %d epochs; run folder %s\n", 100 * history.back().test_acc,
                    history.back().epoch, cfg.out_dir.c_str());
      return 0;
    }

    if (eval->parsed()) {
      KILN_CHECK(eval_batch >= 1, "--batch-size must be at least 1, got ", eval_batch);
      const Device dev = resolve_device(eval_device);
      auto loaded = kiln::train::load_model(ckpt, dev);
      if (eval_data.empty()) eval_data = default_data_dir(eval_dataset);
      if (!loaded.from_kiln && loaded.spec.arch == "mlp") dataset_stats(eval_dataset, loaded.spec.mean, loaded.spec.std);
      KILN_CHECK(eval_dataset == "imagefolder" || loaded.spec.input[0] == 1, ckpt, " holds a ", loaded.spec.input[0],
                 "-channel ", loaded.spec.arch, "; evaluate it on an image folder (--dataset imagefolder --data DIR)");
      kiln::data::Dataset test_set;
      std::shared_ptr<const kiln::data::Source> src;
      if (eval_dataset == "imagefolder") {
        kiln::data::ImageFolderOptions ev;
        ev.channels = static_cast<int>(loaded.spec.input[0]);
        ev.size = static_cast<int>(loaded.spec.input[1]);
        ev.augment = false;
        src = std::make_shared<kiln::data::ImageFolder>(eval_data, ev);
      } else {
        test_set = kiln::data::load_mnist(eval_data, false, eval_dataset);
        src = kiln::data::in_memory(test_set);
      }
      const auto r = kiln::train::evaluate(*loaded.model, loaded.spec, src, dev, eval_batch);
      std::printf("%s on %s test (%lld images): loss %.4f accuracy %.2f%%\n", ckpt.c_str(), eval_dataset.c_str(),
                  static_cast<long long>(r.samples), r.loss, 100 * r.accuracy);
      return 0;
    }

    if (bench->parsed() && !bench_folder.empty()) return cmd_bench_loader(bench_folder, bench_size, bcfg);
    if (bench->parsed() && bench_kernels) return kiln::bench::kernel_bandwidth(resolve_device(bench_device), kopt);
    if (bench->parsed()) {
      KILN_CHECK(bcfg.profile_steps >= 1, "--steps must be at least 1, got ", bcfg.profile_steps);
      KILN_CHECK(bcfg.profile_warmup_steps >= 1, "--warmup must be at least 1 (the first step plans the convolutions and fills the caches), got ", bcfg.profile_warmup_steps);
      KILN_CHECK(bcfg.batch_size >= 1, "--batch-size must be at least 1, got ", bcfg.batch_size);
      if (bench_model == "mlp") {  // MNIST-shaped unless told otherwise
        bench_size = bench_size == 224 ? 28 : bench_size, bench_channels = 1;
        if (classes_opt->count() == 0) bench_classes = 10;
      }
      KILN_CHECK(bench_classes >= 2, "--classes must be at least 2, got ", bench_classes);
      bcfg.model.arch = bench_model;
      bcfg.model.mean = std::vector<float>(static_cast<std::size_t>(bench_channels), 0.5f);
      bcfg.model.std = std::vector<float>(static_cast<std::size_t>(bench_channels), 0.25f);
      bcfg.dataset = "random";
      bcfg.epochs = 1;
      bcfg.lr = bench_model == "mlp" ? 0.05f : 0.01f;
      bcfg.device = resolve_device(bench_device);
      const std::int64_t n = bcfg.batch_size * (bcfg.profile_steps + 6);
      const kiln::Shape shape{bench_channels, bench_size, bench_size};
      auto src = kiln::data::random_images(n, shape, bench_classes, 1);
      auto test = kiln::data::random_images(bcfg.batch_size, shape, bench_classes, 2);
      kiln::train::fit(bcfg, src, test);
      return 0;
    }
    if (predict->parsed()) return cmd_predict(pred_ckpt, pred_images, top_k, as_json, pred_device, pred_stats);
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
  return 0;
}

// The training job (kiln::train::fit) on a small synthetic, separable dataset, on the CPU:
// learning, exact resumption (after an epoch and mid-epoch), refusals that leave a run folder
// untouched, divergence, the run's report files, and loading saved models (kiln's own and
// weights-only PyTorch-style files).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kiln/kiln.h"
#include "kiln/train.h"
#include "test_util.h"
#include "train/tensorboard.h"
#include "train_fixtures.h"

namespace {

using kiln::Device;
using kiln::DType;
using kiln::Shape;
using kiln::Tensor;
using kiln::data::Dataset;
using kiln::train::Config;
using kiln::train::EpochMetrics;
using kt::DVec;
using kt::TempDir;

// 10 classes of 28x28 grey images: class c lights up the 7x7 block (c / 4, c % 4) of a 4x4 grid
// (values 150..255) over a noisy background (0..79); fixed seeds, so the data never changes.
Dataset make_blocks(std::int64_t n, std::uint64_t seed) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(n * 784));
  std::vector<std::int32_t> lab(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(kiln::philox::philox4x32(static_cast<std::uint64_t>(i), seed ^ 0xC1A55).x % 10);
    lab[static_cast<std::size_t>(i)] = c;
    const int by = (c / 4) * 7, bx = (c % 4) * 7;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const std::uint64_t k = static_cast<std::uint64_t>(i * 784 + y * 28 + x);
        const std::uint32_t r = kiln::philox::philox4x32(k, seed).x;
        const bool on = y >= by && y < by + 7 && x >= bx && x < bx + 7;
        px[k] = static_cast<std::uint8_t>(on ? 150 + r % 106 : r % 80);
      }
  }
  Dataset d;
  d.images = Tensor::from_vector(px, {n, 1, 28, 28});
  d.labels = Tensor::from_vector(lab, {n});
  d.num_classes = 10;
  for (int c = 0; c < 10; ++c) d.class_names.push_back("block" + std::to_string(c));
  return d;
}

// 600 / 32 = 19 steps per epoch (the last one of 24 samples).
constexpr std::int64_t kTrain = 600, kTest = 200, kBatch = 32, kSteps = 19;

Config base_config(const std::string& out_dir, int epochs) {
  Config c;
  c.model.arch = "mlp";
  c.model.hidden = {64};
  c.dataset = "blocks";
  c.epochs = epochs;
  c.batch_size = kBatch;
  c.optimizer = "sgd";
  c.lr = 0.05f, c.momentum = 0.9f, c.weight_decay = 1e-4f, c.nesterov = false;
  // The step schedule with an explicit period does not depend on the number of epochs, so a run
  // of 1 epoch continued to 2 must equal a run of 2; it does depend on the restored global step.
  c.schedule = "step", c.step_epochs = 1, c.gamma = 0.5f, c.warmup_epochs = 0;
  c.seed = 7;
  c.workers = 2;
  c.device = Device::cpu();
  c.out_dir = out_dir;
  c.resume = false;
  c.progress = false;
  return c;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(f, line)) out.push_back(line);
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The number after "key": in a flat JSON line (NaN if absent).
double json_number(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const auto at = line.find(k);
  if (at == std::string::npos) return std::nan("");
  return std::strtod(line.c_str() + at + k.size(), nullptr);
}

// Every tensor of two safetensors files: same names, shapes, dtypes and bytes.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const auto fa = kiln::io::load_safetensors(a), fb = kiln::io::load_safetensors(b);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
  for (const auto& [name, t] : fa.tensors) {
    const Tensor* u = fb.find(name);
    ASSERT_NE(u, nullptr) << name << " missing from " << b;
    ASSERT_EQ(t.shape(), u->shape()) << name;
    ASSERT_EQ(t.dtype(), u->dtype()) << name;
    const auto* pa = static_cast<const unsigned char*>(t.raw_data());
    const auto* pb = static_cast<const unsigned char*>(u->raw_data());
    EXPECT_TRUE(std::equal(pa, pa + t.nbytes(), pb)) << "tensor " << name << " differs";
  }
}

void expect_same_learning(const std::vector<EpochMetrics>& a, const std::vector<EpochMetrics>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t e = 0; e < a.size(); ++e) {
    SCOPED_TRACE("epoch " + std::to_string(e + 1));
    EXPECT_EQ(a[e].epoch, b[e].epoch);
    EXPECT_EQ(a[e].train_loss, b[e].train_loss);
    EXPECT_EQ(a[e].train_acc, b[e].train_acc);
    EXPECT_EQ(a[e].test_loss, b[e].test_loss);
    EXPECT_EQ(a[e].test_acc, b[e].test_acc);
    EXPECT_EQ(a[e].lr, b[e].lr);
  }
}

std::string copy_checkpoint(const std::string& from_dir, const TempDir& to) {
  const std::string dst = to.file("checkpoint.safetensors");
  std::filesystem::copy_file(from_dir + "/checkpoint.safetensors", dst);
  return dst;
}

// The error message of `f`, which must throw kiln::Error ("" and a failure otherwise).
template <class F>
std::string error_of(F&& f, const std::string& what) {
  try {
    f();
  } catch (const kiln::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << what << ": did not throw kiln::Error";
  return "";
}

// Datasets and the reference run A (2 epochs), shared by the suite.
class Train : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    train_ = new Dataset(make_blocks(kTrain, 11));
    test_ = new Dataset(make_blocks(kTest, 22));
    run_a_ = new TempDir("kiln_train_a");
    history_a_ = new std::vector<EpochMetrics>(kiln::train::fit(base_config(run_a_->path, 2), *train_, *test_));
  }
  static void TearDownTestSuite() {
    delete history_a_;
    delete run_a_;
    delete test_;
    delete train_;
    history_a_ = nullptr, run_a_ = nullptr, test_ = nullptr, train_ = nullptr;
  }
  static const Dataset& train() { return *train_; }
  static const Dataset& test() { return *test_; }
  static const std::string& dir_a() { return run_a_->path; }
  static const std::vector<EpochMetrics>& history_a() { return *history_a_; }

 private:
  static Dataset *train_, *test_;
  static TempDir* run_a_;
  static std::vector<EpochMetrics>* history_a_;
};
Dataset* Train::train_ = nullptr;
Dataset* Train::test_ = nullptr;
TempDir* Train::run_a_ = nullptr;
std::vector<EpochMetrics>* Train::history_a_ = nullptr;

TEST_F(Train, LearnsTheSeparableTask) {
  const auto& h = history_a();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].epoch, 1);
  EXPECT_EQ(h[1].epoch, 2);
  EXPECT_LT(h[0].train_loss, std::log(10.0)) << "the first epoch did not beat chance";
  EXPECT_LT(h[1].train_loss, h[0].train_loss) << "the training loss did not decrease";
  EXPECT_GT(h[1].test_acc, 0.9);
  EXPECT_LT(h[1].test_loss, 0.5);
  for (const auto& m : h) {
    EXPECT_GE(m.train_acc, 0.0);
    EXPECT_LE(m.train_acc, 1.0);
    EXPECT_GT(m.epoch_s, 0.0);
    EXPECT_GT(m.images_per_s, 0.0);
    EXPECT_GE(m.data_wait_pct, 0.0);
    EXPECT_LE(m.data_wait_pct, 100.0 + 1e-9);
  }
  // the step schedule: lr 0.05 in epoch 1, halved in epoch 2
  EXPECT_DOUBLE_EQ(h[0].lr, 0.05f);
  EXPECT_DOUBLE_EQ(h[1].lr, 0.05f * 0.5f);
}

TEST_F(Train, AdamWithoutRunFolderLearnsAndWritesNothing) {
  Config c = base_config("", 2);
  c.optimizer = "adam", c.lr = 1e-3f, c.schedule = "constant";
  const auto h = kiln::train::fit(c, train(), test());
  ASSERT_EQ(h.size(), 2u);
  EXPECT_LT(h[1].train_loss, h[0].train_loss);
  EXPECT_GT(h[1].test_acc, 0.9);
}

TEST_F(Train, ResumeAfterAnEpochIsExact) {
  TempDir b("kiln_train_b");
  const auto first = kiln::train::fit(base_config(b.path, 1), train(), test());
  ASSERT_EQ(first.size(), 1u);
  Config c = base_config(b.path, 2);
  c.resume = true;
  const auto h = kiln::train::fit(c, train(), test());
  ASSERT_EQ(h.size(), 2u) << "a resumed fit returns the earlier epochs too";
  expect_same_learning(h, history_a());
  EXPECT_EQ(kt::read_bytes(b.file("model.safetensors")), kt::read_bytes(dir_a() + "/model.safetensors"))
      << "model.safetensors of the resumed run differs from the uninterrupted run";
  expect_same_tensors(b.file("checkpoint.safetensors"), dir_a() + "/checkpoint.safetensors");
  const auto ma = kiln::io::load_safetensors(dir_a() + "/checkpoint.safetensors").metadata;
  const auto mb = kiln::io::load_safetensors(b.file("checkpoint.safetensors")).metadata;
  for (const char* k : {"epoch", "batch", "global_step", "optimizer"}) EXPECT_EQ(ma.at(k), mb.at(k)) << k;
  EXPECT_EQ(ma.at("global_step"), std::to_string(2 * kSteps));

  // metrics.jsonl: config, epoch 1, config (resumed from epoch 1), epoch 2
  const auto lines = read_lines(b.file("metrics.jsonl"));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(contains(lines[0], "\"config\":"));
  EXPECT_EQ(json_number(lines[0], "resumed_from_epoch"), -1);
  EXPECT_EQ(json_number(lines[1], "epoch"), 1);
  EXPECT_TRUE(contains(lines[2], "\"config\":"));
  EXPECT_EQ(json_number(lines[2], "resumed_from_epoch"), 1);
  EXPECT_EQ(json_number(lines[3], "epoch"), 2);
  EXPECT_EQ(json_number(lines[3], "test_acc"), history_a()[1].test_acc);
}

TEST_F(Train, InterruptedMidEpochThenResumedIsExact) {
  TempDir d("kiln_train_int");
  // A stop requested before fit() (a signal during start-up) is honoured after the first step.
  kiln::train::request_stop();
  std::string msg;
  bool interrupted = false;
  try {
    kiln::train::fit(base_config(d.path, 2), train(), test());
  } catch (const kiln::train::Interrupted& e) {
    interrupted = true;
    msg = e.what();
  }
  ASSERT_TRUE(interrupted) << "fit() was not interrupted by request_stop()";
  EXPECT_TRUE(contains(msg, "interrupted")) << msg;
  EXPECT_TRUE(contains(msg, d.file("checkpoint.safetensors"))) << msg;

  ASSERT_TRUE(kt::file_exists(d.file("checkpoint.safetensors")));
  EXPECT_TRUE(kt::file_exists(d.file("model.safetensors")));
  const auto md = kiln::io::load_safetensors(d.file("checkpoint.safetensors")).metadata;
  const long long batch = std::atoll(md.at("batch").c_str()), epoch = std::atoll(md.at("epoch").c_str());
  EXPECT_EQ(batch, 1) << "the stop should take effect after the first step";
  EXPECT_LT(batch, kSteps) << "a stop is honoured only mid-epoch";
  EXPECT_EQ(std::atoll(md.at("global_step").c_str()), epoch * kSteps + batch);
  std::printf("[ info     ] interrupted after epoch %lld step %lld\n", epoch, batch);

  Config c = base_config(d.path, 2);
  c.resume = true;
  const auto h = kiln::train::fit(c, train(), test());
  expect_same_learning(h, history_a());
  EXPECT_EQ(kt::read_bytes(d.file("model.safetensors")), kt::read_bytes(dir_a() + "/model.safetensors"))
      << "resuming mid-epoch did not reproduce the uninterrupted run's weights";
  expect_same_tensors(d.file("checkpoint.safetensors"), dir_a() + "/checkpoint.safetensors");
}

// With one step per epoch every step is an epoch's last: the stop waits for the epoch's checkpoint
// and comes before the next epoch instead of never.
TEST_F(Train, AStopDuringAnEpochsLastStepStopsAfterThatEpoch) {
  TempDir d("kiln_train_last_step");
  Config c = base_config(d.path, 3);
  c.batch_size = kTrain;
  kiln::train::request_stop();
  const std::string msg = error_of([&] { kiln::train::fit(c, train(), test()); }, "a stop in a one-step epoch");
  EXPECT_TRUE(contains(msg, "interrupted after epoch 1 of 3")) << msg;
  const auto md = kiln::io::load_safetensors(d.file("checkpoint.safetensors")).metadata;
  EXPECT_EQ(md.at("epoch"), "1");
  EXPECT_EQ(md.at("batch"), "0");
  c.resume = true;
  const auto h = kiln::train::fit(c, train(), test());
  EXPECT_EQ(h.size(), 3u) << "the resumed run finishes the remaining epochs";
}

TEST_F(Train, NewRunRefusesAFolderWithACheckpoint) {
  TempDir d("kiln_train_busy");
  const std::string ck = copy_checkpoint(dir_a(), d);
  const std::string before = kt::read_bytes(ck);
  const std::string msg = error_of([&] { kiln::train::fit(base_config(d.path, 2), train(), test()); }, "new run");
  EXPECT_TRUE(contains(msg, ck)) << msg;
  EXPECT_TRUE(contains(msg, "--resume")) << msg;
  EXPECT_EQ(kt::read_bytes(ck), before) << "the refused run changed the checkpoint";
  EXPECT_EQ(d.entries(), std::vector<std::string>{"checkpoint.safetensors"}) << "the refused run wrote files";
}

TEST_F(Train, ResumeWithoutCheckpointThrows) {
  TempDir d("kiln_train_none");
  Config c = base_config(d.path, 2);
  c.resume = true;
  const std::string msg = error_of([&] { kiln::train::fit(c, train(), test()); }, "resume without checkpoint");
  EXPECT_TRUE(contains(msg, d.file("checkpoint.safetensors"))) << msg;
  EXPECT_TRUE(d.entries().empty()) << "the refused run wrote files";
}

TEST_F(Train, ResumeRefusesAnotherOptimizerOrAFinishedRun) {
  TempDir d("kiln_train_opt");
  const std::string ck = copy_checkpoint(dir_a(), d);
  const std::string before = kt::read_bytes(ck);
  for (const char* other : {"adam", "adamw"}) {
    Config c = base_config(d.path, 3);
    c.resume = true, c.optimizer = other, c.lr = 1e-3f;
    const std::string msg = error_of([&] { kiln::train::fit(c, train(), test()); }, std::string("resume with ") + other);
    EXPECT_TRUE(contains(msg, "sgd") && contains(msg, other)) << msg;
    EXPECT_TRUE(contains(msg, ck)) << msg;
  }
  Config done = base_config(d.path, 2);  // run A already completed 2 epochs
  done.resume = true;
  const std::string msg = error_of([&] { kiln::train::fit(done, train(), test()); }, "resume a finished run");
  EXPECT_TRUE(contains(msg, "--epochs")) << msg;
  EXPECT_EQ(kt::read_bytes(ck), before);
  EXPECT_EQ(d.entries(), std::vector<std::string>{"checkpoint.safetensors"});
}

TEST_F(Train, CorruptCheckpointIsReportedAndKept) {
  TempDir d("kiln_train_corrupt");
  const std::string ck = copy_checkpoint(dir_a(), d);
  const std::string full = kt::read_bytes(ck);
  const std::string truncated = full.substr(0, full.size() / 2);
  kt::write_bytes(ck, truncated);
  Config c = base_config(d.path, 3);
  c.resume = true;
  const std::string msg = error_of([&] { kiln::train::fit(c, train(), test()); }, "truncated checkpoint");
  EXPECT_TRUE(contains(msg, ck)) << "the error does not name the file: " << msg;
  ASSERT_TRUE(kt::file_exists(ck)) << "the failed run deleted the corrupt checkpoint";
  EXPECT_EQ(kt::read_bytes(ck), truncated) << "the failed run replaced the corrupt checkpoint";
  EXPECT_EQ(d.entries(), std::vector<std::string>{"checkpoint.safetensors"});
}

TEST_F(Train, CheckpointWithMisshapenTensorIsReported) {
  TempDir d("kiln_train_shape");
  auto f = kiln::io::load_safetensors(dir_a() + "/checkpoint.safetensors");
  bool replaced = false;
  for (auto& [name, t] : f.tensors)
    if (name == "0.bias") {
      t = Tensor::zeros({t.size(0) - 1});
      replaced = true;
    }
  ASSERT_TRUE(replaced) << "run A's checkpoint has no 0.bias";
  const std::string ck = d.file("checkpoint.safetensors");
  kiln::io::save_safetensors(ck, f.tensors, f.metadata);
  const std::string before = kt::read_bytes(ck);
  Config c = base_config(d.path, 3);
  c.resume = true;
  const std::string msg = error_of([&] { kiln::train::fit(c, train(), test()); }, "misshapen checkpoint");
  EXPECT_TRUE(contains(msg, ck)) << msg;
  EXPECT_TRUE(contains(msg, "0.bias")) << msg;
  EXPECT_EQ(kt::read_bytes(ck), before);
}

TEST_F(Train, DivergenceIsReportedAndTheLastCheckpointKept) {
  {  // a fresh run: fails in epoch 1 and writes no checkpoint
    TempDir d("kiln_train_nan1");
    Config c = base_config(d.path, 2);
    c.lr = 1e30f;
    const std::string msg = error_of([&] { kiln::train::fit(c, train(), test()); }, "lr 1e30");
    EXPECT_TRUE(contains(msg, "NaN") || contains(msg, "infinite")) << msg;
    EXPECT_TRUE(contains(msg, "epoch 1")) << msg;
    EXPECT_FALSE(kt::file_exists(d.file("checkpoint.safetensors"))) << "a diverged run wrote a checkpoint";
    EXPECT_FALSE(kt::file_exists(d.file("model.safetensors"))) << "a diverged run wrote a model";
  }
  {  // continuing run A with a huge lr: fails in epoch 3, the epoch-2 checkpoint stays as it was
    TempDir d("kiln_train_nan3");
    const std::string ck = copy_checkpoint(dir_a(), d);
    const std::string before = kt::read_bytes(ck);
    Config c = base_config(d.path, 3);
    c.resume = true, c.lr = 1e30f;
    bool interrupted = false;
    std::string msg;
    try {
      kiln::train::fit(c, train(), test());
      ADD_FAILURE() << "lr 1e30 after resuming: did not throw";
    } catch (const kiln::train::Interrupted& e) {
      interrupted = true;
    } catch (const kiln::Error& e) {
      msg = e.what();
    }
    EXPECT_FALSE(interrupted) << "divergence reported as an interruption";
    EXPECT_TRUE(contains(msg, "NaN") || contains(msg, "infinite")) << msg;
    EXPECT_TRUE(contains(msg, "epoch 3")) << msg;
    EXPECT_EQ(kt::read_bytes(ck), before) << "the diverged run overwrote the last good checkpoint";
  }
}

TEST_F(Train, MetricsFileAndCurves) {
  const auto lines = read_lines(dir_a() + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u) << "a config line and one line per epoch";
  EXPECT_TRUE(contains(lines[0], "\"config\":")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "\"optimizer\":\"sgd\"")) << lines[0];
  EXPECT_EQ(json_number(lines[0], "resumed_from_epoch"), -1);
  EXPECT_GT(json_number(lines[0], "parameters"), 0);
  const char* keys[] = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                        "epoch_s", "images_per_s", "data_wait_pct", "lr"};
  for (std::size_t e = 0; e < 2; ++e) {
    const std::string& l = lines[e + 1];
    SCOPED_TRACE(l);
    ASSERT_EQ(l.front(), '{');
    ASSERT_EQ(l.back(), '}');
    for (const char* k : keys) EXPECT_TRUE(contains(l, std::string("\"") + k + "\":")) << "missing key " << k;
    const EpochMetrics& m = history_a()[e];
    // the file holds the returned values exactly (17 significant digits)
    EXPECT_EQ(json_number(l, "epoch"), m.epoch);
    EXPECT_EQ(json_number(l, "train_loss"), m.train_loss);
    EXPECT_EQ(json_number(l, "train_acc"), m.train_acc);
    EXPECT_EQ(json_number(l, "test_loss"), m.test_loss);
    EXPECT_EQ(json_number(l, "test_acc"), m.test_acc);
    EXPECT_EQ(json_number(l, "lr"), m.lr);
    EXPECT_EQ(json_number(l, "epoch_s"), m.epoch_s);
  }
  const std::string svg = kt::read_bytes(dir_a() + "/curves.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 80);
  EXPECT_TRUE(contains(svg, "</svg>"));
}

// The TensorBoard event files of a run folder, oldest first (by their first record's wall time: two
// files written in the same second sort by a counter in the name, not by age).
std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::pair<double, std::string>> found;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      const auto events = kiln::train::read_tensorboard_scalars(e.path().string());
      found.emplace_back(events.empty() ? 0.0 : events[0].wall_time, e.path().string());
    }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [t, path] : found) out.push_back(path);
  return out;
}

std::vector<kiln::train::ScalarEvent> events_tagged(const std::string& file, const std::string& tag) {
  std::vector<kiln::train::ScalarEvent> out;
  for (const auto& e : kiln::train::read_tensorboard_scalars(file))
    if (e.tag == tag) out.push_back(e);
  return out;
}

TEST_F(Train, TensorBoardEventsInTheRunFolder) {
  const auto files = event_files(dir_a());
  ASSERT_EQ(files.size(), 1u);
  // Per epoch, at the step that ends it: the values of the returned metrics (TensorBoard keeps floats).
  const std::pair<const char*, double EpochMetrics::*> per_epoch[] = {
      {"epoch/train_loss", &EpochMetrics::train_loss}, {"epoch/train_acc", &EpochMetrics::train_acc},
      {"epoch/test_loss", &EpochMetrics::test_loss},   {"epoch/test_acc", &EpochMetrics::test_acc},
      {"epoch/images_per_s", &EpochMetrics::images_per_s}, {"epoch/data_wait_pct", &EpochMetrics::data_wait_pct}};
  for (const auto& [tag, field] : per_epoch) {
    SCOPED_TRACE(tag);
    const auto ev = events_tagged(files[0], tag);
    ASSERT_EQ(ev.size(), 2u);
    for (std::size_t e = 0; e < 2; ++e) {
      EXPECT_EQ(ev[e].step, static_cast<std::int64_t>((e + 1) * kSteps));
      EXPECT_EQ(ev[e].value, static_cast<float>(history_a()[e].*field));
    }
  }
  // The training loss and lr at every tenth of an epoch, steps increasing, the lr following the schedule.
  const auto loss = events_tagged(files[0], "train/loss"), lr = events_tagged(files[0], "train/lr");
  ASSERT_GE(loss.size(), 2u * 5);
  ASSERT_EQ(lr.size(), loss.size());
  for (std::size_t i = 0; i < loss.size(); ++i) {
    EXPECT_EQ(lr[i].step, loss[i].step);
    if (i > 0) {
      EXPECT_GT(loss[i].step, loss[i - 1].step);
    }
    EXPECT_TRUE(std::isfinite(loss[i].value) && loss[i].value > 0) << loss[i].value;
    EXPECT_EQ(lr[i].value, loss[i].step <= kSteps ? 0.05f : 0.025f) << "step " << lr[i].step;
  }
}

TEST_F(Train, AResumedRunAddsTensorBoardEventsWithContinuingSteps) {
  TempDir b("kiln_train_tb");
  kiln::train::fit(base_config(b.path, 1), train(), test());
  Config c = base_config(b.path, 2);
  c.resume = true;
  kiln::train::fit(c, train(), test());
  const auto files = event_files(b.path);
  ASSERT_EQ(files.size(), 2u) << "the resumed part writes its own file beside the first";
  const auto first = events_tagged(files[0], "epoch/test_acc"), second = events_tagged(files[1], "epoch/test_acc");
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(first[0].step, kSteps);
  EXPECT_EQ(second[0].step, 2 * kSteps) << "steps continue across the resume";
  for (const auto& e : events_tagged(files[1], "train/loss")) EXPECT_GT(e.step, kSteps);
}

TEST_F(Train, LoadModelReproducesTheTestAccuracy) {
  const auto lm = kiln::train::load_model(dir_a() + "/model.safetensors", Device::cpu());
  EXPECT_TRUE(lm.from_kiln);
  EXPECT_EQ(lm.spec.arch, "mlp");
  EXPECT_EQ(lm.spec.hidden, (std::vector<std::int64_t>{64}));
  EXPECT_EQ(lm.spec.classes, 10);
  EXPECT_EQ(lm.spec.input, (Shape{1, 28, 28}));
  EXPECT_EQ(lm.spec.class_names, train().class_names);
  ASSERT_TRUE(lm.model);
  EXPECT_FALSE(lm.model->training()) << "a loaded model should be in evaluation mode";
  const auto ev = kiln::train::evaluate(*lm.model, lm.spec, test(), Device::cpu());
  EXPECT_EQ(ev.samples, kTest);
  EXPECT_EQ(ev.accuracy, history_a().back().test_acc);
  EXPECT_DOUBLE_EQ(ev.loss, history_a().back().test_loss);
  // batching does not change the accuracy
  const auto ev7 = kiln::train::evaluate(*lm.model, lm.spec, test(), Device::cpu(), 7, 1);
  EXPECT_EQ(ev7.accuracy, ev.accuracy);
  EXPECT_NEAR(ev7.loss, ev.loss, 1e-5 * (1 + ev.loss));
}

// A weights-only file as PyTorch's state_dict of nn.Sequential(Linear(784, 32), ReLU, Linear(32, 16),
// ReLU, Linear(16, 7)) would be saved by safetensors.torch.save_file: no metadata.
kiln::io::NamedTensors torch_mlp(const std::vector<std::int64_t>& sizes, std::uint64_t seed) {
  kiln::io::NamedTensors t;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    const std::string p = std::to_string(2 * l);
    t.emplace_back(p + ".weight", kt::randn_cpu({sizes[l + 1], sizes[l]}, seed + 2 * l, 0.05f));
    t.emplace_back(p + ".bias", kt::randn_cpu({sizes[l + 1]}, seed + 2 * l + 1, 0.1f));
  }
  return t;
}

TEST_F(Train, LoadModelInfersAnMlpFromWeightsOnly) {
  TempDir d("kiln_train_torch");
  const std::string path = d.file("torch.safetensors");
  const auto w = torch_mlp({784, 32, 16, 7}, 5);
  kiln::io::save_safetensors(path, w);
  const auto lm = kiln::train::load_model(path, Device::cpu());
  EXPECT_FALSE(lm.from_kiln);
  EXPECT_EQ(lm.spec.arch, "mlp");
  EXPECT_EQ(lm.spec.hidden, (std::vector<std::int64_t>{32, 16}));
  EXPECT_EQ(lm.spec.classes, 7);
  EXPECT_EQ(lm.spec.input, (Shape{1, 28, 28}));
  ASSERT_TRUE(lm.model);
  // the file's values, under the file's names
  const auto params = lm.model->named_parameters();
  ASSERT_EQ(params.size(), w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(params[i].first, w[i].first);
    EXPECT_EQ(params[i].second.to_vector<float>(), w[i].second.to_vector<float>()) << w[i].first;
  }
  // The forward pass is Linear -> ReLU -> Linear -> ReLU -> Linear: vs a double reference, with
  // the magnitudes of the terms propagated as the error scale.
  const Tensor x = kt::randn_cpu({3, 784}, 99);
  const Tensor y = lm.model->forward(x);
  DVec v = kt::to_doubles(x), s(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) s[i] = std::fabs(v[i]);
  std::int64_t in = 784;
  for (std::size_t l = 0; l < 3; ++l) {
    const DVec W = kt::to_doubles(w[2 * l].second), B = kt::to_doubles(w[2 * l + 1].second);
    const std::int64_t out = w[2 * l].second.size(0);
    DVec nv(static_cast<std::size_t>(3 * out)), ns(nv.size());
    for (std::int64_t n = 0; n < 3; ++n)
      for (std::int64_t o = 0; o < out; ++o) {
        double acc = B[o], mag = std::fabs(B[o]);
        for (std::int64_t k = 0; k < in; ++k) {
          acc += W[o * in + k] * v[n * in + k];
          mag += std::fabs(W[o * in + k]) * s[n * in + k];
        }
        const bool relu = l < 2;
        nv[n * out + o] = relu ? std::max(acc, 0.0) : acc;
        ns[n * out + o] = mag;
      }
    v = nv, s = ns, in = out;
  }
  kt::expect_close(y, kt::Ref{{3, 7}, v, s}, 3 * kt::reduction_rtol(784), 0.0, "inferred MLP forward");
}

TEST_F(Train, LoadModelRejectsMismatchedWeights) {
  TempDir d("kiln_train_bad");
  {  // a bias that does not fit its weight
    auto w = torch_mlp({784, 32, 10}, 1);
    w[1].second = Tensor::zeros({31});
    const std::string path = d.file("bias.safetensors");
    kiln::io::save_safetensors(path, w);
    const std::string msg = error_of([&] { kiln::train::load_model(path, Device::cpu()); }, "0.bias [31]");
    EXPECT_TRUE(contains(msg, "0.bias")) << msg;
    EXPECT_TRUE(contains(msg, path)) << msg;
  }
  {  // a layer that does not take the previous layer's outputs
    auto w = torch_mlp({784, 32, 10}, 2);
    w[2].second = Tensor::zeros({10, 30});
    const std::string path = d.file("chain.safetensors");
    kiln::io::save_safetensors(path, w);
    const std::string msg = error_of([&] { kiln::train::load_model(path, Device::cpu()); }, "2.weight [10, 30]");
    EXPECT_TRUE(contains(msg, "2.weight")) << msg;
    EXPECT_TRUE(contains(msg, path)) << msg;
  }
  {  // no MLP weights at all
    const std::string path = d.file("other.safetensors");
    kiln::io::save_safetensors(path, {{"conv.weight", Tensor::zeros({4, 1, 3, 3})}});
    const std::string msg = error_of([&] { kiln::train::load_model(path, Device::cpu()); }, "no MLP weights");
    EXPECT_TRUE(contains(msg, path)) << msg;
  }
  // a missing file
  EXPECT_THROW(kiln::train::load_model(d.file("absent.safetensors"), Device::cpu()), kiln::Error);
}

TEST(TrainConfig, ValidateRejectsBadValues) {
  auto bad = [](auto edit, const std::string& flag) {
    Config c = base_config("/tmp/unused", 2);
    edit(c);
    const std::string msg = error_of([&] { c.validate(); }, flag);
    EXPECT_TRUE(contains(msg, flag)) << msg;
  };
  EXPECT_NO_THROW(base_config("/tmp/unused", 2).validate());
  bad([](Config& c) { c.epochs = 0; }, "--epochs");
  bad([](Config& c) { c.batch_size = 0; }, "--batch-size");
  bad([](Config& c) { c.lr = 0; }, "--lr");
  bad([](Config& c) { c.lr = std::nanf(""); }, "--lr");
  bad([](Config& c) { c.momentum = 1.0f; }, "--momentum");
  bad([](Config& c) { c.weight_decay = -1.0f; }, "--weight-decay");
  bad([](Config& c) { c.optimizer = "rmsprop"; }, "rmsprop");
  bad([](Config& c) { c.schedule = "linear"; }, "linear");
  bad([](Config& c) { c.warmup_epochs = 2; }, "--warmup-epochs");
  bad([](Config& c) { c.workers = 0; }, "--workers");
  bad([](Config& c) { c.resume = true, c.out_dir = ""; }, "--resume");
}

}  // namespace

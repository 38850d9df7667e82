// Crash safety of checkpoint writes: a writer SIGKILLed at a random moment of save_safetensors
// leaves the previous file or the new one at the path, never a damaged one; and the temporaries
// that killed writers leave behind are recognised (by their dead pid) and removed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io/files.h"
#include "kiln/io.h"
#include "kiln/tensor.h"
#include "train_fixtures.h"

namespace {

using kiln::Tensor;
using kiln::io::NamedTensors;
using kt::TempDir;

// A checkpoint-sized file: a few MB in several tensors, every value telling which version it is.
NamedTensors version(int v) {
  NamedTensors out;
  for (int i = 0; i < 4; ++i) {
    std::vector<float> x(std::size_t{1} << 18, static_cast<float>(v * 10 + i));
    out.emplace_back("t" + std::to_string(i), Tensor::from_vector(x, {static_cast<std::int64_t>(x.size())}));
  }
  return out;
}

// The version held by the file at `path`; fails the test if it does not load or is mixed.
int version_at(const std::string& path) {
  const auto file = kiln::io::load_safetensors(path);  // throws on a damaged file
  const int v = std::stoi(file.metadata.at("version"));
  for (int i = 0; i < 4; ++i) {
    const Tensor* t = file.find("t" + std::to_string(i));
    EXPECT_NE(t, nullptr);
    if (!t) return -1;
    const auto* p = static_cast<const float*>(t->raw_data());
    const float want = static_cast<float>(v * 10 + i);
    for (std::int64_t k = 0; k < t->numel(); k += 4093) EXPECT_EQ(p[k], want) << "tensor t" << i << " of " << path;
  }
  return v;
}

// Runs save_safetensors(path, tensors) in a child process; SIGKILLs it after `delay` unless it
// ended before. The child does nothing else, so the parent's state is never shared with it.
void save_and_kill(const std::string& path, const NamedTensors& tensors, int v, std::chrono::microseconds delay) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    try {
      kiln::io::save_safetensors(path, tensors, {{"version", std::to_string(v)}});
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  std::this_thread::sleep_for(delay);
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) << "the writer failed";
}

std::chrono::microseconds time_one_save(const std::string& path, const NamedTensors& tensors) {
  const auto t0 = std::chrono::steady_clock::now();
  kiln::io::save_safetensors(path, tensors, {{"version", "0"}});
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
}

TEST(CrashSafety, SigkillDuringSaveLeavesOldOrNewCheckpoint) {
  TempDir dir("kiln_crash");
  const std::string path = dir.file("checkpoint.safetensors");
  const NamedTensors a = version(1), b = version(2);
  // The delays cover the whole save (a little beyond it, so some writers finish), capped so that
  // 40 repetitions stay within a few seconds even on a slow disk.
  const auto one = time_one_save(path, a);
  kiln::io::save_safetensors(path, a, {{"version", "1"}});
  const long long span = std::min<long long>(std::max<long long>(one.count() * 5 / 4, 2000), 200000);
  std::mt19937 rng(1234);
  int old_kept = 0, new_written = 0;
  for (int rep = 0; rep < 40; ++rep) {
    const int before = version_at(path);
    const int next = before == 1 ? 2 : 1;
    save_and_kill(path, next == 1 ? a : b, next, std::chrono::microseconds(rng() % span));
    const int after = version_at(path);
    ASSERT_TRUE(after == before || after == next) << "repetition " << rep << ": version " << after;
    (after == before ? old_kept : new_written)++;
  }
  std::printf("[ info     ] save took %lld us; 40 kills: %d kept the old file, %d found the new one\n",
              static_cast<long long>(one.count()), old_kept, new_written);
  // Every killed writer left its temporary: all are recognised as stale and removed.
  kiln::io::remove_stale_temporaries(dir.path);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"checkpoint.safetensors"});
}

// A temporary of a writer that is gone (a child that exited), one of a live writer (this
// process), and files that merely look similar: only the first is removed.
TEST(CrashSafety, RemovesOnlyTemporariesOfDeadWriters) {
  TempDir dir("kiln_stale");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // reaped: its pid is not alive (until reused)
  const std::string dead = "checkpoint.safetensors.tmp." + std::to_string(child) + ".0";
  const std::string live = "model.safetensors.tmp." + std::to_string(::getpid()) + ".3";
  const std::vector<std::string> keep = {live, "checkpoint.safetensors", "notes.tmp", "x.tmp.12ab.0",
                                         "x.tmp." + std::to_string(child)};
  kt::write_bytes(dir.file(dead), "partial");
  for (const auto& name : keep) kt::write_bytes(dir.file(name), "keep");
  EXPECT_EQ(kiln::io::remove_stale_temporaries(dir.path), 1);
  EXPECT_FALSE(kt::file_exists(dir.file(dead)));
  for (const auto& name : keep) EXPECT_TRUE(kt::file_exists(dir.file(name))) << name;
}

}  // namespace

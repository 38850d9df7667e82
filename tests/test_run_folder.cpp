// The run folder of kiln::train::fit: one run at a time (an advisory lock that dies with its
// holder), a folder that cannot be written is refused before training, and a full disk at a
// checkpoint leaves the previous checkpoint as it was.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "io/run_lock.h"
#include "kiln/kiln.h"
#include "kiln/train.h"
#include "train_fixtures.h"

namespace {

using kiln::Tensor;
using kiln::data::Dataset;
using kiln::train::Config;
using kt::TempDir;

// Random 28x28 images, labels cycling through 10 classes: what is learnt does not matter here.
Dataset tiny(std::int64_t n) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(n * 784));
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i * 2654435761u >> 24);
  std::vector<std::int32_t> lab(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) lab[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 10);
  Dataset d;
  d.images = Tensor::from_vector(px, {n, 1, 28, 28});
  d.labels = Tensor::from_vector(lab, {n});
  d.num_classes = 10;
  for (int c = 0; c < 10; ++c) d.class_names.push_back("c" + std::to_string(c));
  return d;
}

Config config(const std::string& out, int epochs, bool resume = false) {
  Config c;
  c.model.arch = "mlp";
  c.model.hidden = {16};
  c.dataset = "tiny";
  c.epochs = epochs, c.batch_size = 16, c.optimizer = "sgd", c.lr = 0.01f;
  c.workers = 1, c.device = kiln::Device::cpu(), c.progress = false;
  c.out_dir = out, c.resume = resume;
  return c;
}

void fit(const Config& c) {
  static const Dataset train = tiny(64), test = tiny(16);
  kiln::train::fit(c, train, test);
}

// The message of the kiln::Error that `c` fails with ("" and a test failure if it trains).
std::string error_of(const Config& c) {
  try {
    fit(c);
  } catch (const kiln::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "fit into " << c.out_dir << " did not fail";
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(RunFolder, ASecondRunOnALockedFolderFailsNamingFolderAndPid) {
  TempDir d("kiln_lock");
  fit(config(d.path, 1));
  const std::string ck = kt::read_bytes(d.file("checkpoint.safetensors"));
  const std::string metrics = kt::read_bytes(d.file("metrics.jsonl"));
  {
    const kiln::io::RunLock held(d.path);  // what a live `kiln train` on the folder holds
    for (bool resume : {true, false}) {
      const std::string msg = error_of(config(d.path, 2, resume));
      EXPECT_TRUE(contains(msg, d.path)) << msg;
      EXPECT_TRUE(contains(msg, "pid " + std::to_string(::getpid()))) << msg;
    }
    TempDir fresh("kiln_lock_new");
    const kiln::io::RunLock held_fresh(fresh.path);
    EXPECT_TRUE(contains(error_of(config(fresh.path, 1)), fresh.path));
  }
  EXPECT_EQ(kt::read_bytes(d.file("checkpoint.safetensors")), ck) << "the refused run touched the checkpoint";
  EXPECT_EQ(kt::read_bytes(d.file("metrics.jsonl")), metrics) << "the refused run wrote to metrics.jsonl";
  fit(config(d.path, 2, true));  // released: the run continues
  EXPECT_FALSE(kt::file_exists(kiln::io::RunLock::file_in(d.path))) << "a finished run left its lock file";
}

// A run killed with SIGKILL leaves its lock file (with its pid) behind, but not its lock.
TEST(RunFolder, ALockFileLeftByAKilledRunDoesNotBlockAResume) {
  TempDir d("kiln_stale_lock");
  fit(config(d.path, 1));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const kiln::io::RunLock held(d.path);
    ::raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(kt::read_bytes(kiln::io::RunLock::file_in(d.path)), std::to_string(child) + "\n");
  fit(config(d.path, 2, true));
  EXPECT_EQ(kiln::io::load_safetensors(d.file("checkpoint.safetensors")).metadata.at("epoch"), "2");
}

TEST(RunFolder, AFolderUnderARegularFileIsRefusedBeforeTraining) {
  TempDir d("kiln_notdir");
  kt::write_bytes(d.file("file"), "x");
  const std::string out = d.file("file") + "/run";
  const std::string msg = error_of(config(out, 1));
  EXPECT_TRUE(contains(msg, d.file("file"))) << msg;
}

// A folder this process may not write to. Root writes anywhere, so as root the check runs in a
// child that has given up root for "nobody"; the child reports the error through its exit pipe.
std::string error_in_unwritable_folder(const std::string& dir) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(2);
    std::string msg = "trained";
    try {
      fit(config(dir, 1));
    } catch (const kiln::Error& e) {
      msg = e.what();
    }
    if (::write(fds[1], msg.data(), msg.size()) < 0) ::_exit(3);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t got; (got = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, static_cast<std::size_t>(got));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2) return "skip";
  return msg;
}

TEST(RunFolder, AReadOnlyFolderIsRefusedBeforeTraining) {
  TempDir d("kiln_ro");
  ASSERT_EQ(::chmod(d.path.c_str(), 0755), 0);  // the unprivileged child must reach the folders below
  const std::string plain = d.file("plain"), locked = d.file("with_lock_file");
  ASSERT_EQ(::mkdir(plain.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(locked.c_str(), 0755), 0);
  // A lock file that anyone may write (left by an earlier run): the lock is taken, the probe fails.
  kt::write_bytes(kiln::io::RunLock::file_in(locked), "");
  ASSERT_EQ(::chmod(kiln::io::RunLock::file_in(locked).c_str(), 0666), 0);
  for (const std::string& dir : {plain, locked}) {
    ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
    const std::string msg = error_in_unwritable_folder(dir);
    ::chmod(dir.c_str(), 0755);
    if (msg == "skip") GTEST_SKIP() << "running as root and cannot switch to an unprivileged user";
    EXPECT_TRUE(contains(msg, "the run folder " + dir + " is not writable")) << msg;
    EXPECT_FALSE(kt::file_exists(dir + "/metrics.jsonl"));
  }
}

// A full disk, made the way test_safetensors.cpp makes it: a file size limit (RLIMIT_FSIZE) below
// the checkpoint's size, so its write fails with EFBIG while the small report files still fit.
TEST(RunFolder, AFullDiskAtACheckpointKeepsThePreviousOne) {
  TempDir d("kiln_full");
  fit(config(d.path, 1));
  const std::string ck = d.file("checkpoint.safetensors"), before = kt::read_bytes(ck);
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const rlim_t limit = before.size() / 2;
  if (old_limit.rlim_cur != RLIM_INFINITY && old_limit.rlim_cur < limit) GTEST_SKIP() << "file size limit too low";
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = limit;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string msg;
  try {
    fit(config(d.path, 2, true));
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(msg.empty()) << "the checkpoint write over the limit did not fail";
  EXPECT_TRUE(contains(msg, ck)) << msg;
  EXPECT_TRUE(contains(msg, std::strerror(EFBIG))) << msg;
  EXPECT_EQ(kt::read_bytes(ck), before) << "the previous checkpoint was damaged";
  for (const auto& name : d.entries()) EXPECT_FALSE(contains(name, ".tmp.")) << name << " left behind";
  EXPECT_FALSE(kt::file_exists(kiln::io::RunLock::file_in(d.path)));
  fit(config(d.path, 2, true));  // with room again, the run continues from the kept checkpoint
}

}  // namespace

// io/files.h: atomic replacement (content replaced; on failure the previous file intact, no temporary
// file left, an error naming the file and the system's reason), reads, appends and folders.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "io/files.h"
#include "kiln/error.h"
#include "train_fixtures.h"

namespace {

using kt::TempDir;

// Runs `f`, which must throw a kiln::Error whose message contains every one of `needles`.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing from: " << msg;
    return;
  }
  ADD_FAILURE() << "no kiln::Error thrown";
}

bool has_tmp_file(const TempDir& dir) {
  for (const auto& e : dir.entries())
    if (e.find(".tmp.") != std::string::npos) return true;
  return false;
}

TEST(Files, WriteAtomicReplacesContent) {
  TempDir dir("kiln_files");
  const std::string path = dir.file("out.txt");
  kiln::io::write_atomic(path, "first version, longer than the second");
  EXPECT_EQ(kiln::io::read_all(path), "first version, longer than the second");
  kiln::io::write_atomic(path, "second");
  EXPECT_EQ(kiln::io::read_all(path), "second");
  kiln::io::write_atomic(path, std::vector<std::string_view>{"he", "", "ader", std::string_view("\0data", 5)});
  EXPECT_EQ(kiln::io::read_all(path), std::string("header\0data", 11));
  kiln::io::write_atomic(path, "");
  EXPECT_EQ(kiln::io::read_all(path), "");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"out.txt"}));
}

TEST(Files, WriteIntoMissingFolderNamesThePath) {
  TempDir dir("kiln_files");
  const std::string path = dir.file("no/such/folder/out.txt");
  expect_error([&] { kiln::io::write_atomic(path, "x"); }, {path, std::strerror(ENOENT)});
  EXPECT_TRUE(dir.entries().empty());
}

// A parent that is a regular file stops the write even for root, whom permissions do not stop.
TEST(Files, WriteUnderARegularFileLeavesItIntact) {
  TempDir dir("kiln_files");
  const std::string parent = dir.file("regular");
  kiln::io::write_atomic(parent, "keep me");
  const std::string path = parent + "/out.txt";
  expect_error([&] { kiln::io::write_atomic(path, "x"); }, {path, std::strerror(ENOTDIR)});
  EXPECT_EQ(kiln::io::read_all(parent), "keep me");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"regular"}));
}

// A write that fails part-way (a full disk) is Safetensors.FailedWriteLeavesPreviousFileIntact: the
// safetensors writer is an AtomicWriter.

TEST(Files, FailedRenameRemovesTheTemporaryFile) {
  TempDir dir("kiln_files");
  const std::string path = dir.file("target");
  kiln::io::make_dirs(path + "/inside");  // a non-empty folder: rename() over it fails
  expect_error([&] { kiln::io::write_atomic(path, "x"); }, {path, "renaming"});
  EXPECT_FALSE(has_tmp_file(dir));
  EXPECT_TRUE(kiln::io::exists(path + "/inside"));
}

TEST(Files, AtomicWriterAbandonedLeavesNothing) {
  TempDir dir("kiln_files");
  const std::string path = dir.file("out.bin");
  kiln::io::write_atomic(path, "previous");
  try {
    kiln::io::AtomicWriter out(path);
    out.write("half of it");
    throw std::runtime_error("producing the next piece failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(kiln::io::read_all(path), "previous");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"out.bin"}));
}

TEST(Files, ReadAllNamesAMissingFile) {
  TempDir dir("kiln_files");
  const std::string path = dir.file("missing.txt");
  try {
    kiln::io::read_all(path);
    ADD_FAILURE() << "no error";
  } catch (const kiln::Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open " + path + ": " + std::strerror(ENOENT));
  }
  expect_error([&] { kiln::io::read_all(dir.path); }, {dir.path, "not a regular file"});
}

TEST(Files, MakeDirsCreatesNestedFolders) {
  TempDir dir("kiln_files");
  const std::string deep = dir.file("a/b//c/");
  EXPECT_FALSE(kiln::io::exists(dir.file("a")));
  kiln::io::make_dirs(deep);
  EXPECT_TRUE(kiln::io::exists(dir.file("a/b/c")));
  kiln::io::make_dirs(deep);  // already there: fine
  kiln::io::make_dirs("");    // nothing to do
  kiln::io::write_atomic(dir.file("a/b/c/f"), "x");
  EXPECT_EQ(kiln::io::read_all(dir.file("a/b/c/f")), "x");

  const std::string file = dir.file("a/b/c/f");
  expect_error([&] { kiln::io::make_dirs(file + "/d/e"); }, {"cannot create the folder " + file + ":"});
  expect_error([&] { kiln::io::make_dirs(file); }, {file, std::strerror(ENOTDIR)});
}

TEST(Files, AppendLineAddsLines) {
  TempDir dir("kiln_files");
  const std::string path = dir.file("metrics.jsonl");
  kiln::io::append_line(path, "{\"epoch\":1}");
  kiln::io::append_line(path, "{\"epoch\":2}");
  EXPECT_EQ(kiln::io::read_all(path), "{\"epoch\":1}\n{\"epoch\":2}\n");
  const std::string missing = dir.file("no/such/metrics.jsonl");
  expect_error([&] { kiln::io::append_line(missing, "x"); }, {"cannot append to " + missing, std::strerror(ENOENT)});
}

TEST(Files, ExistsSeesFilesAndFolders) {
  TempDir dir("kiln_files");
  EXPECT_TRUE(kiln::io::exists(dir.path));
  EXPECT_FALSE(kiln::io::exists(dir.file("nothing")));
  kiln::io::write_atomic(dir.file("f"), "");
  EXPECT_TRUE(kiln::io::exists(dir.file("f")));
}

// Files named by users are opened only if regular: a FIFO (which would block until a writer comes)
// and a folder are refused at once, naming the path.
TEST(Files, OnlyRegularFilesAreOpened) {
  TempDir dir("kiln_files");
  const std::string fifo = dir.file("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  expect_error([&] { kiln::io::read_all(fifo); }, {fifo, "not a regular file"});
  expect_error([&] { kiln::io::InputFile f(dir.path); }, {dir.path, "a folder"});
  kiln::io::write_atomic(dir.file("ok"), "fine");
  std::uint64_t size = 0;
  const int fd = kiln::io::open_regular_file(dir.file("ok"), &size);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(size, 4u);
  ::close(fd);
}

}  // namespace

// Internal: the one place where kiln reads and writes files. Every file a user keeps (checkpoints,
// model weights, metrics.jsonl, curves.svg) is written through here, so each is replaced
// atomically and every failure is a kiln::Error that names the file and the system's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

bool exists(const std::string& path);
// mkdir -p: creates `path` and any missing parents (an error names the folder that failed).
void make_dirs(const std::string& path);
std::string read_all(const std::string& path);
// Removes a file; one that is already gone is not an error.
void remove_file(const std::string& path);
// Appends `line` and a newline in one write, so a crash never leaves half a line behind.
void append_line(const std::string& path, const std::string& line);
// Throws, naming `dir`, unless a file can be created, written and removed in it: a run checks its
// folder before training instead of failing at its first save.
void check_writable(const std::string& dir);
// Removes the temporary files that write_atomic writers left in `dir` when they were killed (their
// pid is no longer alive), and returns how many. A live writer's temporary is never touched.
int remove_stale_temporaries(const std::string& dir);

// Replaces `path` with `bytes` (or the parts one after another): written to a temporary file in the
// same folder, fsync'ed, renamed over `path`, and the folder fsync'ed. On failure the temporary
// file is removed and the previous file at `path` is untouched.
void write_atomic(const std::string& path, std::string_view bytes);
void write_atomic(const std::string& path, const std::vector<std::string_view>& parts);

// write_atomic for a caller that produces the bytes piece by piece (safetensors copies one tensor
// at a time off the device). Nothing at `path` changes until commit(); destroyed before that (an
// error, an exception while producing a piece), it removes its temporary file.
class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);
  ~AtomicWriter();
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  void write(std::string_view bytes);
  void commit();

 private:
  [[noreturn]] void fail(const char* step, int err) const;

  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Opens `path` for reading (a descriptor the caller closes) if it is a regular file, and stores its
// size. Every file named by a user is opened through here: a FIFO, a device or a folder is refused
// at once, naming the path, instead of blocking or reading forever.
int open_regular_file(const std::string& path, std::uint64_t* size = nullptr);

// A regular file read at given offsets (safetensors reads its header, then each tensor).
class InputFile {
 public:
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  std::uint64_t size() const { return size_; }
  // Reads exactly `n` bytes at `offset`; a file that ends sooner is reported as truncated.
  void read_at(void* buf, std::size_t n, std::uint64_t offset) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace kiln::io

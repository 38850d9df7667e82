// Internal: one process at a time in a run folder. Two `kiln train` runs on the same --out would
// interleave metrics.jsonl and race on the checkpoint; the second one must fail at once instead.
#pragma once

#include <string>

namespace kiln::io {

// An advisory lock (flock) on `<dir>/.lock`, held from construction to destruction. The kernel
// drops it when the process ends however it ends, so a lock file left behind by a killed run never
// blocks the next one: only a live holder does. The file holds the holder's pid, for the message.
class RunLock {
 public:
  // Takes the lock or throws a kiln::Error naming `dir` and the pid of the process holding it.
  // `dir` must exist; an error naming it is also thrown when the lock file cannot be created.
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  static std::string file_in(const std::string& dir) { return dir + "/.lock"; }

 private:
  bool try_lock();
  [[noreturn]] void fail_busy() const;

  std::string dir_, path_;
  int fd_ = -1;
};

}  // namespace kiln::io

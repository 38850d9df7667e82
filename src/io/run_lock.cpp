// The run-folder lock: flock on a file that is removed when its holder lets go.
//
// Removing the file on release is what keeps a finished run folder free of it, but it opens a race:
// a second process may have opened the old file just before it was unlinked, and then lock a file
// that no longer has a name while a third creates and locks a new one. So a lock only counts once
// the locked file is still the one at the path (same inode); otherwise the taker tries again.
#include "io/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kiln/error.h"

namespace kiln::io {

namespace {
// The pid the holder wrote into the lock file, or "" while it has not written it yet.
std::string holder_pid(int fd) {
  char buf[32] = {};
  const ssize_t got = ::pread(fd, buf, sizeof buf - 1, 0);
  if (got <= 0) return "";
  std::string pid(buf, static_cast<std::size_t>(got));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}

bool same_file(int fd, const std::string& path) {
  struct stat held {}, named {};
  return ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
         held.st_ino == named.st_ino;
}
}  // namespace

RunLock::RunLock(const std::string& dir) : dir_(dir), path_(file_in(dir)) {
  while (!try_lock()) {
  }
  // Our pid for the message of a run that finds the folder busy (best effort: the lock is what counts).
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::unlink(path_.c_str());
    ::close(fd_);
    KILN_FAIL("the run folder ", dir_, " is not writable: writing ", path_, " failed: ", std::strerror(err));
  }
}

// True once the lock is held on the file at path_; false when the file was replaced meanwhile.
bool RunLock::try_lock() {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    KILN_FAIL("the run folder ", dir_, " is not writable: cannot create ", path_, ": ", std::strerror(errno));
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) fail_busy();
    const int err = errno;
    ::close(fd_);
    KILN_FAIL("cannot lock the run folder ", dir_, " (", path_, "): ", std::strerror(err));
  }
  if (same_file(fd_, path_)) return true;
  ::close(fd_);
  fd_ = -1;
  return false;
}

void RunLock::fail_busy() const {
  const std::string pid = holder_pid(fd_);
  ::close(fd_);
  KILN_FAIL("the run folder ", dir_, " is in use by another kiln process",
            pid.empty() ? std::string() : " (pid " + pid + ")",
            "; wait for it to finish or stop it, or choose another --out");
}

// Unlinked while still locked, so nobody can take a lock on the name that is about to go.
RunLock::~RunLock() {
  ::unlink(path_.c_str());
  ::close(fd_);
}

}  // namespace kiln::io

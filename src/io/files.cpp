// File helpers: atomic replacement, whole-file and positioned reads, appends, folders. POSIX calls
// rather than iostreams, because only they report why a write failed (errno) and can fsync.
#include "io/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "kiln/error.h"

namespace kiln::io {

namespace {

// Larger transfers are split: Linux moves at most about 2 GiB per read() or write() call.
constexpr std::size_t kMaxChunk = std::size_t{1} << 30;

// Writes all `n` bytes; false with errno set on failure.
bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t put = ::write(fd, p, std::min(n, kMaxChunk));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return false;
    if (put == 0) {  // not expected of a regular file; the disk is as good as full
      errno = ENOSPC;
      return false;
    }
    p += put;
    n -= static_cast<std::size_t>(put);
  }
  return true;
}

// Reads all `n` bytes at `offset`; false on an error (errno set) or when the file ends (errno 0).
bool pread_all(int fd, char* p, std::size_t n, std::uint64_t offset) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, std::min(n, kMaxChunk), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return false;
    if (got == 0) {
      errno = 0;
      return false;
    }
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return true;
}

std::string parent_dir(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a rename in `dir` durable. A folder that cannot be fsync'ed (some file systems refuse with
// EINVAL) is not an error: the new file is in place either way.
void fsync_dir(const std::string& dir, const std::string& written) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != ENOTSUP)
    KILN_FAIL(written, " was written, but the fsync of its folder ", dir, " failed: ", std::strerror(err));
}

// Unique among the writers of this process (threads included) and of other processes (the pid).
// writer_pid() below reads this naming back: change both together.
std::string temporary_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string::npos;
}

// The writer's pid in a temporary file's name ("<name>.tmp.<pid>.<n>"), or 0 if it is not one.
pid_t writer_pid(const std::string& name) {
  const std::size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0 || !all_digits(name.substr(dot + 1))) return 0;
  const std::size_t pid_dot = name.rfind('.', dot - 1);
  if (pid_dot == std::string::npos || pid_dot < 4 || name.compare(pid_dot - 4, 4, ".tmp") != 0) return 0;
  const std::string pid = name.substr(pid_dot + 1, dot - pid_dot - 1);
  return all_digits(pid) ? static_cast<pid_t>(std::stoll(pid)) : 0;
}

// EPERM means the process exists but belongs to someone else: alive.
bool process_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); }

void make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0) return;
  int err = errno;
  struct stat st {};
  if (err == EEXIST && ::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return;
    err = ENOTDIR;
  }
  KILN_FAIL("cannot create the folder ", dir, ": ", std::strerror(err));
}

}  // namespace

// ---- small helpers ----------------------------------------------------------------------------------

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
  for (std::size_t end = path.find('/', 1); ; end = path.find('/', end + 1)) {
    const std::string prefix = path.substr(0, end);
    if (!prefix.empty() && prefix.back() != '/') make_dir(prefix);
    if (end == std::string::npos) return;
  }
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) KILN_FAIL("cannot remove ", path, ": ", std::strerror(errno));
}

std::string read_all(const std::string& path) {
  const InputFile file(path);
  std::string bytes(static_cast<std::size_t>(file.size()), '\0');
  if (!bytes.empty()) file.read_at(&bytes[0], bytes.size(), 0);
  return bytes;
}

void append_line(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) KILN_FAIL("cannot append to ", path, ": ", std::strerror(errno));
  const std::string text = line + '\n';
  const bool written = write_all(fd, text.data(), text.size());
  const int write_err = errno;
  const bool closed = ::close(fd) == 0;
  if (!written || !closed) KILN_FAIL("cannot append to ", path, ": ", std::strerror(written ? errno : write_err));
}

void check_writable(const std::string& dir) {
  // Named like a temporary of this process, so a probe left by a kill is cleaned up like one.
  const std::string probe = dir + "/.kiln-probe.tmp." + std::to_string(::getpid()) + ".0";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) KILN_FAIL("the run folder ", dir, " is not writable: cannot create a file in it: ", std::strerror(errno));
  const bool written = write_all(fd, "k", 1);
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!written) KILN_FAIL("the run folder ", dir, " is not writable: writing ", probe, " failed: ", std::strerror(err));
}

int remove_stale_temporaries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;  // nothing to clean where nothing can be listed; the writes will say why
  int removed = 0;
  while (const dirent* e = ::readdir(d)) {
    const pid_t pid = writer_pid(e->d_name);
    if (pid == 0 || process_alive(pid)) continue;
    if (::unlink((dir + "/" + e->d_name).c_str()) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

void write_atomic(const std::string& path, std::string_view bytes) {
  write_atomic(path, std::vector<std::string_view>{bytes});
}

void write_atomic(const std::string& path, const std::vector<std::string_view>& parts) {
  AtomicWriter out(path);
  for (const std::string_view part : parts) out.write(part);
  out.commit();
}

// ---- AtomicWriter -----------------------------------------------------------------------------------

AtomicWriter::AtomicWriter(std::string path) : path_(std::move(path)), tmp_(temporary_name(path_)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail("creating", errno);
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicWriter::fail(const char* step, int err) const {
  KILN_FAIL("cannot write ", path_, ": ", step, " ", tmp_, " failed: ", std::strerror(err));
}

void AtomicWriter::write(std::string_view bytes) {
  KILN_CHECK(fd_ >= 0 && !committed_, "AtomicWriter: write to ", path_, " after commit");
  if (!write_all(fd_, bytes.data(), bytes.size())) fail("writing", errno);
}

void AtomicWriter::commit() {
  KILN_CHECK(fd_ >= 0 && !committed_, "AtomicWriter: ", path_, " committed twice");
  if (::fsync(fd_) != 0) fail("the fsync of", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("closing", errno);  // close can report a deferred write error (NFS)
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    KILN_FAIL("cannot write ", path_, ": renaming ", tmp_, " over it failed: ", std::strerror(err));
  }
  committed_ = true;
  fsync_dir(parent_dir(path_), path_);
}

// ---- InputFile --------------------------------------------------------------------------------------

int open_regular_file(const std::string& path, std::uint64_t* size) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever. It changes
  // nothing for a regular file, the only kind accepted.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) KILN_FAIL("cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    KILN_FAIL("cannot stat ", path, ": ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    KILN_FAIL(path, ": not a regular file (", S_ISDIR(st.st_mode) ? "a folder" : "a pipe, socket or device", ")");
  }
  if (size) *size = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

InputFile::InputFile(const std::string& path) : path_(path) { fd_ = open_regular_file(path, &size_); }

InputFile::~InputFile() { ::close(fd_); }

void InputFile::read_at(void* buf, std::size_t n, std::uint64_t offset) const {
  if (pread_all(fd_, static_cast<char*>(buf), n, offset)) return;
  if (errno == 0) KILN_FAIL(path_, ": truncated: the file ended while reading it (did it change meanwhile?)");
  KILN_FAIL("cannot read ", path_, ": ", std::strerror(errno));
}

}  // namespace kiln::io

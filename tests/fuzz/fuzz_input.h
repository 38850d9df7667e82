// The fuzz input as a file: kiln's parsers take paths (and check that they name regular files), so
// each input is written to an anonymous in-memory file (memfd) and handed over as /proc/self/fd/N.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kiln::fuzz {

class InputFile {
 public:
  InputFile(const std::uint8_t* data, std::size_t size) : fd_(memfd_create("kiln-fuzz-input", MFD_CLOEXEC)) {
    if (fd_ < 0) die("memfd_create");
    for (std::size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) die("write");
      done += static_cast<std::size_t>(n);
    }
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  // The harness itself failing is not a finding: stop loudly instead of reporting a false crash site.
  [[noreturn]] static void die(const char* call) {
    std::perror(call);
    std::_Exit(2);
  }
  int fd_;
};

}  // namespace kiln::fuzz

// Internal: how much host memory kiln may hold. Linux overcommits, so an allocation far beyond the
// machine's memory succeeds and the process is killed later, without a message, when the pages are
// touched. The host allocator checks every new block against this limit instead and refuses with
// the figures (kiln::OutOfMemoryError), before the memory is used.
#pragma once

#include <cstddef>
#include <string>

namespace kiln::detail {

// KILN_HOST_MEMORY_LIMIT (bytes, or with a K/M/G suffix) when set, else the smaller of the machine's
// physical memory and the cgroup's memory limit (a container's). Read once.
std::size_t host_memory_limit();
// "1.5 GiB", "640 MiB", "12 KiB": for messages.
std::string format_bytes(std::size_t bytes);

}  // namespace kiln::detail

// libFuzzer target: data::read_idx on plain and gzip-compressed IDX files.
//
// The first byte picks the mode: even, the rest is the file as it is (a mutated IDX or .gz file);
// odd, the rest is gzip-compressed first, so that mutations of the IDX header also reach the gzip
// path (a mutated .gz file rarely survives its CRC). A file read_idx accepts must hold exactly the
// header's dimensions and bytes: anything else is a silently wrong dataset, reported as a crash.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_input.h"
#include "kiln/data.h"
#include "kiln/error.h"

namespace {

std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<std::uint8_t> out(deflateBound(&z, size) + 32);
  z.next_in = const_cast<std::uint8_t*>(data), z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data(), z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::uint32_t big_endian(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

[[noreturn]] void wrong(const char* what) {
  std::fprintf(stderr, "read_idx accepted a file but returned %s\n", what);
  std::abort();
}

// `idx` (the uncompressed bytes) was accepted as `t`: the header's dims, then exactly the data.
void check_matches(const std::uint8_t* idx, std::size_t size, const kiln::Tensor& t) {
  if (size < 4 || t.dtype() != kiln::DType::UInt8) wrong("a tensor for a headerless file, or not uint8");
  if (idx[0] != 0 || idx[1] != 0 || idx[2] != 0x08) wrong("a tensor for a file without the IDX uint8 magic");
  const std::size_t ndim = idx[3], header = 4 + 4 * ndim;
  if (t.dim() != static_cast<std::int64_t>(ndim) || size < header) wrong("a tensor of another rank");
  for (std::size_t d = 0; d < ndim; ++d)
    if (t.shape()[d] != static_cast<std::int64_t>(big_endian(idx + 4 + 4 * d))) wrong("other dimensions");
  if (static_cast<std::size_t>(t.numel()) != size - header) wrong("a tensor of another size than the data");
  if (t.numel() > 0 && std::memcmp(t.raw_data(), idx + header, size - header) != 0) wrong("other bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool compress = data[0] & 1;
  const std::uint8_t* idx = data + 1;
  const std::size_t idx_size = size - 1;
  const std::vector<std::uint8_t> bytes = compress ? gzip(idx, idx_size) : std::vector<std::uint8_t>(idx, idx + idx_size);
  const bool is_gzip = bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
  try {
    const kiln::fuzz::InputFile file(bytes.data(), bytes.size());
    const kiln::Tensor t = kiln::data::read_idx(file.path());
    if (compress || !is_gzip) check_matches(idx, idx_size, t);
  } catch (const kiln::Error&) {
    // A refused file is the expected outcome for almost every input.
  }
  return 0;
}

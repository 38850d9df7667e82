#include "io/tfrecord.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "io/crc32c.h"
#include "kiln/error.h"

namespace kiln::io {

namespace {

constexpr std::size_t kHeaderBytes = 8 + 4;  // length, its masked CRC

void put_le(std::string& out, std::uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

std::uint64_t get_le(std::string_view b, std::size_t at, int nbytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < nbytes; ++i) v |= std::uint64_t(static_cast<std::uint8_t>(b[at + i])) << (8 * i);
  return v;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

std::string read_whole_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) KILN_FAIL("cannot open ", path, ": ", std::strerror(errno));
  std::string bytes;
  char buf[1 << 16];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f.get())) > 0) bytes.append(buf, got);
  if (std::ferror(f.get())) KILN_FAIL("error reading ", path, ": ", std::strerror(errno));
  return bytes;
}

}  // namespace

void append_tfrecord(std::string& out, std::string_view data) {
  std::string length;
  put_le(length, data.size(), 8);
  out += length;
  put_le(out, masked_crc32c(length.data(), length.size()), 4);
  out.append(data);
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
}

std::vector<TFRecord> split_tfrecords(std::string_view bytes, const std::string& name) {
  std::vector<TFRecord> records;
  std::size_t at = 0;
  while (at < bytes.size()) {
    const std::size_t left = bytes.size() - at;
    KILN_CHECK(left >= kHeaderBytes, name, ": record at byte offset ", at, " is truncated (", left,
               " bytes, shorter than its ", kHeaderBytes, "-byte header)");
    KILN_CHECK(get_le(bytes, at + 8, 4) == masked_crc32c(bytes.data() + at, 8), name, ": record at byte offset ", at,
               " has a bad length CRC (corrupt file)");
    const std::uint64_t length = get_le(bytes, at, 8);
    KILN_CHECK(left >= kTFRecordOverhead && length <= left - kTFRecordOverhead, name, ": record at byte offset ", at,
               " is truncated (", length, " data bytes announced, ", left, " bytes left in the file)");
    const std::string_view data = bytes.substr(at + kHeaderBytes, length);
    KILN_CHECK(get_le(bytes, at + kHeaderBytes + length, 4) == masked_crc32c(data.data(), data.size()), name,
               ": record at byte offset ", at, " has a bad data CRC (corrupt file)");
    records.push_back({at, std::string(data)});
    at += kTFRecordOverhead + length;
  }
  return records;
}

std::vector<TFRecord> read_tfrecords(const std::string& path) { return split_tfrecords(read_whole_file(path), path); }

}  // namespace kiln::io

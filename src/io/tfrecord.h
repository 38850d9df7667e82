// TFRecord framing (TensorFlow's record I/O, the container of TensorBoard event files). A file is a
// sequence of records, each
//   uint64 length            little endian
//   uint32 masked_crc32c(the 8 length bytes)
//   byte   data[length]
//   uint32 masked_crc32c(data)
// with no file header or footer, so a file cut after any whole record is itself valid.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

constexpr std::size_t kTFRecordOverhead = 8 + 4 + 4;  // framing bytes around each record's data

// Appends the framed record holding `data` to `out`.
void append_tfrecord(std::string& out, std::string_view data);

struct TFRecord {
  std::uint64_t offset;  // of the record's first framing byte in its file
  std::string data;
};

// Splits a whole file's bytes into records, checking both CRCs of each. kiln::Error naming `name`
// (the file) and the record's byte offset on a bad CRC or a record cut short.
std::vector<TFRecord> split_tfrecords(std::string_view bytes, const std::string& name);

// Reads and splits a whole file (event files are small; a dataset-sized reader would stream).
// kiln::Error naming the file: cannot open or read it (with strerror), or as split_tfrecords.
std::vector<TFRecord> read_tfrecords(const std::string& path);

}  // namespace kiln::io

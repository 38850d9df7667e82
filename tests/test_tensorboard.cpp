// TensorBoard event files: the CRC-32C under TFRecord framing (published check values), the
// protobuf wire encoder/decoder, hand-derived event bytes, a written file read back, corruption and
// truncation reported with the file's name, and one new file per writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io/crc32c.h"
#include "io/proto_wire.h"
#include "io/tfrecord.h"
#include "kiln/error.h"
#include "train/tensorboard.h"
#include "train_fixtures.h"

namespace {

using kiln::io::crc32c;
using kiln::io::masked_crc32c;
using kiln::train::ScalarEvent;
using kiln::train::TensorBoardWriter;
namespace proto = kiln::io::proto;
namespace tb = kiln::train::detail;

std::string bytes_of(std::initializer_list<unsigned> b) {
  std::string s;
  for (unsigned v : b) s.push_back(static_cast<char>(v));
  return s;
}

std::string hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x ", c);
    out += buf;
  }
  return out;
}

// Runs f, which must throw kiln::Error whose message contains every one of `parts`.
void expect_error_mentions(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no kiln::Error thrown";
  } catch (const kiln::Error& e) {
    const std::string what = e.what();
    for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << what << "\nmissing: " << p;
  }
}

// ---- CRC-32C ------------------------------------------------------------------------------------

TEST(Crc32c, PublishedCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC catalogue's check value
  // RFC 3720 (iSCSI) appendix B.4.
  const std::string zeros(32, '\0'), ones(32, '\xff');
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending.data(), descending.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32c, IncrementalEqualsOneShot) {
  std::string data(1000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131 + 7) % 251);
  const std::uint32_t whole = crc32c(data.data(), data.size());
  // Splits on and off the 8-byte blocks, and empty pieces at either end.
  for (std::size_t cut : {0, 1, 7, 8, 9, 15, 16, 500, 993, 999, 1000}) {
    const std::uint32_t head = crc32c(data.data(), cut);
    EXPECT_EQ(crc32c(data.data() + cut, data.size() - cut, head), whole) << "cut at " << cut;
  }
  std::uint32_t bytewise = 0;
  for (char c : data) bytewise = crc32c(&c, 1, bytewise);
  EXPECT_EQ(bytewise, whole);
}

TEST(Crc32c, MaskIsRotateAndOffset) {
  const std::uint32_t crc = crc32c("123456789", 9);
  EXPECT_EQ(masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  EXPECT_EQ(kiln::io::mask_crc32c(0), 0xa282ead8u);
}

// ---- protobuf wire ------------------------------------------------------------------------------

TEST(ProtoWire, VarintsAndTwosComplementInt64) {
  std::string out;
  proto::put_varint(out, 300);  // 300 = 0b10'0101100: 0x2c with the "more" bit, then 0x02
  EXPECT_EQ(out, bytes_of({0xac, 0x02}));
  out.clear();
  proto::put_int64(out, 2, -1);  // key 0x10, then 64 one-bits: nine 0xff and a final 0x01
  EXPECT_EQ(out, bytes_of({0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));

  proto::Reader r(out);
  proto::Field f;
  ASSERT_TRUE(r.next(&f));
  EXPECT_EQ(f.number, 2u);
  EXPECT_EQ(f.as_int64(), -1);
  EXPECT_FALSE(r.next(&f));
}

TEST(ProtoWire, RoundTripAndSkipsUnknownFields) {
  std::string msg;
  proto::put_double(msg, 1, -2.5);
  proto::put_bytes(msg, 4, "ignored sub-message");
  proto::put_float(msg, 7, 3.25f);
  proto::put_int64(msg, 100000, 42);  // a multi-byte key
  proto::Reader r(msg);
  proto::Field f;
  ASSERT_TRUE(r.next(&f));
  EXPECT_EQ(f.as_double(), -2.5);
  ASSERT_TRUE(r.next(&f));
  EXPECT_EQ(f.number, 4u);
  ASSERT_TRUE(r.next(&f));
  EXPECT_EQ(f.as_float(), 3.25f);
  ASSERT_TRUE(r.next(&f));
  EXPECT_EQ(f.number, 100000u);
  EXPECT_EQ(f.as_int64(), 42);
  EXPECT_FALSE(r.next(&f));
}

TEST(ProtoWire, MalformedInputThrows) {
  proto::Field f;
  const std::string truncated_varint = bytes_of({0x10, 0x80});
  const std::string long_bytes = bytes_of({0x0a, 0x05, 'a'});
  const std::string group = bytes_of({0x0b});  // field 1, wire type 3 (start group)
  const std::string short_fixed = bytes_of({0x09, 0, 0, 0});
  for (const std::string* m : {&truncated_varint, &long_bytes, &group, &short_fixed}) {
    proto::Reader r(*m);
    EXPECT_THROW(r.next(&f), kiln::Error) << hex(*m);
  }
  const std::string varint = bytes_of({0x08, 0x01});  // a varint read as a double
  proto::Reader r(varint);
  ASSERT_TRUE(r.next(&f));
  EXPECT_THROW(f.as_double(), kiln::Error);
}

// ---- TFRecord framing ---------------------------------------------------------------------------

TEST(TFRecord, FramesSplitBackWithOffsets) {
  std::string file;
  kiln::io::append_tfrecord(file, "first");
  kiln::io::append_tfrecord(file, "");
  kiln::io::append_tfrecord(file, std::string(300, 'x'));
  ASSERT_EQ(file.size(), 3 * kiln::io::kTFRecordOverhead + 5 + 300);
  const std::string empty_data_crc = file.substr(2 * 16 + 5 - 4, 4);
  EXPECT_EQ(empty_data_crc, bytes_of({0xd8, 0xea, 0x82, 0xa2}));  // mask_crc32c(0), little endian

  const auto records = kiln::io::split_tfrecords(file, "mem");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].offset, 0u);
  EXPECT_EQ(records[0].data, "first");
  EXPECT_EQ(records[1].offset, 21u);
  EXPECT_EQ(records[1].data, "");
  EXPECT_EQ(records[2].offset, 37u);
  EXPECT_EQ(records[2].data, std::string(300, 'x'));
}

// ---- event encoding -----------------------------------------------------------------------------

// Derived by hand from the wire format (key = field << 3 | wire type):
//   Summary.Value: 0a 04 "loss"          tag = 1, bytes, length 4
//                  15 00 00 80 3e        simple_value = 2, fixed32; 0.25f = 2^-2 = 0x3e800000
//                  -> 11 bytes
//   Summary:       0a 0b <Value>         value = 1, bytes, length 11 -> 13 bytes
//   Event:         09 00 00 00 00 00 00 f8 3f   wall_time = 1, fixed64; 1.5 = 0x3ff8000000000000
//                  10 ac 02              step = 2, varint; 300 = 0x2c|0x80, 0x02
//                  2a 0d <Summary>       summary = 5, bytes, length 13 -> 27 bytes
TEST(TensorBoard, ScalarEventBytesArePinned) {
  const std::string want = bytes_of({0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f,  // wall_time
                                     0x10, 0xac, 0x02,                                      // step
                                     0x2a, 0x0d,                                            // summary
                                     0x0a, 0x0b,                                            // value
                                     0x0a, 0x04, 'l', 'o', 's', 's',                        // tag
                                     0x15, 0x00, 0x00, 0x80, 0x3e});                        // 0.25f
  const std::string got = tb::encode_scalar_event(1.5, 300, "loss", 0.25f);
  EXPECT_EQ(hex(got), hex(want));
}

// proto3 defaults are left out (step 0) except inside a oneof (simple_value 0 is kept).
TEST(TensorBoard, DefaultFieldsFollowProto3) {
  const std::string got = tb::encode_scalar_event(0.0, 0, "a", 0.0f);
  EXPECT_EQ(hex(got), hex(bytes_of({0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0, 0, 0, 0})));
  const tb::Event e = tb::decode_event(got);
  EXPECT_EQ(e.step, 0);
  ASSERT_EQ(e.scalars.size(), 1u);
  EXPECT_EQ(e.scalars[0].first, "a");
}

// Every TensorFlow event file starts with the same 13 bytes: the 24-byte file_version record's
// length (09 + 8 wall-time bytes + 1a 0d "brain.Event:2"), its masked CRC, and the wall_time key.
// An outside check of the CRC, the mask and the encoding together.
TEST(TensorBoard, FileStartsLikeTensorFlowsEventFiles) {
  kt::TempDir dir("kiln_tb");
  std::string path;
  {
    TensorBoardWriter w(dir.path);
    path = w.path();
  }
  const std::string head = kt::read_bytes(path).substr(0, 13);
  EXPECT_EQ(hex(head), hex(bytes_of({0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22, 0x09})));
}

// ---- writer and reader --------------------------------------------------------------------------

struct Point {
  std::string tag;
  std::int64_t step;
  double value;
};

const std::vector<Point> kPoints = {
    {"train/loss", 1, 2.302585},
    {"train/accuracy", 1, 0.1},
    {"train/loss", 2, 1.5},
    {"val/loss", std::int64_t(1) << 40, -3e-8},  // a step past 32 bits, a negative value
};

std::string write_points(const std::string& dir) {
  TensorBoardWriter w(dir);
  for (const Point& p : kPoints) w.scalar(p.tag, p.step, p.value);
  w.flush();
  return w.path();
}

TEST(TensorBoard, WrittenFileDecodes) {
  kt::TempDir dir("kiln_tb");
  const double before = tb::unix_time_now();
  const std::string path = write_points(dir.path);
  const double after = tb::unix_time_now();

  const std::string name = std::filesystem::path(path).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find("." + std::to_string(::getpid()) + ".kiln"), std::string::npos) << name;

  const auto records = kiln::io::read_tfrecords(path);  // both CRCs of every record checked
  ASSERT_EQ(records.size(), 1 + kPoints.size());
  const tb::Event first = tb::decode_event(records[0].data);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_TRUE(first.scalars.empty());
  EXPECT_GE(first.wall_time, before - 1e-6);
  EXPECT_LE(first.wall_time, after + 1e-6);

  const std::vector<ScalarEvent> got = kiln::train::read_tensorboard_scalars(path);
  ASSERT_EQ(got.size(), kPoints.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tag, kPoints[i].tag);
    EXPECT_EQ(got[i].step, kPoints[i].step);
    EXPECT_EQ(got[i].value, static_cast<float>(kPoints[i].value));  // stored as float, exactly
    EXPECT_GE(got[i].wall_time, first.wall_time);
    EXPECT_LE(got[i].wall_time, after + 1e-6);
  }
}

TEST(TensorBoard, DestructorFlushes) {
  kt::TempDir dir("kiln_tb");
  std::string path;
  {
    TensorBoardWriter w(dir.path);
    w.scalar("x", 7, 1.0);
    path = w.path();
  }
  const auto got = kiln::train::read_tensorboard_scalars(path);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].step, 7);
}

TEST(TensorBoard, FlippedByteIsReportedWithFileAndOffset) {
  kt::TempDir dir("kiln_tb");
  const std::string path = write_points(dir.path);
  const std::string good = kt::read_bytes(path);
  const auto records = kiln::io::split_tfrecords(good, path);
  const kiln::io::TFRecord& last = records.back();
  const std::size_t data_at = last.offset + 12 + last.data.size() / 2;

  std::string bad = good;
  bad[data_at] = static_cast<char>(bad[data_at] ^ 0x01);
  kt::write_bytes(path, bad);
  expect_error_mentions([&] { kiln::train::read_tensorboard_scalars(path); },
                        {path, "offset " + std::to_string(last.offset), "data CRC"});

  bad = good;
  bad[last.offset + 3] = static_cast<char>(bad[last.offset + 3] ^ 0x40);  // in the length field
  kt::write_bytes(path, bad);
  expect_error_mentions([&] { kiln::train::read_tensorboard_scalars(path); },
                        {path, "offset " + std::to_string(last.offset), "length CRC"});
}

TEST(TensorBoard, TruncatedFileIsReported) {
  kt::TempDir dir("kiln_tb");
  const std::string path = write_points(dir.path);
  const std::string good = kt::read_bytes(path);
  const std::uint64_t last = kiln::io::split_tfrecords(good, path).back().offset;

  for (std::size_t keep : {good.size() - 1, std::size_t(last + 5), std::size_t(last + 12)}) {
    kt::write_bytes(path, good.substr(0, keep));
    expect_error_mentions([&] { kiln::train::read_tensorboard_scalars(path); },
                          {path, "offset " + std::to_string(last), "truncated"});
  }
  kt::write_bytes(path, good.substr(0, last));  // cut between records: every whole record stays readable
  EXPECT_EQ(kiln::train::read_tensorboard_scalars(path).size(), kPoints.size() - 1);
}

TEST(TensorBoard, ValidFramingAroundAMalformedEventIsReported) {
  kt::TempDir dir("kiln_tb");
  const std::string path = dir.file("events.out.tfevents.bad");
  std::string file;
  kiln::io::append_tfrecord(file, bytes_of({0x2a, 0x05, 0x0a}));  // summary length runs past the end
  kt::write_bytes(path, file);
  expect_error_mentions([&] { kiln::train::read_tensorboard_scalars(path); }, {path, "offset 0"});
}

TEST(TensorBoard, TwoWritersInOneFolderMakeTwoFiles) {
  kt::TempDir dir("kiln_tb");
  TensorBoardWriter a(dir.path);
  TensorBoardWriter b(dir.path);
  EXPECT_NE(a.path(), b.path());
  a.scalar("a", 1, 1.0);
  b.scalar("b", 2, 2.0);
  a.flush();
  b.flush();
  EXPECT_EQ(dir.entries().size(), 2u);
  const auto in_a = kiln::train::read_tensorboard_scalars(a.path());
  const auto in_b = kiln::train::read_tensorboard_scalars(b.path());
  ASSERT_EQ(in_a.size(), 1u);
  ASSERT_EQ(in_b.size(), 1u);
  EXPECT_EQ(in_a[0].tag, "a");
  EXPECT_EQ(in_b[0].tag, "b");
}

TEST(TensorBoard, MissingFolderNamesTheFile) {
  kt::TempDir dir("kiln_tb");
  const std::string missing = dir.file("no/such/run");
  expect_error_mentions([&] { TensorBoardWriter w(missing); },
                        {missing + "/events.out.tfevents.", std::strerror(ENOENT)});
  expect_error_mentions([&] { kiln::train::read_tensorboard_scalars(missing); }, {missing, std::strerror(ENOENT)});
}

}  // namespace

#include "train/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "io/proto_wire.h"
#include "io/tfrecord.h"
#include "kiln/error.h"

namespace kiln::train {

namespace proto = io::proto;

namespace {

// Field numbers of event.proto and summary.proto.
constexpr std::uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
constexpr std::uint32_t kSummaryValue = 1;
constexpr std::uint32_t kValueTag = 1, kValueSimpleValue = 2;

// proto3 leaves a scalar field out when it holds its default; a double counts as default only when
// all its bits are zero (so -0.0 is written), as in protobuf's own serializer.
void put_wall_time(std::string& out, double wall_time) {
  if (wall_time != 0.0 || std::signbit(wall_time)) proto::put_double(out, kEventWallTime, wall_time);
}

void put_step(std::string& out, std::int64_t step) {
  if (step != 0) proto::put_int64(out, kEventStep, step);
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// events.out.tfevents.<seconds>.<host>.<pid>[.<n>].kiln. TensorBoard only needs "tfevents" in the
// name; the rest follows TensorFlow's writers. Ten digits keep the seconds sorting as text.
std::string event_file_name(long long seconds, int attempt) {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%010lld", seconds);
  std::string name = std::string("events.out.tfevents.") + secs + "." + hostname() + "." + std::to_string(::getpid());
  if (attempt > 0) name += "." + std::to_string(attempt);
  return name + ".kiln";
}

// Creates a new file (O_EXCL: another writer's file is never reused) and returns it with its path.
std::FILE* create_event_file(const std::string& run_dir, std::string* path) {
  const auto seconds = static_cast<long long>(detail::unix_time_now());
  for (int attempt = 0;; ++attempt) {
    *path = run_dir + "/" + event_file_name(seconds, attempt);
    const int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) KILN_FAIL("cannot create the TensorBoard event file ", *path, ": ", std::strerror(errno));
    std::FILE* f = ::fdopen(fd, "wb");
    if (!f) {
      const int err = errno;
      ::close(fd);
      KILN_FAIL("cannot open the TensorBoard event file ", *path, ": ", std::strerror(err));
    }
    return f;
  }
}

std::vector<std::pair<std::string, float>> decode_summary(std::string_view summary) {
  std::vector<std::pair<std::string, float>> scalars;
  proto::Reader values(summary);
  for (proto::Field v; values.next(&v);) {
    if (v.number != kSummaryValue) continue;
    std::string tag;
    bool has_simple_value = false;
    float simple_value = 0;
    proto::Reader fields(v.as_bytes());
    for (proto::Field f; fields.next(&f);) {
      if (f.number == kValueTag) tag = std::string(f.as_bytes());
      if (f.number == kValueSimpleValue) {
        simple_value = f.as_float();
        has_simple_value = true;
      }
    }
    if (has_simple_value) scalars.emplace_back(std::move(tag), simple_value);
  }
  return scalars;
}

}  // namespace

// ---- events ---------------------------------------------------------------------------------------

namespace detail {

double unix_time_now() {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::microseconds>(since_epoch).count() * 1e-6;
}

std::string encode_scalar_event(double wall_time, std::int64_t step, const std::string& tag, float value) {
  std::string v;
  proto::put_bytes(v, kValueTag, tag);
  proto::put_float(v, kValueSimpleValue, value);  // in a oneof, so written even when 0
  std::string summary;
  proto::put_bytes(summary, kSummaryValue, v);
  std::string event;
  put_wall_time(event, wall_time);
  put_step(event, step);
  proto::put_bytes(event, kEventSummary, summary);
  return event;
}

std::string encode_file_version_event(double wall_time, const std::string& version) {
  std::string event;
  put_wall_time(event, wall_time);
  proto::put_bytes(event, kEventFileVersion, version);
  return event;
}

Event decode_event(const std::string& bytes) {
  Event e;
  proto::Reader fields(bytes);
  for (proto::Field f; fields.next(&f);) {
    switch (f.number) {
      case kEventWallTime: e.wall_time = f.as_double(); break;
      case kEventStep: e.step = f.as_int64(); break;
      case kEventFileVersion: e.file_version = std::string(f.as_bytes()); break;
      case kEventSummary:  // a repeated sub-message field merges, as protobuf parsers do
        for (auto& s : decode_summary(f.as_bytes())) e.scalars.push_back(std::move(s));
        break;
      default: break;  // graphs, log messages, session logs: not kiln's
    }
  }
  return e;
}

}  // namespace detail

// ---- writer ---------------------------------------------------------------------------------------

TensorBoardWriter::TensorBoardWriter(const std::string& run_dir) {
  file_.reset(create_event_file(run_dir, &path_));
  write_event(detail::encode_file_version_event(detail::unix_time_now(), detail::kFileVersion));
  flush();  // the file is recognisable at once, and a full disk shows up here rather than later
}

void TensorBoardWriter::scalar(const std::string& tag, std::int64_t step, double value) {
  KILN_CHECK(!tag.empty(), "TensorBoard scalar with an empty tag (file ", path_, ")");
  write_event(detail::encode_scalar_event(detail::unix_time_now(), step, tag, static_cast<float>(value)));
}

void TensorBoardWriter::write_event(const std::string& event) {
  std::string record;
  io::append_tfrecord(record, event);
  if (std::fwrite(record.data(), 1, record.size(), file_.get()) != record.size())
    KILN_FAIL("cannot write the TensorBoard event file ", path_, ": ", std::strerror(errno));
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_.get()) != 0)
    KILN_FAIL("cannot write the TensorBoard event file ", path_, ": ", std::strerror(errno));
}

// ---- reader ---------------------------------------------------------------------------------------

std::vector<ScalarEvent> read_tensorboard_scalars(const std::string& path) {
  std::vector<ScalarEvent> out;
  for (const io::TFRecord& record : io::read_tfrecords(path)) {
    detail::Event e;
    try {
      e = detail::decode_event(record.data);
    } catch (const Error& err) {
      KILN_FAIL(path, ": record at byte offset ", record.offset, " is not a valid event: ", err.what());
    }
    for (auto& [tag, value] : e.scalars) out.push_back({e.step, std::move(tag), value, e.wall_time});
  }
  return out;
}

}  // namespace kiln::train

// TensorBoard event files, so `tensorboard --logdir runs` draws kiln's curves.
//
// An event file is a TFRecord file (io/tfrecord.h) of serialized tensorflow.Event protobufs
// (tensorflow/core/util/event.proto, framework/summary.proto), encoded by hand here:
//   Event         { double wall_time = 1; int64 step = 2;
//                   oneof what { string file_version = 3; Summary summary = 5; } }
//   Summary       { repeated Value value = 1; }
//   Summary.Value { string tag = 1; float simple_value = 2; }
// The first record is the file_version event "brain.Event:2"; each scalar() adds one event with one
// value. Fields at their proto3 default (step 0, wall_time 0) are left out, as protobuf's own
// serializer does, so the bytes match what TensorFlow would write.
//
// Resuming: a writer never appends. A resumed run opens a NEW events file in the same folder and
// TensorBoard merges every events file of a folder into one run. The time in the file name is
// zero-padded, so names sort in the order the files were created, as TensorBoard reads them.
//
// Writes are buffered; flush() makes them visible to a TensorBoard watching the folder (and to a
// reader after a crash). Not thread-safe: calls on one writer must not overlap.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kiln::train {

class TensorBoardWriter {
 public:
  // Creates run_dir/events.out.tfevents.<unix-seconds>.<hostname>.<pid>.kiln (run_dir must exist)
  // and writes the file_version event. Never overwrites: should that name be taken (a second
  // writer in the same second and process), a counter goes before ".kiln". kiln::Error naming the
  // file and strerror when it cannot be created or written.
  explicit TensorBoardWriter(const std::string& run_dir);

  // One scalar point of the curve `tag` (e.g. "train/loss"), stored as a float, as TensorBoard
  // stores simple values. kiln::Error naming the file on a write failure.
  void scalar(const std::string& tag, std::int64_t step, double value);
  void flush();  // fflush; no fsync (curves are not worth a disk sync per call)
  const std::string& path() const { return path_; }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  void write_event(const std::string& event);

  std::string path_;
  std::unique_ptr<std::FILE, Closer> file_;
};

struct ScalarEvent {
  std::int64_t step;
  std::string tag;
  float value;
  double wall_time;
};

// Every scalar (simple_value) of an event file, in file order; other events and values (the
// file_version, graphs, TF2's tensor-valued summaries) are skipped. Each record's length and data
// CRCs are verified: kiln::Error naming the file and the record's byte offset on corruption,
// truncation or a malformed event.
std::vector<ScalarEvent> read_tensorboard_scalars(const std::string& path);

namespace detail {

constexpr const char* kFileVersion = "brain.Event:2";

// The serialized Event (without TFRecord framing). Exposed for tests that pin the bytes.
std::string encode_scalar_event(double wall_time, std::int64_t step, const std::string& tag, float value);
std::string encode_file_version_event(double wall_time, const std::string& version);

// A decoded Event, reduced to what kiln writes.
struct Event {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;  // empty unless it is the file_version event
  std::vector<std::pair<std::string, float>> scalars;  // (tag, simple_value) of its summary
};
Event decode_event(const std::string& bytes);  // kiln::Error on malformed protobuf

double unix_time_now();  // seconds since the epoch, microsecond resolution

}  // namespace detail

}  // namespace kiln::train

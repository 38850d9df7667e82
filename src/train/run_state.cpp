// The run state in checkpoint metadata: every key is written and read here, side by side.
#include "train/run_state.h"

#include <cstdlib>
#include <sstream>

namespace kiln::train::detail {

namespace {
constexpr const char* kFormat = "kiln-checkpoint-1";

// One record per epoch, nine numbers each, exact (%.17g): "e,loss,acc,...;e,loss,...;".
std::string encode_history(const std::vector<EpochMetrics>& h) {
  std::string s;
  for (const auto& m : h) {
    for (double v : {static_cast<double>(m.epoch), m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.epoch_s,
                     m.images_per_s, m.data_wait_pct, m.lr})
      s += fmt_double(v) + ",";
    s.back() = ';';
  }
  return s;
}

std::vector<EpochMetrics> decode_history(const std::string& s, const std::string& path) {
  std::vector<EpochMetrics> h;
  std::stringstream ss(s);
  std::string rec;
  while (std::getline(ss, rec, ';')) {
    if (rec.empty()) continue;
    std::vector<double> v;
    std::stringstream rs(rec);
    std::string item;
    while (std::getline(rs, item, ',')) v.push_back(parse_double(item, path + ": history"));
    KILN_CHECK(v.size() == 9, path, ": malformed history record '", rec, "'");
    EpochMetrics m;
    m.epoch = static_cast<int>(v[0]);
    m.train_loss = v[1], m.train_acc = v[2], m.test_loss = v[3], m.test_acc = v[4];
    m.epoch_s = v[5], m.images_per_s = v[6], m.data_wait_pct = v[7], m.lr = v[8];
    h.push_back(m);
  }
  return h;
}

class Reader {
 public:
  Reader(const Metadata& md, const std::string& path) : md_(md), path_(path) {}
  const std::string& text(const char* key) const {
    auto it = md_.find(key);
    KILN_CHECK(it != md_.end(), path_, ": checkpoint metadata has no '", key, "'");
    return it->second;
  }
  double number(const char* key) const { return parse_double(text(key), path_ + ": " + key); }
  std::int64_t integer(const char* key) const { return static_cast<std::int64_t>(number(key)); }
  std::uint64_t u64(const char* key) const {
    const std::string& v = text(key);
    char* end = nullptr;
    const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
    KILN_CHECK(!v.empty() && end && *end == '\0' && v[0] != '-', path_, ": metadata '", key, "' = '", v,
               "' is not a number");
    return static_cast<std::uint64_t>(x);
  }

 private:
  const Metadata& md_;
  const std::string& path_;
};
}  // namespace

void encode_run_state(const RunState& s, const Config& config, const ModelSpec& spec, Metadata& md) {
  encode_spec(spec, md);
  md["format"] = kFormat;
  md["optimizer"] = config.optimizer;
  md["dataset"] = config.dataset;
  md["config"] = config.to_json();
  md["epoch"] = std::to_string(s.epoch);
  md["batch"] = std::to_string(s.batch);
  md["global_step"] = std::to_string(s.global_step);
  md["epoch_loss_sum"] = fmt_double(s.loss_sum);
  md["epoch_correct"] = std::to_string(s.correct);
  md["epoch_seen"] = std::to_string(s.seen);
  md["epoch_elapsed"] = fmt_double(s.elapsed);
  md["epoch_wait"] = fmt_double(s.wait);
  md["seed"] = std::to_string(s.seed);
  md["batch_size"] = std::to_string(s.batch_size);
  md["dropout_rng"] = std::to_string(s.dropout_offset);
  md["train_images"] = std::to_string(s.train_images);
  md["history"] = encode_history(s.history);
}

RunState decode_run_state(const Metadata& md, const std::string& path) {
  const Reader r(md, path);
  RunState s;
  s.epoch = static_cast<int>(r.integer("epoch"));
  s.batch = r.integer("batch");
  s.global_step = r.integer("global_step");
  s.loss_sum = r.number("epoch_loss_sum");
  s.correct = r.integer("epoch_correct");
  s.seen = r.integer("epoch_seen");
  s.elapsed = r.number("epoch_elapsed");
  s.wait = r.number("epoch_wait");
  s.seed = r.u64("seed");
  s.dropout_offset = r.u64("dropout_rng");
  s.batch_size = static_cast<std::int64_t>(r.u64("batch_size"));
  if (md.count("train_images")) s.train_images = static_cast<std::int64_t>(r.u64("train_images"));
  s.history = decode_history(r.text("history"), path);
  return s;
}

}  // namespace kiln::train::detail

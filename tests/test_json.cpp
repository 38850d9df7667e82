// io/json.h and the JSON kiln writes: floats written as the user gave them (0.05, not
// 0.05000000074505806) and read back to the same bits, metrics lines that are valid JSON, and the
// strict parser's limits on untrusted text.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "io/json.h"
#include "kiln/error.h"
#include "kiln/train.h"

namespace {

using kiln::io::Json;

std::uint32_t bits(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// The number after "key": in compact JSON text, as written.
std::string number_text(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const std::size_t at = json.find(k);
  if (at == std::string::npos) return "";
  const std::size_t begin = at + k.size();
  return json.substr(begin, json.find_first_of(",}", begin) - begin);
}

// `v` written in a JSON object and read back: as text through strtof, and as nlohmann's double.
void expect_round_trip(float v) {
  SCOPED_TRACE(kiln::io::shortest_decimal(v));
  const std::string text = kiln::io::to_text(Json{{"x", kiln::io::json_number(v)}});
  EXPECT_EQ(bits(std::strtof(number_text(text, "x").c_str(), nullptr)), bits(v)) << text;
  EXPECT_EQ(bits(static_cast<float>(Json::parse(text)["x"].get<double>())), bits(v)) << text;
}

TEST(Json, ConfigFloatsAreWrittenAsGiven) {
  kiln::train::Config c;
  c.lr = 0.05f;
  c.momentum = 0.9f;
  c.weight_decay = 1e-4f;
  const std::string text = c.to_json();
  EXPECT_NE(text.find("\"lr\":0.05,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"momentum\":0.9,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"weight_decay\":0.0001,"), std::string::npos) << text;

  const Json parsed = Json::parse(text);
  EXPECT_EQ(bits(std::strtof(number_text(text, "lr").c_str(), nullptr)), bits(c.lr));
  EXPECT_EQ(bits(std::strtof(number_text(text, "momentum").c_str(), nullptr)), bits(c.momentum));
  EXPECT_EQ(bits(static_cast<float>(parsed["lr"].get<double>())), bits(c.lr));
  EXPECT_EQ(bits(static_cast<float>(parsed["momentum"].get<double>())), bits(c.momentum));
}

TEST(Json, ConfigKeepsItsKeysAndOrder) {
  kiln::train::Config c;
  c.model.hidden = {64, 32};
  const Json parsed = Json::parse(c.to_json());
  std::vector<std::string> keys;
  for (const auto& [k, v] : parsed.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"model", "hidden", "dataset", "epochs", "batch_size", "optimizer", "lr",
                                            "momentum", "nesterov", "weight_decay", "schedule", "resize", "groups",
                                            "warmup_epochs", "step_epochs", "gamma", "seed", "workers", "device"}));
  EXPECT_EQ(parsed["hidden"], Json::parse("[64,32]"));
  EXPECT_EQ(parsed["device"], "cpu");
  c.model.arch = "alexnet";
  EXPECT_FALSE(Json::parse(c.to_json()).contains("hidden"));
}

TEST(Json, ShortestDecimalOfAwkwardFloats) {
  const std::pair<float, const char*> cases[] = {
      {0.05f, "0.05"},   {0.9f, "0.9"},     {1e-3f, "0.001"}, {3.0f, "3"},
      {0.1f, "0.1"},     {1e-8f, "1e-08"},  {FLT_MAX, "3.4028235e+38"},
      {FLT_MIN, "1.1754944e-38"}, {-2.5f, "-2.5"}, {0.0f, "0"}, {16777216.0f, "16777216"},
  };
  for (const auto& [v, text] : cases) {
    EXPECT_EQ(kiln::io::shortest_decimal(v), text);
    expect_round_trip(v);
  }
  // Whole numbers are written as nlohmann writes every whole double: with ".0", always.
  EXPECT_EQ(kiln::io::to_text(Json{{"x", kiln::io::json_number(3.0f)}}), "{\"x\":3.0}");
  EXPECT_EQ(kiln::io::to_text(Json{{"x", kiln::io::json_number(1.0f)}}), "{\"x\":1.0}");
}

TEST(Json, EveryFloatRoundTrips) {
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t b = rng();
    float v;
    std::memcpy(&v, &b, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string text = kiln::io::shortest_decimal(v);
    ASSERT_EQ(bits(std::strtof(text.c_str(), nullptr)), bits(v)) << text;
    ASSERT_EQ(bits(static_cast<float>(std::strtod(text.c_str(), nullptr))), bits(v)) << text;
  }
}

TEST(Json, NonFiniteFloatsBecomeNull) {
  EXPECT_EQ(kiln::io::to_text(Json{{"x", kiln::io::json_number(std::numeric_limits<float>::quiet_NaN())}}),
            "{\"x\":null}");
  EXPECT_EQ(kiln::io::to_text(Json{{"x", kiln::io::json_number(INFINITY)}}), "{\"x\":null}");
}

TEST(Json, EpochMetricsLineIsExactJson) {
  kiln::train::EpochMetrics m;
  m.epoch = 3;
  m.train_loss = 0.1;
  m.test_loss = 2.0 / 3.0;
  m.train_acc = 0.9375;
  m.test_acc = std::nan("");  // no test set: JSON has no NaN
  m.lr = 0.05f;               // the schedule's double of a float
  const std::string text = m.to_json();
  EXPECT_EQ(text.rfind("{\"epoch\":3,\"train_loss\":0.1,\"train_acc\":0.9375,", 0), 0u) << text;
  const Json parsed = Json::parse(text);
  EXPECT_EQ(parsed["test_loss"].get<double>(), m.test_loss);
  EXPECT_EQ(parsed["lr"].get<double>(), m.lr);
  EXPECT_TRUE(parsed["test_acc"].is_null());
  EXPECT_TRUE(parsed.contains("data_wait_pct"));
}

TEST(Json, InvalidUtf8IsReplacedInOutputButDetected) {
  const std::string bad = "image\xFF.png";
  EXPECT_FALSE(kiln::io::is_valid_utf8(bad));
  EXPECT_TRUE(kiln::io::is_valid_utf8("h\xC3\xA9llo"));
  EXPECT_EQ(kiln::io::to_text(Json(bad)), "\"image\xEF\xBF\xBD.png\"");
}

// ---- parse_strict -----------------------------------------------------------------------------------

std::string strict_error(const std::string& text) {
  try {
    kiln::io::parse_strict(text, "file.st", "header");
  } catch (const kiln::Error& e) {
    return e.what();
  }
  return "";
}

TEST(Json, StrictParserBoundsNesting) {
  const int max = kiln::io::kMaxJsonDepth;
  const std::string ok = std::string(max, '[') + std::string(max, ']');
  EXPECT_NO_THROW(kiln::io::parse_strict(ok, "file.st", "header"));
  const std::string deep = std::string(max + 1, '[') + std::string(max + 1, ']');
  EXPECT_EQ(strict_error(deep), "file.st: malformed JSON header: nesting deeper than 64 levels");
  EXPECT_NE(strict_error(std::string(100000, '[')).find("nesting deeper"), std::string::npos);
}

TEST(Json, StrictParserRejectsWhatNlohmannWouldAccept) {
  EXPECT_EQ(strict_error(R"({"a":{"b":1,"b":2}})"), "file.st: malformed JSON header: duplicate key \"b\"");
  EXPECT_NE(strict_error("\xEF\xBB\xBF{}").find("byte-order mark"), std::string::npos);
  EXPECT_NE(strict_error("{} // comment").find("after the JSON value"), std::string::npos);
  EXPECT_NE(strict_error("{\"a\":[1 2]}"), "");
  // The same key in two objects is fine, and keys keep their order.
  const Json j = kiln::io::parse_strict(R"({"z":{"k":1},"a":{"k":2}})", "file.st", "header");
  EXPECT_EQ(j.begin().key(), "z");
}

TEST(Json, StrictParserNamesTheOffendingByte) {
  EXPECT_EQ(strict_error(R"({"a":1,})"), "file.st: malformed JSON header at byte 7: expected a string key, found '}'");
  EXPECT_EQ(strict_error(R"({"a":[02]})"), "file.st: malformed JSON header at byte 7: invalid number (leading zero)");
  EXPECT_EQ(strict_error(R"({"a":1} x)"),
            "file.st: malformed JSON header at byte 8: unexpected 'x' after the JSON value");
  EXPECT_EQ(strict_error("{\"a"), "file.st: malformed JSON header at byte 3: unterminated string");
}

}  // namespace

// The architecture and optimizer registries, walked entry by entry so that a new entry is tested
// without a new test: every architecture builds, takes its prepared input and returns one logit
// per class; its spec round-trips through checkpoint metadata; its own weights are recognised as
// it; every optimizer is created by name, steps, and restores its state; unknown names are one
// error that lists the known ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "kiln/train.h"
#include "optim/registry.h"
#include "test_util.h"
#include "train/architectures.h"
#include "train/checkpoint.h"

namespace {

using kiln::Device;
using kiln::Generator;
using kiln::Tensor;
using kiln::io::NamedTensors;
using kiln::train::Architecture;
using kiln::train::ModelSpec;

// A small valid spec for `a`: its default channels, its smallest accepted size up to 64, 5 classes.
ModelSpec small_spec(const Architecture& a) {
  ModelSpec s;
  s.arch = a.name;
  const std::int64_t size = std::max(a.min_image_size, std::min<std::int64_t>(a.default_input[1], 64));
  s.input = {a.default_input[0], size, size};
  s.classes = 5;
  s.class_names = {"a", "b", "c", "d", "e"};
  s.mean.assign(static_cast<std::size_t>(s.input[0]), 0.5f);
  s.std.assign(static_cast<std::size_t>(s.input[0]), 0.25f);
  return s;
}

void expect_same_spec(const ModelSpec& got, const ModelSpec& want) {
  EXPECT_EQ(got.arch, want.arch);
  EXPECT_EQ(got.hidden, want.hidden);
  EXPECT_EQ(got.groups, want.groups);
  EXPECT_EQ(got.input, want.input);
  EXPECT_EQ(got.classes, want.classes);
  EXPECT_EQ(got.class_names, want.class_names);
  EXPECT_EQ(got.mean, want.mean);
  EXPECT_EQ(got.std, want.std);
  EXPECT_EQ(got.eval_transform, want.eval_transform);
}

ModelSpec round_trip(const ModelSpec& spec) {
  kiln::train::detail::Metadata md;
  kiln::train::detail::encode_spec(spec, md);
  return kiln::train::detail::decode_spec(md, "round-trip.safetensors");
}

// ---- architectures -----------------------------------------------------------------------------

TEST(ArchitectureRegistry, NamesAreUniqueAndListed) {
  const std::vector<std::string> names = kiln::train::architecture_names();
  ASSERT_EQ(names.size(), kiln::train::architectures().size());
  for (const std::string& n : names) {
    EXPECT_EQ(std::count(names.begin(), names.end(), n), 1) << n;
    EXPECT_EQ(kiln::train::architecture(n).name, n);
  }
  for (const char* expected : {"mlp", "alexnet", "alexnet2012"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
}

TEST(ArchitectureRegistry, EveryArchitectureBuildsAndClassifiesItsInput) {
  for (const Architecture& a : kiln::train::architectures()) {
    SCOPED_TRACE(a.name);
    ASSERT_NE(a.build, nullptr);
    const ModelSpec spec = small_spec(a);
    Generator gen(3);
    auto model = kiln::train::build_model(spec, gen, Device::cpu());
    ASSERT_TRUE(model);
    EXPECT_GT(model->parameter_count(), 0);
    model->set_training(false);
    kiln::NoGradGuard no_grad;
    const Tensor images = Tensor::zeros({2, spec.input[0], spec.input[1], spec.input[2]}, kiln::DType::UInt8);
    const Tensor logits = (*model)(kiln::train::prepare_input(spec, images));
    EXPECT_EQ(logits.shape(), (kiln::Shape{2, spec.classes}));
  }
}

TEST(ArchitectureRegistry, ImagesBelowTheMinimumAreRefusedWithAResizeHint) {
  for (const Architecture& a : kiln::train::architectures()) {
    if (a.min_image_size <= 1) continue;
    SCOPED_TRACE(a.name);
    ModelSpec spec = small_spec(a);
    spec.input[1] = spec.input[2] = a.min_image_size - 1;
    Generator gen(3);
    kt::expect_error_naming([&] { kiln::train::build_model(spec, gen, Device::cpu()); },
                            {a.name, "--resize " + std::to_string(a.default_input[1])}, a.name + " too small");
  }
}

TEST(ArchitectureRegistry, EverySpecRoundTripsThroughCheckpointMetadata) {
  for (const Architecture& a : kiln::train::architectures()) {
    SCOPED_TRACE(a.name);
    const ModelSpec spec = small_spec(a);
    expect_same_spec(round_trip(spec), spec);
  }
}

TEST(ArchitectureRegistry, OwnFieldsAreStoredOnlyByTheirArchitecture) {
  ModelSpec mlp = small_spec(kiln::train::architecture("mlp"));
  mlp.hidden = {24, 12};
  ModelSpec paper = small_spec(kiln::train::architecture("alexnet2012"));
  paper.groups = 2;
  const ModelSpec tv = small_spec(kiln::train::architecture("alexnet"));
  expect_same_spec(round_trip(mlp), mlp);
  expect_same_spec(round_trip(paper), paper);

  kiln::train::detail::Metadata md_mlp, md_paper, md_tv;
  kiln::train::detail::encode_spec(mlp, md_mlp);
  kiln::train::detail::encode_spec(paper, md_paper);
  kiln::train::detail::encode_spec(tv, md_tv);
  EXPECT_EQ(md_mlp.at("hidden"), "24,12");
  EXPECT_EQ(md_mlp.count("groups"), 0u);
  EXPECT_EQ(md_paper.at("groups"), "2");
  EXPECT_EQ(md_paper.count("hidden"), 0u);
  EXPECT_EQ(md_tv.count("hidden") + md_tv.count("groups"), 0u);

  // Checkpoints written before the registry carry both keys for every architecture: still readable.
  md_tv["hidden"] = "512,256", md_tv["groups"] = "1";
  expect_same_spec(kiln::train::detail::decode_spec(md_tv, "old.safetensors"), tv);

  kiln::train::Config c;
  c.model = mlp;
  EXPECT_NE(c.to_json().find("\"model\":\"mlp\",\"hidden\":[24,12]"), std::string::npos) << c.to_json();
  c.model = paper;
  EXPECT_NE(c.to_json().find("\"groups\":2"), std::string::npos) << c.to_json();
  EXPECT_EQ(c.to_json().find("hidden"), std::string::npos) << c.to_json();
}

TEST(ArchitectureRegistry, EveryArchitectureRecognisesItsOwnWeights) {
  for (const Architecture& a : kiln::train::architectures()) {
    SCOPED_TRACE(a.name);
    ModelSpec spec = small_spec(a);
    if (a.name == "mlp") spec.hidden = {24, 12};
    if (a.name == "alexnet2012") spec.groups = 2;
    Generator gen(5);
    const NamedTensors weights = kiln::train::build_model(spec, gen, Device::cpu())->named_parameters();
    const ModelSpec inferred = kiln::train::detail::infer_spec(weights, "weights.safetensors");
    EXPECT_EQ(inferred.arch, a.name);
    EXPECT_EQ(inferred.classes, spec.classes);
    EXPECT_EQ(inferred.input[0], spec.input[0]);
    EXPECT_EQ(inferred.groups, spec.groups);
    if (a.name == "mlp") {
      EXPECT_EQ(inferred.hidden, spec.hidden);
    }
    EXPECT_EQ(inferred.class_names.size(), static_cast<std::size_t>(spec.classes));
  }
  kt::expect_error_naming([] { kiln::train::detail::infer_spec({}, "empty.safetensors"); },
                          {"empty.safetensors", "no MLP weights"}, "nothing recognised");
}

TEST(ArchitectureRegistry, FieldsOfOtherArchitecturesAreRejected) {
  for (const Architecture& a : kiln::train::architectures()) {
    SCOPED_TRACE(a.name);
    ModelSpec spec = small_spec(a);
    spec.groups = 3;  // valid for no architecture
    kt::expect_error_naming([&] { a.check_fields(spec); }, {"--groups"}, a.name + " groups 3");
    kiln::train::Config c;
    c.model = spec;
    kt::expect_error_naming([&] { c.validate(); }, {"--groups"}, a.name + " validate groups 3");
  }
  ModelSpec mlp = small_spec(kiln::train::architecture("mlp"));
  mlp.groups = 2;
  kt::expect_error_naming([&] { kiln::train::architecture("mlp").check_fields(mlp); }, {"--groups 2", "alexnet2012"},
                          "mlp with groups 2");
}

TEST(ArchitectureRegistry, UnknownNamesListTheKnownOnes) {
  std::initializer_list<std::string> all = {"resnet", "mlp", "alexnet", "alexnet2012"};
  kt::expect_error_naming([] { kiln::train::architecture("resnet"); }, all, "lookup");
  kt::expect_error_naming([] { kiln::train::architecture("resnet", "--model"); }, {"unknown --model 'resnet'"},
                          "lookup for a flag");
  ModelSpec spec;
  spec.arch = "resnet";
  Generator gen(1);
  kt::expect_error_naming([&] { kiln::train::build_model(spec, gen, Device::cpu()); }, all, "build_model");
  kiln::train::Config c;
  c.model.arch = "resnet";
  kt::expect_error_naming([&] { c.validate(); }, {"--model", "resnet", "mlp, alexnet, alexnet2012"}, "validate");
  kiln::train::detail::Metadata md;
  kiln::train::detail::encode_spec(ModelSpec{}, md);
  md["arch"] = "resnet";
  kt::expect_error_naming([&] { kiln::train::detail::decode_spec(md, "run/model.safetensors"); },
                          {"run/model.safetensors", "resnet", "mlp, alexnet, alexnet2012"}, "decode_spec");
}

// A hand-edited or damaged model file: sizes beyond what kiln trains, or a normalisation that is not
// finite, fail when the spec is read, naming the file and the field, not as a huge allocation later.
TEST(ArchitectureRegistry, DecodeSpecBoundsEveryField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"classes", "99999999999"}, {"input", "1,99999999,28"}, {"input", "100,28,28"},
      {"mean", "nan"},            {"std", "-1"},              {"mean", "0.1,0.2,0.3"}};
  const std::vector<std::string> needles = {"classes must be in [2, 1048576]", "input height must be in",
                                            "input channels must be in",     "mean nan",
                                            "std -1",                          "3 mean and 1 std"};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    kiln::train::detail::Metadata md;
    kiln::train::detail::encode_spec(ModelSpec{}, md);
    md[cases[i].first] = cases[i].second;
    kt::expect_error_naming([&] { kiln::train::detail::decode_spec(md, "run/model.safetensors"); },
                            {"run/model.safetensors", needles[i]}, cases[i].first + "=" + cases[i].second);
  }
}

TEST(ArchitectureRegistry, DefaultLearningRates) {
  for (const Architecture& a : kiln::train::architectures())
    for (const std::string& o : kiln::optim::known_names()) {
      const float lr = kiln::train::default_lr(a.name, o);
      EXPECT_TRUE(std::isfinite(lr) && lr > 0.0f) << a.name << " with " << o;
    }
  EXPECT_FLOAT_EQ(kiln::train::default_lr("mlp", "sgd"), 0.05f);
  EXPECT_FLOAT_EQ(kiln::train::default_lr("alexnet", "sgd"), 0.01f);
  EXPECT_FLOAT_EQ(kiln::train::default_lr("alexnet2012", "sgd"), 0.01f);
  for (const char* arch : {"mlp", "alexnet"})
    for (const char* opt : {"adam", "adamw"}) EXPECT_FLOAT_EQ(kiln::train::default_lr(arch, opt), 1e-3f) << arch << opt;
  kt::expect_error_naming([] { kiln::train::default_lr("mlp", "rmsprop"); }, {"--optimizer", "rmsprop"}, "optimizer");
}

// ---- optimizers ----------------------------------------------------------------------------------

NamedTensors one_parameter(const std::vector<float>& values) {
  Tensor p = Tensor::from_vector(values, {static_cast<std::int64_t>(values.size())});
  p.set_requires_grad(true);
  return {{"w", p}};
}

// One step on w = values with gradient 1 everywhere; returns w after it.
std::vector<float> step_once(const std::string& name, const kiln::optim::Hyper& hyper,
                             const std::vector<float>& values) {
  NamedTensors params = one_parameter(values);
  auto opt = kiln::optim::create(name, params, hyper);
  params[0].second.set_grad(Tensor::full({static_cast<std::int64_t>(values.size())}, 1.0f));
  opt->step();
  return params[0].second.to_vector<float>();
}

TEST(OptimizerRegistry, EveryOptimizerCreatesStepsAndRestoresItsState) {
  const std::vector<std::string> names = kiln::optim::known_names();
  for (const char* expected : {"sgd", "adam", "adamw"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  for (const kiln::optim::OptimizerEntry& e : kiln::optim::optimizers()) {
    SCOPED_TRACE(e.name);
    EXPECT_FALSE(e.family.empty());
    NamedTensors params = one_parameter({1, 2, 3, 4});
    auto opt = kiln::optim::create(e.name, params, {0.1f, 0.9f, 0.0f, false});
    EXPECT_EQ(opt->name(), e.name);
    params[0].second.set_grad(Tensor::full({4}, 1.0f));
    opt->step();
    EXPECT_EQ(opt->steps(), 1);
    const std::vector<float> w = params[0].second.to_vector<float>();
    for (std::size_t i = 0; i < w.size(); ++i) EXPECT_LT(w[i], static_cast<float>(i + 1)) << "element " << i;

    auto fresh = kiln::optim::create(e.name, one_parameter({1, 2, 3, 4}), {0.1f, 0.9f, 0.0f, false});
    fresh->load_state(opt->state());
    EXPECT_EQ(fresh->steps(), 1);
  }
}

TEST(OptimizerRegistry, HyperParametersReachTheFactories) {
  const std::vector<float> w0{1, 2};
  // SGD, Nesterov momentum 0.9 on the first step (buffer = g): w - lr * (g + 0.9 g).
  const std::vector<float> sgd = step_once("sgd", {0.1f, 0.9f, 0.0f, true}, w0);
  for (std::size_t i = 0; i < w0.size(); ++i) EXPECT_NEAR(sgd[i], w0[i] - 0.19f, 1e-6f);
  // Adam's first step moves by lr whatever the gradient's size (L2 decay only rescales it);
  // AdamW shrinks the weights by lr * weight_decay on top.
  const std::vector<float> adam = step_once("adam", {0.1f, 0.0f, 0.1f, false}, w0);
  const std::vector<float> adamw = step_once("adamw", {0.1f, 0.0f, 0.1f, false}, w0);
  for (std::size_t i = 0; i < w0.size(); ++i) {
    EXPECT_NEAR(adam[i], w0[i] - 0.1f, 1e-5f);
    EXPECT_NEAR(adamw[i], w0[i] * (1 - 0.01f) - 0.1f, 1e-5f);
  }
}

TEST(OptimizerRegistry, UnknownNamesListTheKnownOnes) {
  kt::expect_error_naming([] { kiln::optim::lookup("rmsprop"); }, {"unknown optimizer 'rmsprop'", "sgd, adam, adamw"},
                          "lookup");
  kt::expect_error_naming([] { kiln::optim::create("rmsprop", one_parameter({1}), {}); }, {"rmsprop", "sgd"}, "create");
  kiln::train::Config c;
  c.optimizer = "rmsprop";
  kt::expect_error_naming([&] { c.validate(); }, {"--optimizer", "rmsprop", "sgd, adam, adamw"}, "validate");
}

}  // namespace

// ---- class names and the evaluation transform in checkpoint metadata ---------------------------------

TEST(CheckpointMetadata, ClassNamesWithNewlinesAndAnyTextRoundTrip) {
  ModelSpec spec = small_spec(kiln::train::architecture("mlp"));
  spec.class_names = {"a\nb", "c", "[d]", "\"quoted\", comma", "caf\xc3\xa9"};
  expect_same_spec(round_trip(spec), spec);
  kiln::train::detail::Metadata md;
  kiln::train::detail::encode_spec(spec, md);
  EXPECT_EQ(md.at("class_names").front(), '[') << "class names are stored as a JSON array";
}

TEST(CheckpointMetadata, NewlineSeparatedClassNamesOfOlderCheckpointsStillRead) {
  const ModelSpec spec = small_spec(kiln::train::architecture("mlp"));
  kiln::train::detail::Metadata md;
  kiln::train::detail::encode_spec(spec, md);
  md["class_names"] = "a\nb\nc\nd\ne";
  EXPECT_EQ(kiln::train::detail::decode_spec(md, "old.safetensors").class_names,
            (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  md["class_names"] = "";  // very old runs stored none
  EXPECT_TRUE(kiln::train::detail::decode_spec(md, "old.safetensors").class_names.empty());
}

TEST(CheckpointMetadata, MalformedClassNamesAreErrorsNamingTheFile) {
  const ModelSpec spec = small_spec(kiln::train::architecture("mlp"));
  kiln::train::detail::Metadata md;
  kiln::train::detail::encode_spec(spec, md);
  for (const char* bad : {"[\"a\", 2, \"c\", \"d\", \"e\"]", "[\"a\", \"b\"]", "[\"a\""}) {
    md["class_names"] = bad;
    kt::expect_error_naming([&] { kiln::train::detail::decode_spec(md, "bad.safetensors"); },
                            {"bad.safetensors", "class"}, bad);
  }
}

TEST(CheckpointMetadata, EvalTransformIsRecordedElseTheArchitecturesDefault) {
  for (const Architecture& a : kiln::train::architectures()) {
    SCOPED_TRACE(a.name);
    for (auto t : {kiln::data::EvalTransform::Resize, kiln::data::EvalTransform::CenterCrop}) {
      ModelSpec spec = small_spec(a);
      spec.eval_transform = t;
      EXPECT_EQ(round_trip(spec).eval_transform, t);
    }
    kiln::train::detail::Metadata md;
    kiln::train::detail::encode_spec(small_spec(a), md);
    md.erase("eval_transform");  // written before kiln recorded it
    EXPECT_EQ(kiln::train::detail::decode_spec(md, "old.safetensors").eval_transform, a.default_eval_transform);
    md["eval_transform"] = "squash";
    kt::expect_error_naming([&] { kiln::train::detail::decode_spec(md, "bad.safetensors"); },
                            {"bad.safetensors", "squash"}, "unknown transform");
  }
  EXPECT_EQ(kiln::train::architecture("mlp").default_eval_transform, kiln::data::EvalTransform::Resize);
  EXPECT_EQ(kiln::train::architecture("alexnet").default_eval_transform, kiln::data::EvalTransform::CenterCrop);
}

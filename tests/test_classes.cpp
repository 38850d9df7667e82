// check_same_classes: a dataset evaluated against a model (or a training set) must have its classes,
// by count and by name in label order; the message names both sides and the classes that differ.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "test_util.h"

namespace {

using kiln::data::check_same_classes;

// An in-memory dataset (one image per class) whose classes are `names`.
struct Named {
  kiln::data::Dataset d;
  std::shared_ptr<const kiln::data::Source> source;
  explicit Named(std::vector<std::string> names) {
    const auto n = static_cast<std::int64_t>(names.size());
    d.images = kiln::Tensor::zeros({n, 1, 2, 2}, kiln::DType::UInt8);
    std::vector<std::int32_t> labels(names.size());
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i);
    d.labels = kiln::Tensor::from_vector(labels, {n});
    d.num_classes = static_cast<int>(n);
    d.class_names = std::move(names);
    source = kiln::data::in_memory(d);
  }
};

TEST(Classes, TheSameNamesInTheSameOrderPass) {
  const Named data({"ant", "bee"});
  check_same_classes("the model", 2, {"ant", "bee"}, "the folder", *data.source);
  check_same_classes("weights-only", 2, {}, "the folder", *data.source);  // names unknown: the count
}

TEST(Classes, OtherNamesOfTheSameCountAreNamed) {
  const Named data({"cat", "dog"});
  kt::expect_error_naming([&] { check_same_classes("the model in m.safetensors", 2, {"ant", "bee"}, "folder D", *data.source); },
                          {"folder D", "the model in m.safetensors", "label 0 is 'cat', not 'ant'",
                           "label 1 is 'dog', not 'bee'"},
                          "other names");
  const Named swapped({"bee", "ant"});
  kt::expect_error_naming([&] { check_same_classes("the model", 2, {"ant", "bee"}, "folder D", *swapped.source); },
                          {"label 0 is 'bee', not 'ant'"}, "the same names in another order");
}

TEST(Classes, AnotherCountIsNamedWithBothLists) {
  const Named data({"ant", "bee", "cat"});
  kt::expect_error_naming([&] { check_same_classes("the model in m.safetensors", 2, {"ant", "bee"}, "folder D", *data.source); },
                          {"folder D has 3 classes ('ant', 'bee', 'cat') but the model in m.safetensors has 2 ('ant', 'bee')"},
                          "3 classes against 2");
  kt::expect_error_naming([&] { check_same_classes("weights-only w", 2, {}, "folder D", *data.source); },
                          {"has 3 classes", "weights-only w has 2"}, "names unknown");
}

TEST(Classes, NamesInMessagesArePrintable) {
  const Named data({"a\nb", "c"});
  kt::expect_error_naming([&] { check_same_classes("the model", 2, {"a", "c"}, "folder D", *data.source); },
                          {"label 0 is 'a\\nb', not 'a'"}, "a newline in a name");
}

}  // namespace

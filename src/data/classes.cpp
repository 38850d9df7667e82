// Checking that a dataset's labels mean what a model's (or a training set's) labels mean. Two sets
// of classes with the same count but other names would evaluate without error to a meaningless
// accuracy; another count would fail later, deep in the loss, naming a label and a row.
#include <string>
#include <vector>

#include "io/text.h"
#include "kiln/data.h"
#include "kiln/error.h"

namespace kiln::data {

namespace {
constexpr std::size_t kNamesShown = 8, kDifferencesShown = 5;

std::string quoted(const std::string& name) { return "'" + io::printable(name) + "'"; }

// "'ant', 'bee', 'cat'": the first kNamesShown names.
std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < kNamesShown; ++i) s += (i ? ", " : "") + quoted(names[i]);
  if (names.size() > kNamesShown) s += ", ...";
  return s;
}

// " ('ant', 'bee')", or nothing when the names are unknown.
std::string in_parentheses(const std::vector<std::string>& names) {
  return names.empty() ? "" : " (" + name_list(names) + ")";
}

// "label 0 is 'cat', not 'ant'; ...": the first kDifferencesShown labels whose names differ.
std::string differences(const std::vector<std::string>& expected, const std::vector<std::string>& got) {
  std::string s;
  std::size_t shown = 0, total = 0;
  for (std::size_t i = 0; i < expected.size() && i < got.size(); ++i) {
    if (expected[i] == got[i]) continue;
    if (shown++ < kDifferencesShown)
      s += (s.empty() ? "" : "; ") + detail::str("label ", i, " is ", quoted(got[i]), ", not ", quoted(expected[i]));
    ++total;
  }
  if (total > kDifferencesShown) s += detail::str(" (and ", total - kDifferencesShown, " more)");
  return s;
}
}  // namespace

void check_same_classes(const std::string& expected_what, std::int64_t expected_count,
                        const std::vector<std::string>& expected_names, const std::string& data_what,
                        const Source& data) {
  const std::vector<std::string> names = data.class_names();
  KILN_CHECK(data.num_classes() == expected_count, data_what, " has ", data.num_classes(), " classes",
             in_parentheses(names), " but ", expected_what, " has ", expected_count, in_parentheses(expected_names));
  if (expected_names.empty()) return;
  KILN_CHECK(names == expected_names, data_what, " does not have the classes of ", expected_what, ": ",
             differences(expected_names, names));
}

}  // namespace kiln::data

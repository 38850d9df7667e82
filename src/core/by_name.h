// Internal: lookups in kiln's small name-keyed tables (optimizers, architectures): an entry is
// anything with a `name`. An unknown name is one error that lists every known one, so that a typo
// shows what would have worked.
#pragma once

#include <string>
#include <vector>

#include "kiln/error.h"

namespace kiln::detail {

template <class Entry>
std::vector<std::string> names_of(const std::vector<Entry>& table) {
  std::vector<std::string> names;
  for (const Entry& e : table) names.push_back(e.name);
  return names;
}

// The entry called `name`; kiln::Error "unknown <what> 'name' (available: a, b, c)" otherwise.
template <class Entry>
const Entry& find_by_name(const std::vector<Entry>& table, const std::string& name, const std::string& what) {
  for (const Entry& e : table)
    if (e.name == name) return e;
  std::string list;
  for (const Entry& e : table) list += (list.empty() ? "" : ", ") + e.name;
  KILN_FAIL("unknown ", what, " '", name, "' (available: ", list, ")");
}

}  // namespace kiln::detail

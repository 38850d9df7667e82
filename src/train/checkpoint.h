// Internal: how a model spec and training position are stored in a checkpoint's __metadata__.
#pragma once

#include <map>
#include <string>

#include "kiln/train.h"

namespace kiln::train::detail {

using Metadata = std::map<std::string, std::string>;

void encode_spec(const ModelSpec& spec, Metadata& md);
// Reads the spec back; kiln::Error naming `path` and the key when something is missing or malformed.
ModelSpec decode_spec(const Metadata& md, const std::string& path);
// Infers an MLP spec from PyTorch-style tensor names ("0.weight", "2.weight", ...).
ModelSpec infer_spec(const io::NamedTensors& tensors, const std::string& path);

std::string join_ints(const std::vector<std::int64_t>& v, char sep = ',');
std::vector<std::int64_t> parse_ints(const std::string& s, const std::string& what);
std::string fmt_double(double v);  // round-trips exactly (%.17g)
double parse_double(const std::string& s, const std::string& what);

}  // namespace kiln::train::detail

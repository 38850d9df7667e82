// Internal: how a model spec and training position are stored in a checkpoint's __metadata__.
#pragma once

#include <map>
#include <string>

#include "kiln/train.h"

namespace kiln::train::detail {

using Metadata = std::map<std::string, std::string>;

// The common fields, then the architecture's own (its registry entry's encode_fields).
void encode_spec(const ModelSpec& spec, Metadata& md);
// Reads the spec back; kiln::Error naming `path` and the key when something is missing or malformed.
ModelSpec decode_spec(const Metadata& md, const std::string& path);
// Infers the spec of a weights-only file from PyTorch-style tensor names ("0.weight", "2.weight", ...
// for an MLP, "features.0.weight" ... for AlexNet): the first registered architecture that recognises them.
ModelSpec infer_spec(const io::NamedTensors& tensors, const std::string& path);

// class_names' metadata value: a JSON array; decoding also reads the newline-separated names of
// older checkpoints (a value not starting with '[').
std::string encode_class_names(const std::vector<std::string>& names);
std::vector<std::string> decode_class_names(const std::string& value, const std::string& path);

// md[key]; kiln::Error naming `path` and the key when it is missing.
const std::string& metadata_value(const Metadata& md, const std::string& key, const std::string& path);
std::string join_ints(const std::vector<std::int64_t>& v, char sep = ',');
std::vector<std::int64_t> parse_ints(const std::string& s, const std::string& what);
std::string fmt_double(double v);  // round-trips exactly (%.17g)
double parse_double(const std::string& s, const std::string& what);

}  // namespace kiln::train::detail

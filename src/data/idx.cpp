// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed, and the MNIST loader.
//
// IDX layout: a 4-byte magic number 0x00 0x00 <type> <ndims>, then ndims big-endian uint32
// dimensions, then product(dims) elements of <type>, row-major. Only unsigned bytes (0x08) are
// accepted. The payload must be exactly product(dims) bytes: shorter is a truncated file, longer
// means trailing bytes (usually a wrong header), and both are errors.
#include <zlib.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "io/files.h"
#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/tensor.h"

namespace kiln::data {

namespace {

constexpr int kMaxDims = 4;

const char* idx_type_name(unsigned code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

std::string hex2(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
  return buf;
}

// Sequential reader over a plain or gzip file. read() returns fewer bytes than asked only at the
// end of the (decompressed) data; a damaged gzip stream throws.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    std::uint64_t size = 0;
    const int fd = io::open_regular_file(path, &size);
    unsigned char head[2] = {0, 0};
    gzip_ = ::pread(fd, head, 2, 0) == 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (gzip_) {
      gz_ = gzdopen(fd, "rb");
      if (!gz_) ::close(fd);
      if (!gz_) KILN_FAIL("cannot open ", path, ": gzdopen failed");
      gzbuffer(gz_, 1 << 18);
      return;
    }
    file_size_ = static_cast<std::int64_t>(size);
    file_ = ::fdopen(fd, "rb");
    if (!file_) ::close(fd);
    if (!file_) KILN_FAIL("cannot open ", path, ": ", std::strerror(errno));
  }
  ~Reader() {
    if (file_) std::fclose(file_);
    if (gz_) gzclose(gz_);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  bool gzip() const { return gzip_; }
  // Size in bytes of a plain regular file, -1 when unknown (gzip, pipes).
  std::int64_t file_size() const { return file_size_; }

  std::size_t read(void* dst, std::size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t total = 0;
    if (file_) {
      total = std::fread(out, 1, n, file_);
      if (total < n && std::ferror(file_)) KILN_FAIL("error reading ", path_, ": ", std::strerror(errno));
      return total;
    }
    while (total < n) {
      const std::size_t want = std::min<std::size_t>(n - total, 1u << 30);
      const int got = gzread(gz_, out + total, static_cast<unsigned>(want));
      if (got < 0) gz_fail();
      total += static_cast<std::size_t>(got);
      if (static_cast<std::size_t>(got) < want) {
        // End of data: a clean end of the last gzip member, or a truncated/damaged stream.
        int err = Z_OK;
        gzerror(gz_, &err);
        if (err != Z_OK) gz_fail();
        break;
      }
    }
    return total;
  }

  // Reads and discards the rest of the data; returns how many bytes there were.
  std::int64_t skip_rest() {
    std::vector<unsigned char> buf(1 << 16);
    std::int64_t n = 0;
    for (;;) {
      const std::size_t got = read(buf.data(), buf.size());
      n += static_cast<std::int64_t>(got);
      if (got < buf.size()) return n;
    }
  }

 private:
  [[noreturn]] void gz_fail() {
    int err = Z_OK;
    const char* msg = gzerror(gz_, &err);
    std::string what = msg && *msg ? msg : "unknown zlib error";
    if (what.compare(0, path_.size() + 2, path_ + ": ") == 0) what.erase(0, path_.size() + 2);  // zlib adds the path
    if (err == Z_BUF_ERROR) what = "truncated: unexpected end of the compressed data";
    if (err == Z_ERRNO) what = std::strerror(errno);
    KILN_FAIL(path_, ": corrupt gzip stream: ", what);
  }

  std::string path_;
  bool gzip_ = false;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  std::int64_t file_size_ = -1;
};

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

}  // namespace

Tensor read_idx(const std::string& path) {
  Reader in(path);
  const char* kind = in.gzip() ? "decompressed stream" : "file";

  unsigned char magic[4];
  const std::size_t got_magic = in.read(magic, 4);
  KILN_CHECK(got_magic == 4, path, ": truncated header: the ", kind, " holds only ", got_magic,
             " bytes, less than the 4-byte IDX magic number");
  KILN_CHECK(magic[0] == 0 && magic[1] == 0, path, ": bad magic number ", hex2(magic[0]), " ", hex2(magic[1]), " ",
             hex2(magic[2]), " ", hex2(magic[3]),
             ": not an IDX file (an IDX file starts with two zero bytes, a type code and a dimension count)");
  const unsigned type = magic[2];
  const int ndims = magic[3];
  KILN_CHECK(type == 0x08, path, ": unsupported IDX type code ", hex2(type), " (", idx_type_name(type),
             "): only 0x08 (unsigned byte) is supported");
  KILN_CHECK(ndims >= 1 && ndims <= kMaxDims, path, ": bad dimension count ", ndims, " in the IDX header (expected 1 to ",
             kMaxDims, ")");

  unsigned char raw[4 * kMaxDims];
  const std::size_t want_dims = 4 * static_cast<std::size_t>(ndims);
  const std::size_t got_dims = in.read(raw, want_dims);
  KILN_CHECK(got_dims == want_dims, path, ": truncated header: ", ndims, " dimensions need ", want_dims,
             " bytes after the magic number but the ", kind, " has only ", got_dims, " more");

  Shape shape(static_cast<std::size_t>(ndims));
  std::int64_t expected = 1;
  bool overflow = false;
  for (int i = 0; i < ndims; ++i) {
    const std::uint32_t d = (std::uint32_t{raw[4 * i]} << 24) | (std::uint32_t{raw[4 * i + 1]} << 16) |
                            (std::uint32_t{raw[4 * i + 2]} << 8) | std::uint32_t{raw[4 * i + 3]};
    shape[static_cast<std::size_t>(i)] = d;
    if (d != 0 && expected > std::numeric_limits<std::int64_t>::max() / static_cast<std::int64_t>(d)) overflow = true;
    if (!overflow) expected *= static_cast<std::int64_t>(d);
  }
  KILN_CHECK(!overflow && static_cast<std::uint64_t>(expected) <= std::numeric_limits<std::size_t>::max(), path,
             ": dimensions ", shape_str(shape), " overflow: the element count does not fit in 64 bits (corrupt header?)");
  const std::int64_t header = 4 + static_cast<std::int64_t>(want_dims);

  auto size_error = [&](std::int64_t have) {
    const bool shorter = have < expected;
    KILN_FAIL(path, shorter ? ": truncated payload: " : ": trailing bytes after the payload: ", "dimensions ",
              shape_str(shape), " need exactly ", expected, " bytes of data after the ", header,
              "-byte header, but the ", kind, " holds ", have,
              shorter ? " (the file is incomplete: download it again)"
                      : " (extra data: the header does not match the file)");
  };

  // Plain files: compare with the size on disk before allocating anything.
  if (in.file_size() >= 0 && in.file_size() - header != expected) size_error(in.file_size() - header);

  if (in.file_size() >= 0) {
    Tensor out = Tensor::empty(shape, DType::UInt8, Device::cpu());
    const std::size_t got = in.read(out.raw_data(), static_cast<std::size_t>(expected));
    if (static_cast<std::int64_t>(got) < expected) size_error(static_cast<std::int64_t>(got));  // shrank meanwhile
    return out;
  }

  // gzip (or a pipe): the header's size is not trusted before the data is there, so the data is read
  // in chunks into a buffer that grows with it; a corrupt header cannot make us allocate a huge block.
  std::vector<unsigned char> buf;
  std::int64_t have = 0;
  while (have < expected) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::int64_t>(expected - have, std::int64_t{8} << 20));
    buf.resize(static_cast<std::size_t>(have) + want);
    const std::size_t got = in.read(buf.data() + have, want);
    have += static_cast<std::int64_t>(got);
    if (got < want) size_error(have);
  }
  const std::int64_t extra = in.skip_rest();
  if (extra > 0) size_error(expected + extra);
  Tensor out = Tensor::empty(shape, DType::UInt8, Device::cpu());
  if (expected > 0) std::memcpy(out.raw_data(), buf.data(), static_cast<std::size_t>(expected));
  return out;
}

Dataset load_mnist(const std::string& dir, bool train, const std::string& name) {
  std::vector<std::string> class_names;
  const char* fetch = nullptr;
  if (name == "mnist") {
    class_names = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    fetch = "data/fetch-mnist.sh";
  } else if (name == "fashion-mnist") {
    class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    fetch = "data/fetch-fashion-mnist.sh";
  } else {
    KILN_FAIL("unknown dataset name '", name, "' (expected \"mnist\" or \"fashion-mnist\")");
  }
  constexpr int kClasses = 10;

  const std::string prefix = train ? "train" : "t10k";
  auto locate = [&](const std::string& file) {
    const std::string plain = join_path(dir, file);
    if (is_file(plain)) return plain;
    const std::string gz = plain + ".gz";
    if (is_file(gz)) return gz;
    KILN_FAIL(name, " ", train ? "train" : "test", " split: missing ", file, ": tried ", plain, " and ", gz,
              " (run ", fetch, " to download the dataset)");
  };
  const std::string image_path = locate(prefix + "-images-idx3-ubyte");
  const std::string label_path = locate(prefix + "-labels-idx1-ubyte");

  Tensor images = read_idx(image_path);
  KILN_CHECK(images.dim() == 3, image_path, ": expected 3-D images [N, H, W], got dimensions ",
             shape_str(images.shape()));
  Tensor raw_labels = read_idx(label_path);
  KILN_CHECK(raw_labels.dim() == 1, label_path, ": expected 1-D labels [N], got dimensions ",
             shape_str(raw_labels.shape()));

  const std::int64_t n = images.size(0), h = images.size(1), w = images.size(2);
  KILN_CHECK(n == raw_labels.size(0), "image/label count mismatch: ", image_path, " holds ", n, " images but ",
             label_path, " holds ", raw_labels.size(0), " labels");
  KILN_CHECK(n > 0 && h > 0 && w > 0, image_path, ": empty dataset: dimensions ", shape_str(images.shape()));

  Tensor labels = Tensor::empty({n}, DType::Int32, Device::cpu());
  const auto* src = static_cast<const std::uint8_t*>(raw_labels.raw_data());
  auto* dst = labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    KILN_CHECK(src[i] < kClasses, label_path, ": label ", int{src[i]}, " at index ", i, " is out of range [0, ",
               kClasses, ")");
    dst[i] = src[i];
  }

  Dataset ds;
  ds.images = images.reshape({n, 1, h, w});
  ds.labels = labels;
  ds.num_classes = kClasses;
  ds.class_names = std::move(class_names);
  return ds;
}

}  // namespace kiln::data

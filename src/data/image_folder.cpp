// Image folders (DIR/<class>/<image>): scanning, hold-out splits, and per-sample decode + augment.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "io/json.h"
#include "io/text.h"
#include "kiln/error.h"
#include "kiln/image.h"
#include "kiln/random.h"

namespace kiln::data {

namespace {
bool is_dir(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) KILN_FAIL("cannot open image folder ", dir, ": ", std::strerror(errno));
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == ".." || n[0] == '.') continue;
    names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool is_image_name(const std::string& n) {
  const auto dot = n.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = n.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const char* known[] = {"jpg", "jpeg", "png", "bmp", "gif", "tga", "ppm", "pgm", "pnm", "psd", "hdr", "pic"};
  for (const char* k : known)
    if (ext == k) return true;
  return false;
}

// A class is known by its folder's name, which the model file stores as UTF-8 text (JSON) and
// predict prints: a name in another encoding (Latin-1) is refused here, before any training, rather
// than when the trained model is saved. Any valid UTF-8 is accepted, a newline too.
void check_class_name(const std::string& dir, const std::string& name) {
  KILN_CHECK(io::is_valid_utf8(name), "image folder ", io::printable(dir), ": the name of class folder '",
             io::printable(name), "' is not valid UTF-8; class names are stored and printed as UTF-8 text, so "
             "rename the folder (e.g. convmv -f latin1 -t utf8)");
}

// Uniform [0, 1) numbers for one sample's augmentation, from the loader's per-sample counter.
struct SampleRng {
  std::uint64_t counter;
  std::uint32_t k = 0;
  float next() { return philox::uniform(0x696d616765ull, counter * 64 + k++); }  // <= 41 draws per sample
};
}  // namespace

ImageFolder::ImageFolder(const std::string& dir, const ImageFolderOptions& options) : root_(dir), opt_(options) {
  KILN_CHECK(options.channels == 1 || options.channels == 3, "image folder: channels must be 1 or 3");
  KILN_CHECK(options.size >= 8 && options.size <= 4096, "image folder: image size must be in [8, 4096], got ",
             options.size);
  KILN_CHECK(is_dir(dir), "image folder ", dir, " does not exist or is not a folder");
  auto files = std::make_shared<std::vector<std::pair<std::string, std::int32_t>>>();
  for (const std::string& name : list_dir(dir)) {
    const std::string cdir = dir + "/" + name;
    if (!is_dir(cdir)) continue;
    check_class_name(dir, name);
    std::int64_t count = 0;
    for (const std::string& f : list_dir(cdir))
      if (is_image_name(f) && is_file(cdir + "/" + f)) {
        files->emplace_back(cdir + "/" + f, static_cast<std::int32_t>(classes_.size()));
        ++count;
      }
    KILN_CHECK(count > 0, "image folder ", io::printable(dir), ": class '", io::printable(name), "' (", io::printable(cdir),
               ") holds no images (.jpg, .jpeg, .png, .bmp, ...)");
    classes_.push_back(name);
  }
  KILN_CHECK(!classes_.empty(), "image folder ", dir,
             " has no class sub-folders: expected DIR/<class>/<image> (one sub-folder per class)");
  KILN_CHECK(classes_.size() >= 2, "image folder ", io::printable(dir), " has only one class ('", io::printable(classes_[0]),
             "'); a classifier needs at least two");
  files_ = files;
  indices_.resize(files->size());
  for (std::size_t i = 0; i < indices_.size(); ++i) indices_[i] = static_cast<std::int64_t>(i);
}

ImageFolder::ImageFolder(const ImageFolder& base, std::vector<std::int64_t> indices, const ImageFolderOptions& options)
    : root_(base.root_), classes_(base.classes_), files_(base.files_), indices_(std::move(indices)), opt_(options) {
  for (auto i : indices_)
    KILN_CHECK(i >= 0 && i < static_cast<std::int64_t>(files_->size()), "image folder: index ", i, " out of range");
}

std::pair<std::shared_ptr<ImageFolder>, std::shared_ptr<ImageFolder>> ImageFolder::split(
    const ImageFolder& all, double fraction, std::uint64_t seed, const ImageFolderOptions& train_options,
    const ImageFolderOptions& val_options) {
  KILN_CHECK(fraction > 0.0 && fraction < 1.0, "hold-out fraction must be in (0, 1), got ", fraction);
  std::vector<std::int64_t> idx = all.indices_;
  KILN_CHECK(idx.size() >= 2, "image folder ", all.root_, " has ", idx.size(), " image(s): too few to hold some out");
  for (std::size_t i = idx.size() - 1; i > 0; --i) {
    const std::uint64_t r = philox::philox4x32(i, seed ^ 0x73706c6974ull).x;
    std::swap(idx[i], idx[r % (i + 1)]);
  }
  const std::size_t nval = std::clamp<std::size_t>(static_cast<std::size_t>(std::lround(fraction * idx.size())), 1,
                                                   idx.size() - 1);  // both parts keep at least one image
  std::vector<std::int64_t> val(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(nval));
  std::vector<std::int64_t> train(idx.begin() + static_cast<std::ptrdiff_t>(nval), idx.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  return {std::make_shared<ImageFolder>(all, std::move(train), train_options),
          std::make_shared<ImageFolder>(all, std::move(val), val_options)};
}

std::string ImageFolder::describe() const { return Source::describe() + " in " + io::printable(root_); }

std::int32_t ImageFolder::label(std::int64_t i) const { return (*files_)[static_cast<std::size_t>(indices_[static_cast<std::size_t>(i)])].second; }

const std::string& ImageFolder::path(std::int64_t i) const {
  return (*files_)[static_cast<std::size_t>(indices_[static_cast<std::size_t>(i)])].first;
}

bool ImageFolder::load(std::int64_t i, std::uint8_t* dst, std::uint64_t rng) const {
  Image img;
  try {
    img = decode_image(path(i), opt_.channels);
  } catch (const Error&) {
    if (opt_.strict) throw;
    return false;
  }
  const double w = img.width, h = img.height;
  const int S = opt_.size;
  if (!opt_.augment) {
    apply_eval_transform(img, opt_.eval_transform, S, S, dst);
    return true;
  }
  // Random-resized crop (torchvision's defaults: area 8%-100%, aspect ratio 3/4-4/3; 10 tries, then
  // a centre crop), then a horizontal flip with probability 1/2.
  SampleRng r{rng};
  double cx = 0, cy = 0, cw = w, ch = h;
  bool found = false;
  for (int t = 0; t < 10 && !found; ++t) {
    const double area = w * h * (0.08 + 0.92 * r.next());
    const double log_ratio = std::log(3.0 / 4.0) + (std::log(4.0 / 3.0) - std::log(3.0 / 4.0)) * r.next();
    const double ar = std::exp(log_ratio);
    const double tw = std::sqrt(area * ar), th = std::sqrt(area / ar);
    if (tw <= w && th <= h) {
      cw = tw, ch = th;
      cx = (w - cw) * r.next();
      cy = (h - ch) * r.next();
      found = true;
    }
  }
  if (!found) {
    const double side = std::min(w, h);
    cw = ch = side;
    cx = (w - side) / 2, cy = (h - side) / 2;
  }
  const bool flip = r.next() < 0.5f;
  crop_resize(img, cx, cy, cw, ch, S, S, flip, dst);
  return true;
}

}  // namespace kiln::data

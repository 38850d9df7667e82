// ImageFolder (DIR/<class>/<image>): scanning (sorted classes, which files count as images),
// errors naming the folder or class, undecodable files (skipped and counted by the Loader, or an
// error naming the file with strict), conversion of grey / grey+alpha / RGBA / 16-bit PNGs to the
// requested channels, the evaluation transform (resize + centre crop) against a crop computed by
// hand, the random-resized-crop + flip augmentation, and hold-out splits.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kiln/image.h"
#include "kiln/kiln.h"
#include "train_fixtures.h"

#include "stb_write.h"

namespace {

using kiln::Shape;
using kiln::Tensor;
using kiln::data::ImageFolder;
using kiln::data::ImageFolderOptions;
using kt::TempDir;
namespace fs = std::filesystem;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Interleaved 8-bit pixels, value(x, y, c) -> 0..255.
template <class F>
std::vector<std::uint8_t> pixels(int w, int h, int comp, F value) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h * comp));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < comp; ++c)
        px[static_cast<std::size_t>((y * w + x) * comp + c)] = static_cast<std::uint8_t>(value(x, y, c));
  return px;
}

void write_png(const std::string& path, int w, int h, int comp, const std::vector<std::uint8_t>& px) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, comp, px.data(), w * comp), 0) << path;
}

// A small textured RGB PNG (distinct per `seed`).
void write_small_png(const std::string& path, int seed, int w = 8, int h = 8) {
  write_png(path, w, h, 3, pixels(w, h, 3, [&](int x, int y, int c) { return (31 * x + 17 * y + 71 * c + 13 * seed) % 256; }));
}

// ---- a 16-bit PNG, written by hand ----------------------------------------------------------------

void put_u32(std::string& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

// colour_type: 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA; samples interleaved, row-major, 16 bits each.
void write_png16(const std::string& path, int w, int h, int colour_type, const std::vector<std::uint16_t>& samples) {
  const int comp = colour_type == 0 ? 1 : colour_type == 2 ? 3 : colour_type == 4 ? 2 : 4;
  ASSERT_EQ(samples.size(), static_cast<std::size_t>(w * h * comp));
  std::string raw;  // each row: filter type 0 (none), then big-endian samples
  for (int y = 0; y < h; ++y) {
    raw.push_back('\0');
    for (int i = 0; i < w * comp; ++i) {
      const std::uint16_t v = samples[static_cast<std::size_t>(y * w * comp + i)];
      raw.push_back(static_cast<char>(v >> 8));
      raw.push_back(static_cast<char>(v & 0xFF));
    }
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zlen, '\0');
  ASSERT_EQ(compress2(reinterpret_cast<Bytef*>(&z[0]), &zlen, reinterpret_cast<const Bytef*>(raw.data()),
                      static_cast<uLong>(raw.size()), 6),
            Z_OK);
  z.resize(zlen);
  std::string ihdr;
  put_u32(ihdr, static_cast<std::uint32_t>(w));
  put_u32(ihdr, static_cast<std::uint32_t>(h));
  ihdr += std::string{static_cast<char>(16), static_cast<char>(colour_type), 0, 0, 0};  // depth, type, compr., filter, interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  fs::create_directories(fs::path(path).parent_path());
  kt::write_bytes(path, png);
}

std::string error_of_folder(const std::string& dir, const ImageFolderOptions& opt = {}) {
  try {
    ImageFolder f(dir, opt);
  } catch (const kiln::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "ImageFolder(" << dir << ") did not throw";
  return "";
}

std::vector<std::uint8_t> load(const ImageFolder& f, std::int64_t i, std::uint64_t rng) {
  const Shape s = f.sample_shape();
  const std::size_t n = static_cast<std::size_t>(kiln::shape_numel(s));
  std::vector<std::uint8_t> buf(n + 64, 0xA5);  // a canary after the sample
  EXPECT_TRUE(f.load(i, buf.data(), rng)) << f.path(i);
  for (std::size_t k = n; k < buf.size(); ++k)
    if (buf[k] != 0xA5) {
      ADD_FAILURE() << f.path(i) << ": load wrote past the " << n << " bytes of a " << kiln::shape_str(s) << " sample";
      break;
    }
  buf.resize(n);
  return buf;
}

// ---- scanning -----------------------------------------------------------------------------------

TEST(ImageFolder, ClassesAreSortedSubfoldersAndOnlyImagesCount) {
  TempDir d("kiln_if");
  const std::string root = d.path;
  // Classes (sorted by name, bytewise: "Apple" < "mango" < "zebra"), created out of order.
  write_small_png(root + "/zebra/z1.png", 1);
  write_small_png(root + "/zebra/z2.PNG", 2);
  ASSERT_NE(stbi_write_jpg((root + "/zebra/z3.JpG").c_str(), 8, 8, 3,
                           pixels(8, 8, 3, [](int x, int, int) { return 20 * x; }).data(), 90),
            0);
  kt::write_bytes(root + "/zebra/notes.txt", "not an image");
  kt::write_bytes(root + "/zebra/README", "no extension");
  write_small_png(root + "/zebra/.hidden.png", 3);  // hidden: ignored
  write_small_png(root + "/Apple/a.png", 4);
  ASSERT_NE(stbi_write_bmp((root + "/Apple/b.Bmp").c_str(), 8, 8, 3,
                           pixels(8, 8, 3, [](int, int y, int) { return 30 * y; }).data()),
            0);
  kt::write_bytes(root + "/Apple/c.png.bak", "backup");
  write_small_png(root + "/mango/m.png", 5);
  ASSERT_NE(stbi_write_tga((root + "/mango/n.TGA").c_str(), 8, 8, 3,
                           pixels(8, 8, 3, [](int x, int y, int) { return 10 * (x + y); }).data()),
            0);
  write_small_png(root + "/.cache/x.png", 6);  // hidden folder: not a class
  write_small_png(root + "/stray.png", 7);     // a file at the top: not a class
  kt::write_bytes(root + "/labels.txt", "a b c");

  ImageFolderOptions opt;
  opt.channels = 3, opt.size = 16, opt.augment = false;
  const ImageFolder f(root, opt);
  const std::vector<std::string> classes{"Apple", "mango", "zebra"};
  EXPECT_EQ(f.class_names(), classes);
  EXPECT_EQ(f.num_classes(), 3);
  ASSERT_EQ(f.size(), 7);
  EXPECT_EQ(f.sample_shape(), (Shape{3, 16, 16}));

  std::map<std::string, std::set<std::string>> files;  // class -> file names
  for (std::int64_t i = 0; i < f.size(); ++i) {
    const fs::path p(f.path(i));
    const std::int32_t label = f.label(i);
    ASSERT_GE(label, 0);
    ASSERT_LT(label, 3);
    EXPECT_EQ(p.parent_path().filename().string(), classes[static_cast<std::size_t>(label)])
        << f.path(i) << " has label " << label;
    files[classes[static_cast<std::size_t>(label)]].insert(p.filename().string());
    load(f, i, 0);  // every listed file decodes
  }
  EXPECT_EQ(files["Apple"], (std::set<std::string>{"a.png", "b.Bmp"}));
  EXPECT_EQ(files["mango"], (std::set<std::string>{"m.png", "n.TGA"}));
  EXPECT_EQ(files["zebra"], (std::set<std::string>{"z1.png", "z2.PNG", "z3.JpG"}));

  // Scanning is deterministic: a second scan lists the same files with the same labels.
  const ImageFolder g(root, opt);
  ASSERT_EQ(g.size(), f.size());
  for (std::int64_t i = 0; i < f.size(); ++i) {
    EXPECT_EQ(g.path(i), f.path(i));
    EXPECT_EQ(g.label(i), f.label(i));
  }
}

// ---- errors -------------------------------------------------------------------------------------

TEST(ImageFolder, MissingFolderIsAnErrorNamingIt) {
  TempDir d("kiln_if");
  const std::string dir = d.file("no_such_folder");
  const std::string msg = error_of_folder(dir);
  EXPECT_TRUE(contains(msg, dir)) << msg;
  // A file is not a folder either.
  const std::string file = d.file("file.png");
  write_small_png(file, 0);
  const std::string msg2 = error_of_folder(file);
  EXPECT_TRUE(contains(msg2, file)) << msg2;
}

TEST(ImageFolder, FolderWithoutClassesIsAnErrorNamingIt) {
  TempDir d("kiln_if");
  const std::string empty = d.file("empty");
  fs::create_directories(empty);
  std::string msg = error_of_folder(empty);
  EXPECT_TRUE(contains(msg, empty)) << msg;
  // Images directly in the folder, no class sub-folders.
  const std::string flat = d.file("flat");
  write_small_png(flat + "/a.png", 1);
  write_small_png(flat + "/b.png", 2);
  msg = error_of_folder(flat);
  EXPECT_TRUE(contains(msg, flat)) << msg;
}

TEST(ImageFolder, ClassWithoutImagesIsAnErrorNamingIt) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/cats/1.png", 1);
  write_small_png(d.path + "/dogs/1.png", 2);
  fs::create_directories(d.path + "/empty_class");
  kt::write_bytes(d.path + "/empty_class/notes.txt", "no images here");
  const std::string msg = error_of_folder(d.path);
  EXPECT_TRUE(contains(msg, "empty_class")) << msg;
  EXPECT_TRUE(contains(msg, d.path)) << msg;
}

TEST(ImageFolder, SingleClassIsAnErrorNamingIt) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/only_class/1.png", 1);
  write_small_png(d.path + "/only_class/2.png", 2);
  const std::string msg = error_of_folder(d.path);
  EXPECT_TRUE(contains(msg, "only_class")) << msg;
  EXPECT_TRUE(contains(msg, d.path)) << msg;
}

TEST(ImageFolder, BadOptionsAreErrors) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/a/1.png", 1);
  write_small_png(d.path + "/b/1.png", 2);
  ImageFolderOptions opt;
  opt.channels = 2;
  EXPECT_THROW(ImageFolder(d.path, opt), kiln::Error);
  opt.channels = 3, opt.size = 4;
  EXPECT_THROW(ImageFolder(d.path, opt), kiln::Error);
  opt.size = 16;
  EXPECT_NO_THROW(ImageFolder(d.path, opt));
}

// ---- undecodable files ------------------------------------------------------------------------------

// Two classes, 4 + 5 files, one of which ("b/bad.png") is not an image.
std::string corrupt_folder(const TempDir& d) {
  const std::string root = d.file("data");
  for (int i = 0; i < 4; ++i) write_small_png(root + "/a/" + std::to_string(i) + ".png", i);
  for (int i = 0; i < 4; ++i) write_small_png(root + "/b/" + std::to_string(i) + ".png", 10 + i);
  kt::write_bytes(root + "/b/bad.png", "this is not a PNG file, only some text pretending to be one");
  return root + "/b/bad.png";
}

TEST(ImageFolder, CorruptImageIsSkippedAndCounted) {
  TempDir d("kiln_if");
  const std::string bad = corrupt_folder(d);
  ImageFolderOptions opt;
  opt.channels = 3, opt.size = 16, opt.augment = true;
  auto f = std::make_shared<ImageFolder>(d.file("data"), opt);
  ASSERT_EQ(f->size(), 9);
  std::int64_t bad_index = -1;
  for (std::int64_t i = 0; i < f->size(); ++i)
    if (f->path(i) == bad) bad_index = i;
  ASSERT_GE(bad_index, 0);
  std::vector<std::uint8_t> buf(3 * 16 * 16);
  EXPECT_FALSE(f->load(bad_index, buf.data(), 0)) << "a file that fails to decode must report false";

  kiln::data::LoaderOptions lo;
  lo.batch_size = 3, lo.shuffle = true, lo.seed = 1, lo.workers = 2;
  kiln::data::Loader loader(f, lo);
  ASSERT_EQ(loader.batches_per_epoch(), 3);
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(epoch);
    kiln::data::Batch b;
    int batches = 0;
    while (loader.next(b)) {
      ++batches;
      EXPECT_EQ(b.images.shape(), (Shape{3, 3, 16, 16})) << "epoch " << epoch << " batch " << b.index << " not full";
      ASSERT_EQ(b.labels.numel(), 3);
      for (std::int32_t l : b.labels.to_vector<std::int32_t>()) {
        EXPECT_GE(l, 0);
        EXPECT_LT(l, 2);
      }
    }
    EXPECT_EQ(batches, 3);
    EXPECT_EQ(loader.skipped(), 1) << "epoch " << epoch;
  }
}

TEST(ImageFolder, StrictModeMakesACorruptImageAnErrorNamingIt) {
  TempDir d("kiln_if");
  const std::string bad = corrupt_folder(d);
  ImageFolderOptions opt;
  opt.channels = 3, opt.size = 16, opt.strict = true;
  auto f = std::make_shared<ImageFolder>(d.file("data"), opt);
  for (std::int64_t i = 0; i < f->size(); ++i)
    if (f->path(i) == bad) {
      std::vector<std::uint8_t> buf(3 * 16 * 16);
      try {
        f->load(i, buf.data(), 0);
        ADD_FAILURE() << "strict load of " << bad << " did not throw";
      } catch (const kiln::Error& e) {
        EXPECT_TRUE(contains(e.what(), bad)) << e.what();
      }
    }

  kiln::data::LoaderOptions lo;
  lo.batch_size = 3, lo.seed = 1, lo.workers = 2;
  kiln::data::Loader loader(f, lo);
  loader.start_epoch(0);
  kiln::data::Batch b;
  std::string msg;
  int good = 0;
  try {
    while (loader.next(b)) ++good;
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
  EXPECT_TRUE(contains(msg, bad)) << "the loader should rethrow an error naming " << bad << ", got '" << msg << "'";
  EXPECT_LT(good, 3) << "the epoch ran to its end despite the corrupt file";
  EXPECT_FALSE(loader.next(b)) << "the epoch cannot continue after the error";
}

// ---- channel conversion ---------------------------------------------------------------------------

// ITU-R BT.601 luma; stb_image's integer approximation errs by less than 2 levels.
double luma(double r, double g, double b) { return 0.299 * r + 0.587 * g + 0.114 * b; }

TEST(ImageFolder, GreyRgbaAnd16BitPngsBecomeTheRequestedChannels) {
  TempDir d("kiln_if");
  const std::string root = d.path;
  constexpr int W = 12, H = 10;
  auto r = [](int x, int y) { return (23 * x + 7 * y) % 256; };
  auto g = [](int x, int y) { return (200 - 9 * x + 13 * y + 256) % 256; };
  auto b = [](int x, int y) { return (5 * x * y + 40) % 256; };
  auto a = [](int x, int y) { return (x * 20 + y) % 256; };
  // 8-bit grey, grey+alpha, RGBA
  write_png(root + "/p/grey.png", W, H, 1, pixels(W, H, 1, [&](int x, int y, int) { return r(x, y); }));
  write_png(root + "/p/ga.png", W, H, 2, pixels(W, H, 2, [&](int x, int y, int c) { return c ? a(x, y) : r(x, y); }));
  write_png(root + "/p/rgba.png", W, H, 4, pixels(W, H, 4, [&](int x, int y, int c) {
              return c == 0 ? r(x, y) : c == 1 ? g(x, y) : c == 2 ? b(x, y) : a(x, y);
            }));
  // 16-bit grey, RGB, RGBA: the high byte is the 8-bit value, the low byte noise to be dropped.
  std::vector<std::uint16_t> s_grey, s_rgb, s_rgba;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const int lo = (x * 37 + y * 11) % 256;
      s_grey.push_back(static_cast<std::uint16_t>(r(x, y) << 8 | lo));
      for (int v : {r(x, y), g(x, y), b(x, y)}) s_rgb.push_back(static_cast<std::uint16_t>(v << 8 | lo));
      for (int v : {r(x, y), g(x, y), b(x, y), a(x, y)}) s_rgba.push_back(static_cast<std::uint16_t>(v << 8 | (255 - lo)));
    }
  write_png16(root + "/q/grey16.png", W, H, 0, s_grey);
  write_png16(root + "/q/rgb16.png", W, H, 2, s_rgb);
  write_png16(root + "/q/rgba16.png", W, H, 6, s_rgba);

  const std::set<std::string> grey_files{"grey.png", "ga.png", "grey16.png"};
  for (const std::string name : {"grey.png", "ga.png", "rgba.png", "grey16.png", "rgb16.png", "rgba16.png"}) {
    SCOPED_TRACE(name);
    const std::string path = root + (name.find("16") != std::string::npos ? "/q/" : "/p/") + name;
    const bool grey = grey_files.count(name) > 0;
    for (int C : {1, 3}) {
      const kiln::data::Image img = kiln::data::decode_image(path, C);
      ASSERT_EQ(img.width, W);
      ASSERT_EQ(img.height, H);
      ASSERT_EQ(img.channels, C);
      ASSERT_EQ(img.pixels.size(), static_cast<std::size_t>(W * H * C));
      int bad = 0;
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
          for (int c = 0; c < C; ++c) {
            const double got = img.pixels[static_cast<std::size_t>((y * W + x) * C + c)];
            double want;
            double tol = 0;
            if (grey) {
              want = r(x, y);  // replicated into every channel
            } else if (C == 3) {
              want = c == 0 ? r(x, y) : c == 1 ? g(x, y) : b(x, y);  // alpha dropped, not premultiplied
            } else {
              want = luma(r(x, y), g(x, y), b(x, y));
              tol = 2;
            }
            if (std::fabs(got - want) > tol && bad++ < 3)
              ADD_FAILURE() << "channels " << C << " pixel (" << x << ", " << y << ", " << c << ") = " << got
                            << ", expected " << want;
          }
      EXPECT_EQ(bad, 0) << "channels " << C;
    }
  }

  // Through the image folder: every sample has the requested channels.
  for (int C : {1, 3}) {
    ImageFolderOptions opt;
    opt.channels = C, opt.size = 8, opt.augment = false;
    const ImageFolder f(root, opt);
    ASSERT_EQ(f.size(), 6);
    EXPECT_EQ(f.sample_shape(), (Shape{C, 8, 8}));
    for (std::int64_t i = 0; i < f.size(); ++i) {
      const auto px = load(f, i, 0);
      EXPECT_EQ(px.size(), static_cast<std::size_t>(C * 64)) << f.path(i);
      if (C == 3 && grey_files.count(fs::path(f.path(i)).filename().string())) {
        // A grey source: the three planes are equal.
        for (int k = 0; k < 64; ++k) {
          EXPECT_EQ(px[static_cast<std::size_t>(k)], px[static_cast<std::size_t>(64 + k)]) << f.path(i);
          EXPECT_EQ(px[static_cast<std::size_t>(k)], px[static_cast<std::size_t>(128 + k)]) << f.path(i);
        }
      }
    }
  }
}

TEST(ImageFolder, ConstantColourSurvivesBothTransforms) {
  TempDir d("kiln_if");
  const int rgb[3] = {200, 50, 10};
  write_png(d.path + "/a/rgba.png", 30, 20, 4, pixels(30, 20, 4, [&](int, int, int c) { return c < 3 ? rgb[c] : 77; }));
  std::vector<std::uint16_t> s16;
  for (int i = 0; i < 25 * 40; ++i)
    for (int c = 0; c < 3; ++c) s16.push_back(static_cast<std::uint16_t>(rgb[c] << 8 | 0x7F));
  write_png16(d.path + "/b/rgb16.png", 25, 40, 2, s16);
  for (bool augment : {false, true})
    for (int C : {1, 3}) {
      ImageFolderOptions opt;
      opt.channels = C, opt.size = 24, opt.augment = augment;
      const ImageFolder f(d.path, opt);
      for (std::int64_t i = 0; i < f.size(); ++i)
        for (std::uint64_t rng : {0u, 1u, 2u}) {
          const auto px = load(f, i, rng);
          for (int c = 0; c < C; ++c) {
            const double want = C == 3 ? rgb[c] : luma(rgb[0], rgb[1], rgb[2]);
            for (int k = 0; k < 24 * 24; ++k)
              if (std::fabs(px[static_cast<std::size_t>(c * 576 + k)] - want) > (C == 3 ? 0 : 2)) {
                ADD_FAILURE() << f.path(i) << " augment " << augment << " channels " << C << ": plane " << c
                              << " element " << k << " = " << int(px[static_cast<std::size_t>(c * 576 + k)])
                              << ", expected " << want;
                break;
              }
          }
        }
    }
}

// ---- transforms -------------------------------------------------------------------------------------

// The evaluation transform of a W x H image at size S: shorter side to S * 8/7, centre S x S crop,
// i.e. a centre box of side min(W, H) * 7/8 in source pixels. For 100 x 80 at 64: 70 x 70 at (15, 5).
TEST(ImageFolder, EvalTransformIsTheCentreCrop) {
  TempDir d("kiln_if");
  // Inside the expected box 128; left of / above it 0, right of / below it 255: any error in the box
  // brings a border pixel into an edge output.
  auto framed = [](int W, int H, int bx, int by, int bw, int bh) {
    return pixels(W, H, 3, [=](int x, int y, int) {
      if (x >= bx && x < bx + bw && y >= by && y < by + bh) return 128;
      return (x < bx || y < by) ? 0 : 255;
    });
  };
  write_png(d.path + "/landscape/framed.png", 100, 80, 3, framed(100, 80, 15, 5, 70, 70));
  write_png(d.path + "/portrait/framed.png", 80, 100, 3, framed(80, 100, 5, 15, 70, 70));
  // Textured versions: the output must be exactly crop_resize of the box.
  auto texture = [](int x, int y, int c) { return (x * 7 + y * 3 + c * 50 + (x * y) % 17) % 256; };
  write_png(d.path + "/landscape/texture.png", 100, 80, 3, pixels(100, 80, 3, texture));
  write_png(d.path + "/portrait/texture.png", 80, 100, 3, pixels(80, 100, 3, texture));

  for (int C : {1, 3}) {
    ImageFolderOptions opt;
    opt.channels = C, opt.size = 64, opt.augment = false;
    const ImageFolder f(d.path, opt);
    ASSERT_EQ(f.size(), 4);
    for (std::int64_t i = 0; i < f.size(); ++i) {
      const std::string path = f.path(i);
      SCOPED_TRACE(path + " channels " + std::to_string(C));
      const auto px = load(f, i, 0);
      EXPECT_EQ(load(f, i, 12345), px) << "the evaluation transform must not depend on the rng";
      EXPECT_EQ(load(f, i, 0), px) << "the evaluation transform must be deterministic";
      if (contains(path, "framed")) {
        int bad = 0;
        for (std::size_t k = 0; k < px.size(); ++k)
          if (px[k] != 128 && bad++ < 3)
            ADD_FAILURE() << "output element " << k << " (plane " << k / 4096 << ", y " << (k % 4096) / 64 << ", x "
                          << k % 64 << ") = " << int(px[k]) << ": the crop reaches outside the centre 70x70 box";
        EXPECT_EQ(bad, 0);
      } else {
        const kiln::data::Image img = kiln::data::decode_image(path, C);
        const bool landscape = img.width > img.height;
        std::vector<std::uint8_t> want(static_cast<std::size_t>(C * 64 * 64));
        kiln::data::crop_resize(img, landscape ? 15 : 5, landscape ? 5 : 15, 70, 70, 64, 64, false, want.data());
        EXPECT_EQ(px, want) << "not the centre 70x70 box resized to 64x64";
      }
    }
  }
}

// Index of the file called `name` in the folder.
std::int64_t index_of(const ImageFolder& f, const std::string& name) {
  for (std::int64_t i = 0; i < f.size(); ++i)
    if (fs::path(f.path(i)).filename() == name) return i;
  ADD_FAILURE() << name << " not in the folder";
  return 0;
}

TEST(ImageFolder, AugmentIsReproducibleAndVaries) {
  TempDir d("kiln_if");
  // Channel 0 a left-to-right ramp (a flip reverses it), channel 1 a top-to-bottom ramp, channel 2 texture.
  write_png(d.path + "/a/ramp.png", 100, 80, 3, pixels(100, 80, 3, [](int x, int y, int c) {
              return c == 0 ? x * 255 / 99 : c == 1 ? y * 255 / 79 : (x * 13 + y * 29) % 256;
            }));
  write_png(d.path + "/b/small.png", 10, 6, 3, pixels(10, 6, 3, [](int x, int y, int c) { return 20 * x + y + c; }));
  write_png(d.path + "/b/strip.png", 200, 10, 3, pixels(200, 10, 3, [](int x, int, int c) { return x + c; }));
  ImageFolderOptions opt;
  opt.channels = 3, opt.size = 32, opt.augment = true;
  const ImageFolder f(d.path, opt);
  ASSERT_EQ(f.size(), 3);
  EXPECT_EQ(f.sample_shape(), (Shape{3, 32, 32}));

  const std::int64_t ramp = index_of(f, "ramp.png");
  std::set<std::vector<std::uint8_t>> distinct;
  int flipped = 0, unflipped = 0;
  constexpr int kTries = 40;
  for (std::uint64_t rng = 0; rng < kTries; ++rng) {
    const auto px = load(f, ramp, rng * 7919 + 3);
    EXPECT_EQ(load(f, ramp, rng * 7919 + 3), px) << "same rng, different output (rng " << rng << ")";
    distinct.insert(px);
    // Channel 0 rises along x unless the crop was flipped (crops are at least ~22 source pixels wide).
    double left = 0, right = 0;
    for (int y = 0; y < 32; ++y) left += px[static_cast<std::size_t>(y * 32)], right += px[static_cast<std::size_t>(y * 32 + 31)];
    if (left < right) ++unflipped;
    if (left > right) ++flipped;
    // Channel 1 always rises along y (no vertical flips).
    double top = 0, bottom = 0;
    for (int x = 0; x < 32; ++x) top += px[static_cast<std::size_t>(1024 + x)], bottom += px[static_cast<std::size_t>(1024 + 31 * 32 + x)];
    EXPECT_LT(top, bottom) << "rng " << rng << ": vertically flipped?";
  }
  EXPECT_GE(distinct.size(), static_cast<std::size_t>(kTries - 2)) << "random crops rarely differ";
  EXPECT_EQ(flipped + unflipped, kTries);
  EXPECT_GE(flipped, kTries / 5) << "horizontal flips too rare";
  EXPECT_GE(unflipped, kTries / 5) << "horizontal flips too frequent";

  // Enlarging a small image and cropping a long strip: right shape, reproducible, no overrun.
  for (const char* name : {"small.png", "strip.png"}) {
    const std::int64_t i = index_of(f, name);
    std::set<std::vector<std::uint8_t>> outs;
    for (std::uint64_t rng = 0; rng < 10; ++rng) {
      const auto px = load(f, i, rng);
      EXPECT_EQ(px.size(), 3u * 32 * 32);
      EXPECT_EQ(load(f, i, rng), px) << name;
      outs.insert(px);
    }
    EXPECT_GT(outs.size(), 1u) << name << ": augmentation never changed the output";
  }
}

// ---- hold-out split -------------------------------------------------------------------------------

std::set<std::string> paths_of(const ImageFolder& f) {
  std::set<std::string> s;
  for (std::int64_t i = 0; i < f.size(); ++i) s.insert(f.path(i));
  return s;
}

TEST(ImageFolder, SplitIsDisjointCompleteAndSeeded) {
  TempDir d("kiln_if");
  for (int i = 0; i < 14; ++i) write_small_png(d.path + "/cat/" + std::to_string(i) + ".png", i);
  for (int i = 0; i < 16; ++i) write_small_png(d.path + "/dog/" + std::to_string(i) + ".png", 100 + i);
  ImageFolderOptions all_opt, train_opt, val_opt;
  all_opt.size = 16;
  train_opt.size = 24, train_opt.augment = true;
  val_opt.size = 20, val_opt.augment = false, val_opt.channels = 1;
  const ImageFolder all(d.path, all_opt);
  ASSERT_EQ(all.size(), 30);
  const std::set<std::string> everything = paths_of(all);

  auto [train, val] = ImageFolder::split(all, 0.1, 7, train_opt, val_opt);
  EXPECT_EQ(val->size(), 3);
  EXPECT_EQ(train->size(), 27);
  EXPECT_EQ(train->sample_shape(), (Shape{3, 24, 24}));
  EXPECT_EQ(val->sample_shape(), (Shape{1, 20, 20}));
  EXPECT_EQ(train->class_names(), all.class_names());
  EXPECT_EQ(val->num_classes(), 2);
  const auto tp = paths_of(*train), vp = paths_of(*val);
  EXPECT_EQ(tp.size(), 27u) << "a file appears twice in the training part";
  EXPECT_EQ(vp.size(), 3u) << "a file appears twice in the validation part";
  for (const auto& p : vp) EXPECT_EQ(tp.count(p), 0u) << p << " is in both parts";
  std::set<std::string> both = tp;
  both.insert(vp.begin(), vp.end());
  EXPECT_EQ(both, everything) << "the parts together are not the whole folder";
  // Labels travel with their files.
  for (const ImageFolder* part : {train.get(), val.get()})
    for (std::int64_t i = 0; i < part->size(); ++i)
      EXPECT_EQ(fs::path(part->path(i)).parent_path().filename().string(),
                all.class_names()[static_cast<std::size_t>(part->label(i))])
          << part->path(i);
  // The parts load with their own options.
  EXPECT_EQ(load(*val, 0, 0).size(), 1u * 20 * 20);
  EXPECT_EQ(load(*train, 0, 0).size(), 3u * 24 * 24);

  // Deterministic for a seed, different for another.
  auto [train2, val2] = ImageFolder::split(all, 0.1, 7, train_opt, val_opt);
  EXPECT_EQ(paths_of(*val2), vp);
  EXPECT_EQ(paths_of(*train2), tp);
  int differ = 0;
  for (std::uint64_t seed : {8u, 9u, 1000u}) {
    auto [t3, v3] = ImageFolder::split(all, 0.1, seed, train_opt, val_opt);
    EXPECT_EQ(v3->size(), 3);
    if (paths_of(*v3) != vp) ++differ;
  }
  EXPECT_GE(differ, 2) << "other seeds hold out the same files";

  // Other fractions: rounded, at least one.
  EXPECT_EQ(ImageFolder::split(all, 0.5, 1, train_opt, val_opt).second->size(), 15);
  EXPECT_EQ(ImageFolder::split(all, 0.2, 1, train_opt, val_opt).second->size(), 6);
  EXPECT_EQ(ImageFolder::split(all, 0.01, 1, train_opt, val_opt).second->size(), 1);
  EXPECT_THROW(ImageFolder::split(all, 0.0, 1, train_opt, val_opt), kiln::Error);
  EXPECT_THROW(ImageFolder::split(all, 1.0, 1, train_opt, val_opt), kiln::Error);
}

TEST(ImageFolder, SplitOfATinyFolderHoldsOutOne) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/a/1.png", 1);
  write_small_png(d.path + "/b/1.png", 2);
  write_small_png(d.path + "/b/2.png", 3);
  ImageFolderOptions opt;
  opt.size = 16;
  const ImageFolder all(d.path, opt);
  ASSERT_EQ(all.size(), 3);
  auto [train, val] = ImageFolder::split(all, 0.1, 0, opt, opt);
  EXPECT_EQ(val->size(), 1);
  EXPECT_EQ(train->size(), 2);
  std::set<std::string> both = paths_of(*train);
  const auto vp = paths_of(*val);
  both.insert(vp.begin(), vp.end());
  EXPECT_EQ(both, paths_of(all));
}

// ---- class names and the model's evaluation transform ---------------------------------------------

// A class is known by its folder's name, stored in model files as UTF-8 text: other bytes are
// refused when the folder is scanned (before any training), naming the folder printably.
TEST(ImageFolder, ClassFolderNameThatIsNotUtf8IsRefusedNamingIt) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/caf\xe9/1.png", 1);
  write_small_png(d.path + "/tea/1.png", 2);
  const std::string msg = error_of_folder(d.path);
  EXPECT_TRUE(contains(msg, "'caf\\xe9'")) << msg;
  EXPECT_TRUE(contains(msg, "not valid UTF-8")) << msg;
  EXPECT_TRUE(contains(msg, d.path)) << msg;
}

TEST(ImageFolder, ClassFolderNamesMayHoldANewlineAndAnyUtf8) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/a\nb/1.png", 1);
  write_small_png(d.path + "/caf\xc3\xa9/1.png", 2);
  ImageFolderOptions opt;
  opt.size = 16;
  const ImageFolder f(d.path, opt);
  EXPECT_EQ(f.class_names(), (std::vector<std::string>{"a\nb", "caf\xc3\xa9"}));
}

// A model trained on whole images (MNIST digits) asks for Resize: the whole image, as load_image
// (and predict) make it; the folder reports the transform a model trained on it records.
TEST(ImageFolder, EvalTransformResizeTakesTheWholeImage) {
  TempDir d("kiln_if");
  write_small_png(d.path + "/a/1.png", 1, 40, 24);
  write_small_png(d.path + "/b/1.png", 2, 24, 40);
  ImageFolderOptions opt;
  opt.channels = 1, opt.size = 16, opt.augment = false;
  EXPECT_EQ(ImageFolder(d.path, opt).eval_transform(), kiln::data::EvalTransform::CenterCrop);
  opt.eval_transform = kiln::data::EvalTransform::Resize;
  const ImageFolder f(d.path, opt);
  EXPECT_EQ(f.eval_transform(), kiln::data::EvalTransform::Resize);
  for (std::int64_t i = 0; i < f.size(); ++i) {
    const Tensor whole = kiln::data::load_image(f.path(i), 1, 16, 16);
    EXPECT_EQ(load(f, i, 0), whole.to_vector<std::uint8_t>()) << f.path(i);
  }
  EXPECT_TRUE(contains(f.describe(), d.path)) << f.describe();
}

// Evaluation loaders (Unloadable::Drop) leave an undecodable file out instead of repeating another
// sample: every good sample exactly once, the bad one named by index.
TEST(ImageFolder, EvaluationDropsAnUndecodableFileAndNamesIt) {
  TempDir d("kiln_if");
  const std::string bad = corrupt_folder(d);
  ImageFolderOptions opt;
  opt.channels = 3, opt.size = 16, opt.augment = false;
  auto f = std::make_shared<ImageFolder>(d.file("data"), opt);
  kiln::data::LoaderOptions lo;
  lo.batch_size = 3, lo.shuffle = false, lo.workers = 2, lo.unloadable = kiln::data::Unloadable::Drop;
  kiln::data::Loader loader(f, lo);
  loader.start_epoch(0);
  kiln::data::Batch b;
  std::int64_t samples = 0;
  while (loader.next(b)) samples += b.labels.numel();
  EXPECT_EQ(samples, f->size() - 1);
  ASSERT_EQ(loader.skipped_samples().size(), 1u);
  EXPECT_EQ(f->path(loader.skipped_samples()[0]), bad);
}

}  // namespace

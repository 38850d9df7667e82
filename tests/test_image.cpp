// load_image: PNG (grey, grey+alpha, RGB, RGBA), JPEG and BMP fixtures written with stb_image_write,
// decoded to 1 or 3 channels at their own size (exact for lossless formats) and resized (area
// averaging when shrinking, bilinear with aligned pixel centres when enlarging); unreadable files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "kiln/image.h"
#include "kiln/kiln.h"
#include "test_util.h"
#include "train_fixtures.h"

#include "stb_write.h"

namespace {

using kiln::DType;
using kiln::Shape;
using kiln::Tensor;
using kiln::data::load_image;
using kt::TempDir;

// An interleaved 8-bit image (stb's layout: rows of w pixels of `comp` bytes).
struct Image {
  int w = 0, h = 0, comp = 0;
  std::vector<std::uint8_t> px;
  std::uint8_t at(int x, int y, int c) const { return px[static_cast<std::size_t>((y * w + x) * comp + c)]; }
};

template <class F>
Image make_image(int w, int h, int comp, F value) {  // value(x, y, c) -> 0..255
  Image im{w, h, comp, std::vector<std::uint8_t>(static_cast<std::size_t>(w * h * comp))};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < comp; ++c)
        im.px[static_cast<std::size_t>((y * w + x) * comp + c)] = static_cast<std::uint8_t>(value(x, y, c));
  return im;
}

// Distinct, irregular values in every channel (an exact decode cannot match by accident).
Image pattern(int w, int h, int comp) {
  return make_image(w, h, comp, [](int x, int y, int c) { return (37 * x + 91 * y + 59 * c + 13 * x * y) % 256; });
}

std::string write_png(const TempDir& d, const std::string& name, const Image& im) {
  const std::string path = d.file(name);
  EXPECT_NE(stbi_write_png(path.c_str(), im.w, im.h, im.comp, im.px.data(), im.w * im.comp), 0) << path;
  return path;
}
std::string write_bmp(const TempDir& d, const std::string& name, const Image& im) {
  const std::string path = d.file(name);
  EXPECT_NE(stbi_write_bmp(path.c_str(), im.w, im.h, im.comp, im.px.data()), 0) << path;
  return path;
}
std::string write_jpg(const TempDir& d, const std::string& name, const Image& im, int quality) {
  const std::string path = d.file(name);
  EXPECT_NE(stbi_write_jpg(path.c_str(), im.w, im.h, im.comp, im.px.data(), quality), 0) << path;
  return path;
}

// The decoded tensor must be uint8 [C, H, W] on the CPU.
std::vector<std::uint8_t> planes(const Tensor& t, int c, int h, int w) {
  EXPECT_EQ(t.dtype(), DType::UInt8);
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_EQ(t.shape(), (Shape{c, h, w}));
  return t.to_vector<std::uint8_t>();
}

std::uint8_t plane_at(const std::vector<std::uint8_t>& p, int w, int h, int x, int y, int c) {
  return p[static_cast<std::size_t>((c * h + y) * w + x)];
}

// ITU-R BT.601 luma, the grey value of an RGB pixel; decoders approximate it in fixed point.
double luma(double r, double g, double b) { return 0.299 * r + 0.587 * g + 0.114 * b; }
// stb_image's integer approximation (77, 150, 29) / 256 with truncation errs by less than 2 levels.
constexpr double kLumaTol = 2.0;

// Every pixel of `t` (C planes) against expected(x, y, c), within `tol` levels.
template <class F>
void expect_pixels(const Tensor& t, int C, int H, int W, F expected, double tol, const std::string& what) {
  const auto p = planes(t, C, H, W);
  if (p.size() != static_cast<std::size_t>(C * H * W)) return;
  int bad = 0;
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const double e = expected(x, y, c), a = plane_at(p, W, H, x, y, c);
        if (std::fabs(a - e) > tol && bad++ < 5)
          ADD_FAILURE() << what << ": pixel (x=" << x << ", y=" << y << ", c=" << c << ") = " << a << ", expected "
                        << e << " (tolerance " << tol << ")";
      }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " pixels outside the tolerance";
}

// ---- decoding at the image's own size --------------------------------------------------------------

// A few bytes can claim a huge image: refused from the header, naming the file and its size.
TEST(LoadImage, HugeDimensionsInTheHeaderAreRefusedBeforeDecoding) {
  TempDir d("kiln_img");
  auto be32 = [](std::uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  // IHDR of a 16000 x 17000 RGB PNG (816 MB decoded, within stb's own PNG limit); no pixel data.
  const std::string ihdr = "IHDR" + be32(16000) + be32(17000) + std::string("\x08\x02\x00\x00\x00", 5);
  const std::string path = d.file("bomb.png");
  kt::write_bytes(path, "\x89PNG\r\n\x1a\n" + be32(13) + ihdr + be32(0));
  kt::expect_error_naming([&] { kiln::data::decode_image(path, 3); }, {path, "16000x17000", "too large"}, "huge header");
}

TEST(LoadImage, PngGrey) {
  TempDir d("kiln_img");
  const Image im = pattern(7, 5, 1);
  const std::string path = write_png(d, "grey.png", im);
  expect_pixels(load_image(path, 1, 5, 7), 1, 5, 7, [&](int x, int y, int) { return im.at(x, y, 0); }, 0, "grey -> 1");
  expect_pixels(load_image(path, 3, 5, 7), 3, 5, 7, [&](int x, int y, int) { return im.at(x, y, 0); }, 0,
                "grey -> 3 (replicated)");
}

TEST(LoadImage, PngGreyAlpha) {
  TempDir d("kiln_img");
  const Image im = pattern(6, 4, 2);
  const std::string path = write_png(d, "ga.png", im);
  expect_pixels(load_image(path, 1, 4, 6), 1, 4, 6, [&](int x, int y, int) { return im.at(x, y, 0); }, 0,
                "grey+alpha -> 1 (alpha dropped)");
  expect_pixels(load_image(path, 3, 4, 6), 3, 4, 6, [&](int x, int y, int) { return im.at(x, y, 0); }, 0,
                "grey+alpha -> 3");
}

TEST(LoadImage, PngRgb) {
  TempDir d("kiln_img");
  const Image im = pattern(9, 6, 3);
  const std::string path = write_png(d, "rgb.png", im);
  expect_pixels(load_image(path, 3, 6, 9), 3, 6, 9, [&](int x, int y, int c) { return im.at(x, y, c); }, 0,
                "rgb -> 3");
  expect_pixels(load_image(path, 1, 6, 9), 1, 6, 9,
                [&](int x, int y, int) { return luma(im.at(x, y, 0), im.at(x, y, 1), im.at(x, y, 2)); }, kLumaTol,
                "rgb -> 1 (luma)");
}

TEST(LoadImage, PngRgba) {
  TempDir d("kiln_img");
  const Image im = pattern(8, 7, 4);
  const std::string path = write_png(d, "rgba.png", im);
  expect_pixels(load_image(path, 3, 7, 8), 3, 7, 8, [&](int x, int y, int c) { return im.at(x, y, c); }, 0,
                "rgba -> 3 (alpha dropped, not premultiplied)");
  expect_pixels(load_image(path, 1, 7, 8), 1, 7, 8,
                [&](int x, int y, int) { return luma(im.at(x, y, 0), im.at(x, y, 1), im.at(x, y, 2)); }, kLumaTol,
                "rgba -> 1 (luma)");
}

TEST(LoadImage, Bmp) {
  TempDir d("kiln_img");
  const Image im = pattern(5, 9, 3);  // odd width: BMP rows are padded to 4 bytes
  const std::string path = write_bmp(d, "rgb.bmp", im);
  expect_pixels(load_image(path, 3, 9, 5), 3, 9, 5, [&](int x, int y, int c) { return im.at(x, y, c); }, 0,
                "bmp -> 3");
  expect_pixels(load_image(path, 1, 9, 5), 1, 9, 5,
                [&](int x, int y, int) { return luma(im.at(x, y, 0), im.at(x, y, 1), im.at(x, y, 2)); }, kLumaTol,
                "bmp -> 1");
}

TEST(LoadImage, JpegWithinTolerance) {
  TempDir d("kiln_img");
  // Smooth content: at quality 100 JPEG's quantisation and colour conversion move it by a few levels.
  const Image im = make_image(16, 16, 3, [](int x, int y, int c) {
    return c == 0 ? 40 + 6 * x + 3 * y : c == 1 ? 220 - 4 * y - 2 * x : 60 + 5 * x + 4 * y;
  });
  const std::string path = write_jpg(d, "rgb.jpg", im, 100);
  const Tensor t = load_image(path, 3, 16, 16);
  expect_pixels(t, 3, 16, 16, [&](int x, int y, int c) { return im.at(x, y, c); }, 8, "jpeg -> 3");
  const auto p = planes(t, 3, 16, 16);
  double sum = 0;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) sum += std::fabs(plane_at(p, 16, 16, x, y, c) - static_cast<double>(im.at(x, y, c)));
  EXPECT_LT(sum / (3 * 16 * 16), 2.0) << "mean absolute error of the JPEG round trip";
  expect_pixels(load_image(path, 1, 16, 16), 1, 16, 16,
                [&](int x, int y, int) { return luma(im.at(x, y, 0), im.at(x, y, 1), im.at(x, y, 2)); }, 8 + kLumaTol,
                "jpeg -> 1");
}

// ---- resizing -------------------------------------------------------------------------------------

TEST(LoadImage, ConstantImageStaysConstantAtAnySize) {
  TempDir d("kiln_img");
  const int rgb[3] = {137, 20, 250};
  const Image im = make_image(10, 8, 3, [&](int, int, int c) { return rgb[c]; });
  const std::string path = write_png(d, "const.png", im);
  const std::uint8_t grey = planes(load_image(path, 1, 8, 10), 1, 8, 10)[0];
  EXPECT_NEAR(grey, luma(137, 20, 250), kLumaTol);
  const int sizes[][2] = {{4, 5}, {3, 7}, {1, 1}, {16, 20}, {8, 23}, {5, 13}, {17, 3}, {28, 28}};
  for (const auto& s : sizes) {
    const int H = s[0], W = s[1];
    const std::string what = "constant 8x10 -> " + std::to_string(H) + "x" + std::to_string(W);
    expect_pixels(load_image(path, 3, H, W), 3, H, W, [&](int, int, int c) { return rgb[c]; }, 0, what);
    expect_pixels(load_image(path, 1, H, W), 1, H, W, [&](int, int, int) { return grey; }, 0, what + " grey");
  }
}

TEST(LoadImage, HalvingACheckerboardAverages) {
  TempDir d("kiln_img");
  const Image im = make_image(8, 8, 1, [](int x, int y, int) { return (x + y) % 2 ? 200 : 10; });
  const std::string path = write_png(d, "checker.png", im);
  expect_pixels(load_image(path, 1, 4, 4), 1, 4, 4, [](int, int, int) { return 105; }, 0, "checkerboard 8x8 -> 4x4");
  expect_pixels(load_image(path, 3, 2, 2), 3, 2, 2, [](int, int, int) { return 105; }, 0, "checkerboard 8x8 -> 2x2");
  // odd cell counts do not average to the mean: 8 -> 8 keeps the pattern
  expect_pixels(load_image(path, 1, 8, 8), 1, 8, 8, [&](int x, int y, int) { return im.at(x, y, 0); }, 0,
                "checkerboard at its own size");
}

TEST(LoadImage, HalvingAveragesEachBlock) {
  TempDir d("kiln_img");
  const int v[4][4] = {{0, 40, 100, 100}, {80, 120, 60, 20}, {255, 255, 7, 9}, {253, 253, 11, 1}};
  const Image im = make_image(4, 4, 1, [&](int x, int y, int) { return v[y][x]; });
  const std::string path = write_png(d, "blocks.png", im);
  const int mean[2][2] = {{60, 70}, {254, 7}};  // (0+40+80+120)/4, (100+100+60+20)/4, ...
  expect_pixels(load_image(path, 1, 2, 2), 1, 2, 2, [&](int x, int y, int) { return mean[y][x]; }, 0, "4x4 -> 2x2");
  // 4 -> 1 along one axis only: row means
  expect_pixels(load_image(path, 1, 4, 1), 1, 4, 1,
                [&](int, int y, int) { return (v[y][0] + v[y][1] + v[y][2] + v[y][3]) / 4.0; }, 0.5,
                "4x4 -> 4x1 (row means)");
}

TEST(LoadImage, NonIntegerShrinkWeighsByCoverage) {
  TempDir d("kiln_img");
  const Image im = make_image(3, 1, 1, [](int x, int, int) { return 90 * x; });  // 0, 90, 180
  const std::string path = write_png(d, "ramp3.png", im);
  // output pixel 0 covers [0, 1.5): (0 + 0.5 * 90) / 1.5 = 30; pixel 1 covers [1.5, 3): (45 + 180) / 1.5 = 150
  const int expect[2] = {30, 150};
  expect_pixels(load_image(path, 1, 1, 2), 1, 1, 2, [&](int x, int, int) { return expect[x]; }, 0, "3 -> 2");
}

TEST(LoadImage, EnlargingInterpolatesBilinearly) {
  TempDir d("kiln_img");
  const Image im = make_image(2, 1, 1, [](int x, int, int) { return 200 * x; });  // 0, 200
  const std::string path = write_png(d, "ramp2.png", im);
  // centres aligned: source x = (X + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1])
  const int expect[4] = {0, 50, 150, 200};
  expect_pixels(load_image(path, 1, 1, 4), 1, 1, 4, [&](int x, int, int) { return expect[x]; }, 0, "2 -> 4");
  expect_pixels(load_image(path, 3, 3, 4), 3, 3, 4, [&](int x, int, int) { return expect[x]; }, 0,
                "2x1 -> 4x3 (rows replicated)");
}

// ---- errors -----------------------------------------------------------------------------------------

std::string error_of(const std::string& path, int channels, int h, int w) {
  try {
    load_image(path, channels, h, w);
  } catch (const kiln::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_image(" << path << ", " << channels << ", " << h << ", " << w << ") did not throw";
  return "";
}

TEST(LoadImage, MissingFileThrowsNamingIt) {
  TempDir d("kiln_img");
  const std::string path = d.file("no-such-image.png");
  const std::string msg = error_of(path, 1, 28, 28);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(LoadImage, CorruptFilesThrowNamingThem) {
  TempDir d("kiln_img");
  const std::string garbage = d.file("garbage.png");
  kt::write_bytes(garbage, "this is not an image, just some text that is long enough to look like a header");
  std::string msg = error_of(garbage, 1, 28, 28);
  EXPECT_NE(msg.find(garbage), std::string::npos) << msg;

  const std::string good = write_png(d, "good.png", pattern(32, 32, 3));
  const std::string bytes = kt::read_bytes(good);
  const std::string truncated = d.file("truncated.png");
  kt::write_bytes(truncated, bytes.substr(0, bytes.size() / 2));
  msg = error_of(truncated, 3, 32, 32);
  EXPECT_NE(msg.find(truncated), std::string::npos) << msg;

  const std::string empty = d.file("empty.jpg");
  kt::write_bytes(empty, "");
  msg = error_of(empty, 3, 8, 8);
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
}

TEST(LoadImage, BadArgumentsThrow) {
  TempDir d("kiln_img");
  const std::string path = write_png(d, "ok.png", pattern(4, 4, 3));
  error_of(path, 2, 4, 4);
  error_of(path, 4, 4, 4);
  error_of(path, 0, 4, 4);
  error_of(path, 3, 0, 4);
  error_of(path, 3, 4, -1);
}

}  // namespace

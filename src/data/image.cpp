// Image decoding (stb_image) and resizing to a model's input size.
#include "kiln/image.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "io/files.h"

#include <stb/stb_image.h>  // the implementation: src/data/stb_image.cpp

namespace kiln::data {

namespace {
// A header whose size exceeds this is refused before anything is allocated: a file of a few bytes
// can claim 16000 x 16000 pixels (stb's own limits allow up to 2^24 per side, and about 1 GB of
// decoded data for PNG), and image-folder workers decode several files at once.
constexpr std::int64_t kMaxPixels = std::int64_t{1} << 28;  // 16384 x 16384

void check_dimensions(const std::string& path, const std::string& bytes) {
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()), &w, &h,
                             &n))
    return;  // not an image: stbi_load_from_memory says why
  KILN_CHECK(static_cast<std::int64_t>(w) * h <= kMaxPixels, path, ": image of ", w, "x", h,
             " pixels is too large to decode (at most ", kMaxPixels, " pixels, e.g. 16384x16384)");
}
}  // namespace

Image decode_image(const std::string& path, int channels) {
  KILN_CHECK(channels == 1 || channels == 3, "decode_image: channels must be 1 or 3, got ", channels);
  int w = 0, h = 0, n = 0;
  // stb converts 16-bit images to 8 bits and any channel count (grey, grey+alpha, RGB, RGBA) to the
  // one requested. stbi_failure_reason() is thread-local in this build (STBI_THREAD_LOCAL).
  const std::string bytes = io::read_all(path);  // a regular file only: never blocks on a FIFO
  KILN_CHECK(bytes.size() <= static_cast<std::size_t>(INT_MAX), path, ": ", bytes.size(),
             " bytes is too large for an image");
  check_dimensions(path, bytes);
  stbi_uc* pixels = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                          static_cast<int>(bytes.size()), &w, &h, &n, channels);
  if (!pixels) KILN_FAIL(path, ": cannot decode image: ", stbi_failure_reason());
  Image img;
  img.width = w, img.height = h, img.channels = channels;
  img.pixels.assign(pixels, pixels + static_cast<std::size_t>(w) * h * channels);
  stbi_image_free(pixels);
  return img;
}

void crop_resize(const Image& img, double bx, double by, double bw, double bh, int H, int W, bool flip,
                 std::uint8_t* dst) {
  const int C = img.channels, w = img.width, h = img.height;
  const double sy = bh / H, sx = bw / W;
  const std::uint8_t* src = img.pixels.data();
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int xo = 0; xo < W; ++xo) {
        const int x = flip ? W - 1 - xo : xo;
        double v = 0.0;
        if (sy >= 1.0 && sx >= 1.0) {  // area average over the source footprint
          const double y0 = by + y * sy, y1 = y0 + sy, x0 = bx + x * sx, x1 = x0 + sx;
          double wsum = 0.0;
          const int ye = std::min(h, static_cast<int>(std::ceil(y1))), xe = std::min(w, static_cast<int>(std::ceil(x1)));
          for (int yy = std::max(0, static_cast<int>(y0)); yy < ye; ++yy) {
            const double wy = std::min<double>(yy + 1, y1) - std::max<double>(yy, y0);
            for (int xx = std::max(0, static_cast<int>(x0)); xx < xe; ++xx) {
              const double wx = std::min<double>(xx + 1, x1) - std::max<double>(xx, x0);
              v += wy * wx * src[(static_cast<std::size_t>(yy) * w + xx) * C + c];
              wsum += wy * wx;
            }
          }
          v = wsum > 0 ? v / wsum : 0.0;
        } else {  // bilinear, pixel centres aligned
          const double fy = std::clamp(by + (y + 0.5) * sy - 0.5, 0.0, h - 1.0);
          const double fx = std::clamp(bx + (x + 0.5) * sx - 0.5, 0.0, w - 1.0);
          const int y0 = static_cast<int>(fy), x0 = static_cast<int>(fx);
          const int y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
          const double ay = fy - y0, ax = fx - x0;
          auto at = [&](int yy, int xx) { return static_cast<double>(src[(static_cast<std::size_t>(yy) * w + xx) * C + c]); };
          v = (1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x1)) + ay * ((1 - ax) * at(y1, x0) + ax * at(y1, x1));
        }
        dst[(static_cast<std::size_t>(c) * H + y) * W + xo] = static_cast<std::uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
}

void center_crop_resize(const Image& img, int out_h, int out_w, std::uint8_t* dst) {
  const double w = img.width, h = img.height;
  const double scale = std::min(w, h) / (out_h * 8.0 / 7.0);
  const double cw = std::min(w, out_w * scale), ch = std::min(h, out_h * scale);
  crop_resize(img, (w - cw) / 2, (h - ch) / 2, cw, ch, out_h, out_w, false, dst);
}

void apply_eval_transform(const Image& img, EvalTransform t, int out_h, int out_w, std::uint8_t* dst) {
  if (t == EvalTransform::CenterCrop)
    center_crop_resize(img, out_h, out_w, dst);
  else
    crop_resize(img, 0, 0, img.width, img.height, out_h, out_w, false, dst);
}

Tensor load_image(const std::string& path, int channels, int height, int width) {
  KILN_CHECK(channels == 1 || channels == 3, "load_image: channels must be 1 or 3, got ", channels);
  KILN_CHECK(height > 0 && width > 0, "load_image: bad target size ", height, "x", width);
  const Image img = decode_image(path, channels);
  Tensor t = Tensor::empty({channels, height, width}, DType::UInt8);
  apply_eval_transform(img, EvalTransform::Resize, height, width, t.data<std::uint8_t>());
  return t;
}

}  // namespace kiln::data

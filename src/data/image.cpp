// Image decoding (stb_image) and resizing to a model's input size.
#include "kiln/image.h"

#include <algorithm>
#include <cmath>
#include <vector>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>

namespace kiln::data {

namespace {
// Resamples one channel plane (src h x w) to (H x W): box filter when shrinking, bilinear otherwise.
void resize_plane(const float* src, int h, int w, float* dst, int H, int W) {
  const double sy = static_cast<double>(h) / H, sx = static_cast<double>(w) / W;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      double v = 0.0;
      if (sy >= 1.0 && sx >= 1.0) {  // area average over the source footprint
        const double y0 = y * sy, y1 = (y + 1) * sy, x0 = x * sx, x1 = (x + 1) * sx;
        double wsum = 0.0;
        for (int yy = static_cast<int>(y0); yy < std::min(h, static_cast<int>(std::ceil(y1))); ++yy) {
          const double wy = std::min<double>(yy + 1, y1) - std::max<double>(yy, y0);
          for (int xx = static_cast<int>(x0); xx < std::min(w, static_cast<int>(std::ceil(x1))); ++xx) {
            const double wx = std::min<double>(xx + 1, x1) - std::max<double>(xx, x0);
            v += wy * wx * src[yy * w + xx];
            wsum += wy * wx;
          }
        }
        v = wsum > 0 ? v / wsum : 0.0;
      } else {  // bilinear, pixel centres aligned
        const double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, h - 1.0);
        const double fx = std::clamp((x + 0.5) * sx - 0.5, 0.0, w - 1.0);
        const int y0 = static_cast<int>(fy), x0 = static_cast<int>(fx);
        const int y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
        const double ay = fy - y0, ax = fx - x0;
        v = (1 - ay) * ((1 - ax) * src[y0 * w + x0] + ax * src[y0 * w + x1]) +
            ay * ((1 - ax) * src[y1 * w + x0] + ax * src[y1 * w + x1]);
      }
      dst[y * W + x] = static_cast<float>(v);
    }
}
}  // namespace

Tensor load_image(const std::string& path, int channels, int height, int width) {
  KILN_CHECK(channels == 1 || channels == 3, "load_image: channels must be 1 or 3, got ", channels);
  KILN_CHECK(height > 0 && width > 0, "load_image: bad target size ", height, "x", width);
  int w = 0, h = 0, n = 0;
  // stb converts 16-bit images to 8 bits and any channel count to the one requested.
  stbi_uc* pixels = stbi_load(path.c_str(), &w, &h, &n, channels);
  if (!pixels) KILN_FAIL(path, ": cannot decode image: ", stbi_failure_reason());
  std::vector<float> plane(static_cast<std::size_t>(w) * h), out(static_cast<std::size_t>(width) * height);
  Tensor t = Tensor::empty({channels, height, width}, DType::UInt8);
  std::uint8_t* dst = t.data<std::uint8_t>();
  for (int c = 0; c < channels; ++c) {
    for (std::size_t i = 0; i < plane.size(); ++i) plane[i] = pixels[i * static_cast<std::size_t>(channels) + c];
    resize_plane(plane.data(), h, w, out.data(), height, width);
    for (std::size_t i = 0; i < out.size(); ++i)
      dst[static_cast<std::size_t>(c) * out.size() + i] =
          static_cast<std::uint8_t>(std::clamp(std::lround(out[i]), 0L, 255L));
  }
  stbi_image_free(pixels);
  return t;
}

}  // namespace kiln::data

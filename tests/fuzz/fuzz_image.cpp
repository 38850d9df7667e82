// libFuzzer target: data::decode_image (stb_image behind kiln's size checks) and the evaluation
// transform that image folders and `kiln predict` apply to every decoded image.
//
// The first byte picks the channels (1 or 3), the transform (Resize or CenterCrop) and the output
// size (8 to 71 pixels a side); the rest is the file. A decoded image must hold width x height x
// channels pixels, and the transform must write inside its output (AddressSanitizer checks the
// exact-size buffer).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <stb/stb_image.h>

#include "fuzz_input.h"
#include "kiln/error.h"
#include "kiln/image.h"

namespace {

// Above this the input is skipped, not decoded: kiln accepts up to 2^28 pixels, but decoding and
// resizing a picture of that size takes seconds, and libFuzzer would report it as a hang.
constexpr long kMaxFuzzPixels = 1L << 20;

bool too_large_to_fuzz(const std::uint8_t* file, std::size_t size) {
  int w = 0, h = 0, n = 0;
  return stbi_info_from_memory(file, static_cast<int>(size), &w, &h, &n) && static_cast<long>(w) * h > kMaxFuzzPixels;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2 || too_large_to_fuzz(data + 1, size - 1)) return 0;
  const int channels = data[0] & 1 ? 3 : 1;
  const auto transform = data[0] & 2 ? kiln::data::EvalTransform::CenterCrop : kiln::data::EvalTransform::Resize;
  const int out = 8 + (data[0] >> 2);
  const kiln::fuzz::InputFile file(data + 1, size - 1);
  kiln::data::Image img;
  try {
    img = kiln::data::decode_image(file.path(), channels);
  } catch (const kiln::Error&) {
    return 0;  // refused: the expected outcome for most inputs
  }
  if (img.width < 1 || img.height < 1 || img.channels != channels ||
      img.pixels.size() != static_cast<std::size_t>(img.width) * img.height * channels) {
    std::fprintf(stderr, "decode_image returned a %dx%dx%d image holding %zu bytes\n", img.width, img.height,
                 img.channels, img.pixels.size());
    std::abort();
  }
  std::vector<std::uint8_t> dst(static_cast<std::size_t>(channels) * out * out);
  kiln::data::apply_eval_transform(img, transform, out, out, dst.data());
  return 0;
}

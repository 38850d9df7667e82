// kiln/image.h — image files (PNG, JPEG, BMP, ... via stb_image) to uint8 tensors.
#pragma once

#include <string>

#include "kiln/tensor.h"

namespace kiln::data {

// Decodes `path` and converts it to `channels` (1: luminance, 3: RGB; grey, grey+alpha, RGB, RGBA and
// 16-bit inputs are all converted), resized with area averaging (shrinking) or bilinear
// interpolation (enlarging) to height x width. Returns uint8 [channels, height, width] on the CPU.
// A file that is missing or fails to decode is a kiln::Error naming it and stb_image's reason.
Tensor load_image(const std::string& path, int channels, int height, int width);

}  // namespace kiln::data

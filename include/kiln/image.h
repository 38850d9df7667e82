// kiln/image.h — image files (PNG, JPEG, BMP, ... via stb_image) to uint8 tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/data.h"
#include "kiln/tensor.h"

namespace kiln::data {

// Decodes `path` and converts it to `channels` (1: luminance, 3: RGB; grey, grey+alpha, RGB, RGBA and
// 16-bit inputs are all converted), resized with area averaging (shrinking) or bilinear
// interpolation (enlarging) to height x width. Returns uint8 [channels, height, width] on the CPU.
// A file that is missing or fails to decode is a kiln::Error naming it and stb_image's reason.
Tensor load_image(const std::string& path, int channels, int height, int width);

// A decoded image: interleaved uint8 pixels (HWC) with `channels` channels.
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
};
// Decodes `path` to `channels` (1 or 3). kiln::Error naming the file and stb_image's reason on failure.
Image decode_image(const std::string& path, int channels);
// Crops the box (x, y, w, h) (in source pixels, fractional allowed) out of `img`, resamples it to
// out_h x out_w (area averaging when shrinking, bilinear when enlarging), optionally mirrors it
// horizontally, and writes planar uint8 [C, out_h, out_w] to dst.
void crop_resize(const Image& img, double x, double y, double w, double h, int out_h, int out_w, bool flip,
                 std::uint8_t* dst);

// The evaluation transform: resize the shorter side to out_h * 8/7 (256 for 224), then centre-crop
// out_h x out_w. Writes planar uint8 [C, out_h, out_w] to dst.
void center_crop_resize(const Image& img, int out_h, int out_w, std::uint8_t* dst);

// `t` applied to `img`: writes planar uint8 [C, out_h, out_w] to dst (Resize: the whole image,
// CenterCrop: center_crop_resize). The one evaluation transform of image folders and predict.
void apply_eval_transform(const Image& img, EvalTransform t, int out_h, int out_w, std::uint8_t* dst);

// `--dataset imagefolder`: DIR/<class>/<image>, classes = sorted sub-folder names, images with the
// extensions stb_image decodes (jpg, jpeg, png, bmp, gif, tga, ppm, pgm, psd, hdr; any case).
// Training samples get a random-resized crop (scale 0.08-1, aspect 3/4-4/3) and a random horizontal
// flip; evaluation samples get `eval_transform` (by default: shorter side resized to size * 8/7,
// then centre-cropped; a model trained on other data may ask for Resize). Decoding runs in the
// loader's worker threads.
struct ImageFolderOptions {
  int channels = 3;
  int size = 224;
  bool augment = true;  // false: evaluation transform
  bool strict = false;  // true: a file that fails to decode is an error, not a skip
  EvalTransform eval_transform = EvalTransform::CenterCrop;  // for evaluation samples (augment false)
};

class ImageFolder final : public Source {
 public:
  // Scans `dir`; an empty folder or a class without images is a kiln::Error naming it.
  ImageFolder(const std::string& dir, const ImageFolderOptions& options);
  // The same files with other options, restricted to `indices` (for a hold-out split).
  ImageFolder(const ImageFolder& base, std::vector<std::int64_t> indices, const ImageFolderOptions& options);
  // Splits a seeded `fraction` of the files (at least one) off for validation: {train, validation}.
  static std::pair<std::shared_ptr<ImageFolder>, std::shared_ptr<ImageFolder>> split(
      const ImageFolder& all, double fraction, std::uint64_t seed, const ImageFolderOptions& train_options,
      const ImageFolderOptions& val_options);

  std::int64_t size() const override { return static_cast<std::int64_t>(indices_.size()); }
  Shape sample_shape() const override { return {opt_.channels, opt_.size, opt_.size}; }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::int32_t label(std::int64_t i) const override;
  bool load(std::int64_t i, std::uint8_t* dst, std::uint64_t rng) const override;
  EvalTransform eval_transform() const override { return opt_.eval_transform; }
  std::string describe() const override;  // Source::describe() and the folder
  const std::string& path(std::int64_t i) const;

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::shared_ptr<const std::vector<std::pair<std::string, std::int32_t>>> files_;  // path, label
  std::vector<std::int64_t> indices_;
  ImageFolderOptions opt_;
};

}  // namespace kiln::data

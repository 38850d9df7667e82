// kiln/data.h — datasets: IDX files (MNIST, Fashion-MNIST) in memory, and the Source interface the
// Loader draws samples from (image folders: kiln/image.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/tensor.h"

namespace kiln::data {

// Reads an IDX file (plain, or gzip-compressed: detected by its magic bytes, not its name) holding
// unsigned bytes (type code 0x08), into a CPU uint8 tensor with the file's dimensions. Validates the
// magic number, the type code, the dimension count, and the sizes against the file's length; each
// failure is a kiln::Error naming the file and what is wrong.
Tensor read_idx(const std::string& path);

// An image-classification dataset held in memory.
struct Dataset {
  Tensor images;  // uint8 [N, C, H, W] on the CPU
  Tensor labels;  // int32 [N] on the CPU
  int num_classes = 0;
  std::vector<std::string> class_names;
  std::int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

// How an image file becomes a model's input at evaluation (kiln eval, kiln predict, validation), a
// property of the data the model was trained on, so that it is recorded with the model: the whole
// image resized to the input size (MNIST-style digits, which fill their frame; in-memory datasets
// hold whole images), or its shorter side resized to size * 8/7 and the centre cropped (image
// folders: photos, evaluated the way torchvision evaluates ImageNet models).
enum class EvalTransform { Resize, CenterCrop };
const char* eval_transform_name(EvalTransform t);  // "resize" | "center-crop"
// kiln::Error naming `what` when `name` is neither.
EvalTransform parse_eval_transform(const std::string& name, const std::string& what);

// Where the Loader takes samples from: an in-memory dataset, or an image folder decoded on the fly.
// load() is called from the loader's worker threads concurrently and must be thread-safe.
class Source {
 public:
  virtual ~Source() = default;
  virtual std::int64_t size() const = 0;
  virtual Shape sample_shape() const = 0;  // [C, H, W] of every produced sample
  virtual std::int64_t num_classes() const = 0;
  virtual std::vector<std::string> class_names() const = 0;
  virtual std::int32_t label(std::int64_t index) const = 0;
  // Writes sample `index` as uint8 [C, H, W] into dst. `rng` is a per-(epoch, position) counter that
  // seeds random augmentation, so a sample's augmentation is reproducible. Returns false when the
  // sample cannot be produced (a file that fails to decode); strict sources throw instead.
  virtual bool load(std::int64_t index, std::uint8_t* dst, std::uint64_t rng) const = 0;
  // How an image file would become one of this source's evaluation samples; a model trained on the
  // source records it. In-memory datasets hold whole images: Resize.
  virtual EvalTransform eval_transform() const { return EvalTransform::Resize; }
  // A short description for progress output ("60000 images 1x28x28").
  virtual std::string describe() const;
};

// kiln::Error unless `data` has the classes of `expected_what` (a model, or a training set): the
// same count and, in label order, the same names, so a label means one class to both. Empty
// `expected_names` (a weights-only model file, whose classes have no names) compares the count
// only. The message names both sides and the classes that differ.
void check_same_classes(const std::string& expected_what, std::int64_t expected_count,
                        const std::vector<std::string>& expected_names, const std::string& data_what,
                        const Source& data);

// A Source over a Dataset held in memory (the dataset must outlive it).
std::shared_ptr<const Source> in_memory(const Dataset& dataset);

// `n` samples of random pixels and labels for benchmarks: a pool of 64 random images, repeated.
std::shared_ptr<const Source> random_images(std::int64_t n, const Shape& sample_shape, std::int64_t classes,
                                            std::uint64_t seed = 0);

// Loads the train or test split of MNIST or Fashion-MNIST from `dir`, which holds the four standard
// files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte), each plain or with a .gz suffix. Checks that image and label counts agree
// and that every label is in [0, 10). `name` is "mnist" or "fashion-mnist" (sets class_names).
Dataset load_mnist(const std::string& dir, bool train, const std::string& name = "mnist");

}  // namespace kiln::data

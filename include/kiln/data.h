// kiln/data.h — datasets on disk: IDX files (MNIST, Fashion-MNIST).
#pragma once

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

// Loads the train or test split of MNIST or Fashion-MNIST from `dir`, which holds the four standard
// files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte), each plain or with a .gz suffix. Checks that image and label counts agree
// and that every label is in [0, 10). `name` is "mnist" or "fashion-mnist" (sets class_names).
Dataset load_mnist(const std::string& dir, bool train, const std::string& name = "mnist");

}  // namespace kiln::data

// Internal: the blocks behind a Tensor handle. Library code that reaches into a tensor's storage,
// offset or autograd fields (through Tensor::impl() / impl_ptr()) includes this header; the public
// kiln/tensor.h only forward-declares TensorImpl.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "kiln/device.h"
#include "kiln/dtype.h"
#include "kiln/tensor.h"

namespace kiln {

// A block of memory on one device. Host memory is 64-byte aligned; pinned host memory
// (page-locked, for asynchronous copies) comes from the CUDA runtime when it is built in.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(std::size_t bytes, Device device, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Device device_;
  bool pinned_ = false;
  void* block_ = nullptr;  // allocator bookkeeping for device memory
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  std::size_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::Float32;

  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;      // accumulated gradient (leaves)
  std::shared_ptr<Node> grad_fn;         // the op that produced this tensor (non-leaves)
  std::weak_ptr<Node> grad_accumulator;  // the leaf's accumulation node, shared by all graphs
  // Set by nn::ParameterStore: the view of its flat gradient buffer that `grad` becomes when a backward
  // pass first reaches this leaf (written, not reallocated), and the hook run once per backward pass
  // when this leaf's gradient is final.
  std::shared_ptr<TensorImpl> grad_view;
  std::function<void()> grad_ready;
};

}  // namespace kiln

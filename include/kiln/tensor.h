// kiln/tensor.h — the N-D tensor: a shape and dtype over shared, contiguous storage on one device.
//
// A Tensor is a cheap handle (shared_ptr to TensorImpl). Views (reshape, flatten, detach, slicing
// along dim 0) share the Storage without copying. Storage is always contiguous and row-major
// (NCHW for images). Copies between devices are explicit: to(device).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kiln/device.h"
#include "kiln/dtype.h"
#include "kiln/error.h"

namespace kiln {

using Shape = std::vector<std::int64_t>;
std::int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[128, 784]"

class Generator;  // kiln/random.h
class Node;      // kiln/autograd.h

struct TensorImpl;  // src/core/tensor_impl.h (internal)

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (no storage)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation --------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu(),
                      bool pinned = false);
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, Device device = Device::cpu()) { return full(shape, 1.0f, device); }
  static Tensor scalar(float value, Device device = Device::cpu()) { return full({}, value, device); }
  // Uniform in [lo, hi) / normal(mean, std) from a counter-based RNG: same numbers on every device.
  static Tensor rand(const Shape& shape, Generator& gen, Device device = Device::cpu(), float lo = 0.0f,
                     float hi = 1.0f);
  static Tensor randn(const Shape& shape, Generator& gen, Device device = Device::cpu(), float mean = 0.0f,
                      float std = 1.0f);
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

  // ---- properties -----------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  std::int64_t dim() const { return static_cast<std::int64_t>(shape().size()); }
  std::int64_t size(std::int64_t axis) const;  // negative axes count from the end
  std::int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const;
  Device device() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype()); }
  std::string str() const;  // "float32[128, 784] on cuda:0"

  // ---- data access ----------------------------------------------------------------------
  void* raw_data() const;
  template <class T> T* data() const;  // checks the dtype
  // Element access for tests and small host-side code; CPU tensors only.
  template <class T = float> T at(std::initializer_list<std::int64_t> index) const;
  template <class T = float> void set(std::initializer_list<std::int64_t> index, T value);
  // Copies to the host (synchronising the device) and returns the elements.
  template <class T = float> std::vector<T> to_vector() const;
  float item() const;  // single-element tensors

  // ---- copies and views -----------------------------------------------------------------
  Tensor to(Device device, bool pinned = false) const;  // explicit copy (returns *this if already there)
  Tensor clone() const;                                 // deep copy on the same device
  void copy_(const Tensor& src);                        // same shape and dtype, any devices
  Tensor reshape(const Shape& shape) const;             // view; one dim may be -1; recorded by autograd
  Tensor view(const Shape& shape) const { return reshape(shape); }
  Tensor flatten(std::int64_t start_dim = 1) const;     // [N, C, H, W] -> [N, C*H*W]
  Tensor narrow0(std::int64_t start, std::int64_t length) const;  // rows [start, start+length): a view
  Tensor detach() const;                                // same storage, no autograd history
  bool shares_storage(const Tensor& other) const;

  // ---- autograd ------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool value);
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward pass reaches this leaf
  void zero_grad();     // drops the gradient (set to none)
  void set_grad(const Tensor& g);
  // Reverse-mode pass from this tensor; `grad` defaults to 1 for single-element tensors.
  void backward(const Tensor& grad = Tensor()) const;
  const std::shared_ptr<Node>& grad_fn() const;

  // Internals, for library code that includes src/core/tensor_impl.h.
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace kiln

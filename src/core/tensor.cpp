// Tensor: creation, views, copies between devices, element access.
#include "kiln/tensor.h"

#include <cstring>
#include <sstream>

#include "core/tensor_impl.h"
#include "kiln/autograd.h"
#include "kiln/random.h"
#include "ops/dispatch.h"

namespace kiln {

// ---- dtype / shape helpers ------------------------------------------------------------------------
std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float16: return 2;
    case DType::BFloat16: return 2;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
  }
  return "?";
}

std::int64_t shape_numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) KILN_FAIL("shape ", shape_str(s), " has no valid element count");
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

// ---- creation --------------------------------------------------------------------------------------
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, bool pinned) {
  for (auto d : shape) KILN_CHECK(d >= 0, "cannot create a tensor of shape ", shape_str(shape), ": negative size");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  std::size_t bytes = 0;
  KILN_CHECK(!__builtin_mul_overflow(static_cast<std::size_t>(shape_numel(shape)), dtype_size(dtype), &bytes),
             "a tensor of shape ", shape_str(shape), " is too large to allocate");
  impl->storage = Storage::allocate(bytes, device, pinned);
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  KILN_DISPATCH(device, fill, t, 0.0f);
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::Float32, device);
  KILN_DISPATCH(device, fill, t, value);
  return t;
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, Device device, float lo, float hi) {
  Tensor t = empty(shape, DType::Float32, device);
  const std::uint64_t offset = gen.advance(static_cast<std::uint64_t>(t.numel()));
  KILN_DISPATCH(device, uniform, t, gen.seed(), offset, lo, hi);
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, Device device, float mean, float std) {
  Tensor t = empty(shape, DType::Float32, device);
  const std::uint64_t offset = gen.advance(static_cast<std::uint64_t>(t.numel()));
  KILN_DISPATCH(device, normal, t, gen.seed(), offset, mean, std);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  KILN_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
             " values do not fill shape ", shape_str(shape));
  Tensor host = empty(shape, dtype_of<T>::value, Device::cpu());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return host.to(device);
}

// ---- properties ------------------------------------------------------------------------------------
const TensorImpl& Tensor::checked() const {
  KILN_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}
const Shape& Tensor::shape() const { return checked().shape; }
DType Tensor::dtype() const { return checked().dtype; }
Device Tensor::device() const { return checked().storage->device(); }

std::int64_t Tensor::size(std::int64_t axis) const {
  const std::int64_t d = dim();
  const std::int64_t a = axis < 0 ? axis + d : axis;
  KILN_CHECK(a >= 0 && a < d, "axis ", axis, " out of range for shape ", shape_str(shape()));
  return shape()[static_cast<std::size_t>(a)];
}

std::string Tensor::str() const {
  if (!impl_) return "undefined";
  return detail::str(dtype_name(dtype()), shape_str(shape()), " on ", device().str());
}

// ---- data access -----------------------------------------------------------------------------------
void* Tensor::raw_data() const {
  const TensorImpl& t = checked();
  return static_cast<char*>(t.storage->data()) + t.offset * dtype_size(t.dtype);
}

template <class T>
T* Tensor::data() const {
  KILN_CHECK(dtype() == dtype_of<T>::value, "tensor is ", dtype_name(dtype()), ", accessed as ",
             dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());
}

namespace {
std::int64_t flat_index(const Tensor& t, std::initializer_list<std::int64_t> index) {
  KILN_CHECK(t.device().is_cpu(), "element access needs a CPU tensor, got ", t.str(), " (use to(Device::cpu()))");
  KILN_CHECK(static_cast<std::int64_t>(index.size()) == t.dim(), "index of ", index.size(),
             " coordinates for a tensor of shape ", shape_str(t.shape()));
  std::int64_t flat = 0, k = 0;
  for (auto i : index) {
    const std::int64_t n = t.shape()[static_cast<std::size_t>(k++)];
    KILN_CHECK(i >= 0 && i < n, "index ", i, " out of range for dim ", k - 1, " of shape ", shape_str(t.shape()));
    flat = flat * n + i;
  }
  return flat;
}
}  // namespace

template <class T>
T Tensor::at(std::initializer_list<std::int64_t> index) const {
  return data<T>()[flat_index(*this, index)];
}

template <class T>
void Tensor::set(std::initializer_list<std::int64_t> index, T value) {
  data<T>()[flat_index(*this, index)] = value;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu());
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}

float Tensor::item() const {
  KILN_CHECK(numel() == 1, "item() needs a single-element tensor, got ", str());
  Tensor host = to(Device::cpu());
  switch (dtype()) {
    case DType::Float32: return *host.data<float>();
    case DType::Int32: return static_cast<float>(*host.data<std::int32_t>());
    case DType::Int64: return static_cast<float>(*host.data<std::int64_t>());
    case DType::UInt8: return static_cast<float>(*host.data<std::uint8_t>());
    default: KILN_FAIL("item() does not support ", dtype_name(dtype()));
  }
}

// ---- copies and views ------------------------------------------------------------------------------
void Tensor::copy_(const Tensor& src) {
  KILN_CHECK(src.shape() == shape() && src.dtype() == dtype(), "copy_: source ", src.str(),
             " does not match destination ", str());
  const std::size_t bytes = nbytes();
  if (bytes == 0) return;
  if (device().is_cpu() && src.device().is_cpu()) {
    std::memcpy(raw_data(), src.raw_data(), bytes);
    return;
  }
#if defined(KILN_WITH_CUDA)
  // Copies that touch the host are synchronous: the caller may free or reuse host memory on return.
  // (The data loader makes its own asynchronous copies from pinned buffers.)
  const bool sync = device().is_cpu() || src.device().is_cpu();
  cuda::copy(raw_data(), device(), src.raw_data(), src.device(), bytes, sync);
#else
  KILN_FAIL("copy_: kiln was built without CUDA");
#endif
}

Tensor Tensor::to(Device device, bool pinned) const {
  if (this->device() == device && (!pinned || checked().storage->pinned())) return *this;
  Tensor out = empty(shape(), dtype(), device, pinned);
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::detach() const {
  const TensorImpl& t = checked();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage;
  impl->offset = t.offset;
  impl->shape = t.shape;
  impl->dtype = t.dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  std::int64_t known = 1, infer = -1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      KILN_CHECK(infer < 0, "reshape of ", str(), " to ", shape_str(new_shape), ": more than one -1");
      infer = static_cast<std::int64_t>(i);
    } else {
      KILN_CHECK(s[i] >= 0, "reshape of ", str(), " to ", shape_str(new_shape), ": negative size");
      known *= s[i];
    }
  }
  if (infer >= 0) {
    KILN_CHECK(known > 0 && numel() % known == 0, "cannot reshape ", str(), " to ", shape_str(new_shape));
    s[static_cast<std::size_t>(infer)] = numel() / known;
  }
  KILN_CHECK(shape_numel(s) == numel(), "cannot reshape ", str(), " to ", shape_str(new_shape), ": ", numel(),
             " elements vs ", shape_numel(s));
  Tensor out = detach();
  out.impl_->shape = s;
  if (autograd::needs_grad({this})) {
    Shape original = shape();
    out = autograd::record("reshape", out, {this},
                           [original](const Tensor& g) { return std::vector<Tensor>{g.reshape(original)}; });
  }
  return out;
}

Tensor Tensor::flatten(std::int64_t start_dim) const {
  const std::int64_t d = dim();
  const std::int64_t s = start_dim < 0 ? start_dim + d : start_dim;
  KILN_CHECK(s >= 0 && s <= d, "flatten(", start_dim, ") out of range for ", str());
  Shape out(shape().begin(), shape().begin() + s);
  std::int64_t rest = 1;
  for (std::int64_t i = s; i < d; ++i) rest *= shape()[static_cast<std::size_t>(i)];
  out.push_back(rest);
  return reshape(out);
}

Tensor Tensor::narrow0(std::int64_t start, std::int64_t length) const {
  KILN_CHECK(dim() >= 1, "narrow0 needs at least one dimension, got ", str());
  KILN_CHECK(start >= 0 && length >= 0 && start + length <= shape()[0], "narrow0(", start, ", ", length,
             ") out of range for ", str());
  KILN_CHECK(!autograd::needs_grad({this}), "narrow0 is not differentiable; slice data tensors only");
  Tensor out = detach();
  out.impl_->offset += static_cast<std::size_t>(start * (numel() / std::max<std::int64_t>(shape()[0], 1)));
  out.impl_->shape[0] = length;
  return out;
}

bool Tensor::shares_storage(const Tensor& other) const {
  return impl_ && other.impl_ && impl_->storage == other.impl_->storage;
}

// ---- autograd --------------------------------------------------------------------------------------
bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }
bool Tensor::is_leaf() const { return !impl_ || !impl_->grad_fn; }

Tensor& Tensor::set_requires_grad(bool value) {
  KILN_CHECK(impl_ != nullptr, "set_requires_grad on an undefined tensor");
  KILN_CHECK(is_leaf(), "requires_grad can only be changed on leaf tensors (", str(), " was computed by ",
             impl_->grad_fn->name(), ")");
  KILN_CHECK(!value || dtype() == DType::Float32, "only float32 tensors can require grad, got ", str());
  impl_->requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return impl_ && impl_->grad ? Tensor(impl_->grad) : Tensor(); }

void Tensor::zero_grad() {
  if (impl_) impl_->grad.reset();
}

void Tensor::set_grad(const Tensor& g) {
  KILN_CHECK(impl_ != nullptr, "set_grad on an undefined tensor");
  if (!g.defined()) {
    impl_->grad.reset();
    return;
  }
  KILN_CHECK(g.shape() == shape() && g.device() == device(), "set_grad: gradient ", g.str(), " does not match ",
             str());
  if (impl_->grad_view) {  // a parameter store's gradient: its memory stays where the store put it
    Tensor view(impl_->grad_view);
    if (!view.shares_storage(g) || view.raw_data() != g.raw_data()) view.copy_(g);
    impl_->grad = impl_->grad_view;
    return;
  }
  impl_->grad = g.impl_ptr();
}

void Tensor::backward(const Tensor& grad) const { autograd::backward(*this, grad); }

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked().grad_fn; }

// ---- explicit instantiations ----------------------------------------------------------------------
#define KILN_INSTANTIATE(T)                                                                   \
  template Tensor Tensor::from_vector<T>(const std::vector<T>&, const Shape&, Device);        \
  template T* Tensor::data<T>() const;                                                        \
  template T Tensor::at<T>(std::initializer_list<std::int64_t>) const;                        \
  template void Tensor::set<T>(std::initializer_list<std::int64_t>, T);                       \
  template std::vector<T> Tensor::to_vector<T>() const;
KILN_INSTANTIATE(float)
KILN_INSTANTIATE(std::int32_t)
KILN_INSTANTIATE(std::int64_t)
KILN_INSTANTIATE(std::uint8_t)
#undef KILN_INSTANTIATE

}  // namespace kiln

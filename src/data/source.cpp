// The in-memory Source: samples copied out of a Dataset's uint8 image tensor.
#include <cstring>

#include "kiln/data.h"
#include "kiln/error.h"
#include "kiln/random.h"

namespace kiln::data {

const char* eval_transform_name(EvalTransform t) { return t == EvalTransform::CenterCrop ? "center-crop" : "resize"; }

EvalTransform parse_eval_transform(const std::string& name, const std::string& what) {
  if (name == "resize") return EvalTransform::Resize;
  if (name == "center-crop") return EvalTransform::CenterCrop;
  KILN_FAIL(what, ": unknown evaluation transform '", name, "' (expected resize or center-crop)");
}

std::string Source::describe() const {
  const Shape s = sample_shape();
  return detail::str(size(), " images ", s.size() == 3 ? detail::str(s[0], "x", s[1], "x", s[2]) : shape_str(s));
}

namespace {
class InMemory final : public Source {
 public:
  explicit InMemory(const Dataset& d) : d_(d) {
    KILN_CHECK(d.images.defined() && d.labels.defined() && d.images.dim() == 4, "dataset: expected images [N, C, H, W]");
    KILN_CHECK(d.images.dtype() == DType::UInt8 && d.labels.dtype() == DType::Int32,
               "dataset: expected uint8 images and int32 labels, got ", d.images.str(), " and ", d.labels.str());
    KILN_CHECK(d.images.size(0) == d.labels.numel(), "dataset: ", d.images.size(0), " images but ", d.labels.numel(),
               " labels");
    KILN_CHECK(d.images.device().is_cpu() && d.labels.device().is_cpu(), "dataset: images and labels must be on the CPU");
    sample_bytes_ = d.images.numel() / std::max<std::int64_t>(d.images.size(0), 1);
  }
  std::int64_t size() const override { return d_.labels.numel(); }
  Shape sample_shape() const override { return Shape(d_.images.shape().begin() + 1, d_.images.shape().end()); }
  std::int64_t num_classes() const override { return d_.num_classes; }
  std::vector<std::string> class_names() const override { return d_.class_names; }
  std::int32_t label(std::int64_t i) const override { return d_.labels.data<std::int32_t>()[i]; }
  bool load(std::int64_t i, std::uint8_t* dst, std::uint64_t) const override {
    std::memcpy(dst, d_.images.data<std::uint8_t>() + i * sample_bytes_, static_cast<std::size_t>(sample_bytes_));
    return true;
  }

 private:
  const Dataset& d_;
  std::int64_t sample_bytes_ = 0;
};
}  // namespace

std::shared_ptr<const Source> in_memory(const Dataset& dataset) { return std::make_shared<InMemory>(dataset); }

namespace {
class RandomImages final : public Source {
 public:
  RandomImages(std::int64_t n, Shape shape, std::int64_t classes, std::uint64_t seed)
      : n_(n), shape_(std::move(shape)), classes_(classes) {
    KILN_CHECK(n > 0 && classes >= 2 && shape_.size() == 3, "random_images: bad size, shape or class count");
    const std::int64_t bytes = shape_numel(shape_);
    pool_.resize(static_cast<std::size_t>(kPool * bytes));
    for (std::size_t i = 0; i < pool_.size(); ++i)
      pool_[i] = static_cast<std::uint8_t>(philox::philox4x32(i, seed).x & 0xff);
  }
  std::int64_t size() const override { return n_; }
  Shape sample_shape() const override { return shape_; }
  std::int64_t num_classes() const override { return classes_; }
  std::vector<std::string> class_names() const override {
    std::vector<std::string> names;
    for (std::int64_t i = 0; i < classes_; ++i) names.push_back(std::to_string(i));
    return names;
  }
  std::int32_t label(std::int64_t i) const override { return static_cast<std::int32_t>(i % classes_); }
  bool load(std::int64_t i, std::uint8_t* dst, std::uint64_t) const override {
    const std::int64_t bytes = shape_numel(shape_);
    std::memcpy(dst, pool_.data() + (i % kPool) * bytes, static_cast<std::size_t>(bytes));
    return true;
  }

 private:
  static constexpr std::int64_t kPool = 64;
  std::int64_t n_;
  Shape shape_;
  std::int64_t classes_;
  std::vector<std::uint8_t> pool_;
};
}  // namespace

std::shared_ptr<const Source> random_images(std::int64_t n, const Shape& sample_shape, std::int64_t classes,
                                            std::uint64_t seed) {
  return std::make_shared<RandomImages>(n, sample_shape, classes, seed);
}

}  // namespace kiln::data

// kiln/parameter_store.h — where a model's parameters and gradients live.
//
// Parameters are grouped by (device, dtype). Each group owns one flat parameter buffer and one flat
// gradient buffer, laid out in registration order (each parameter 256-byte aligned, the gaps zero),
// and every parameter and its .grad are views into them. That gives the optimizer one fused launch
// per group, the data-parallel reducer contiguous gradient buckets, and a CUDA graph fixed addresses.
//
// Gradients keep their usual meaning: zero_grad() drops them (host bookkeeping only, no device work),
// the first gradient a backward pass delivers to a parameter is written into its view, later ones
// are added. When a parameter's gradient of a backward pass is final, the store's gradient-ready
// callback fires for it, once per backward pass, in the order the engine finishes the leaves
// (reverse registration order for kiln's sequential models).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kiln/io.h"
#include "kiln/tensor.h"

namespace kiln::nn {

class ParameterStore {
 public:
  struct Slot {
    std::string name;
    Tensor param;            // the view the model holds (same handle as before registration)
    std::size_t group = 0;
    std::int64_t offset = 0;  // in elements, within the group's buffers
  };
  struct Group {
    Device device;
    DType dtype = DType::Float32;
    Tensor params, grads;          // flat, 1-D
    Tensor master;                 // fp32 master copy when params are half precision; undefined until then
    std::vector<std::size_t> slots;  // in registration order
  };
  // A contiguous range of one group's buffers covering whole parameters.
  struct Range {
    std::size_t group = 0;
    std::int64_t offset = 0, numel = 0;
    std::size_t first_slot = 0, last_slot = 0;  // inclusive, registration order
  };
  using GradReady = std::function<void(std::size_t slot)>;

  // Moves the values of `params` into the store's buffers and makes each tensor (the very handles the
  // caller and the model hold) a view of them. Names and order are kept.
  explicit ParameterStore(const io::NamedTensors& params);
  ~ParameterStore();
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  const std::vector<Slot>& slots() const { return slots_; }
  const std::vector<Group>& groups() const { return groups_; }
  io::NamedTensors named_parameters() const;
  std::int64_t numel() const;

  // Drops every gradient: the next backward pass writes instead of adding. No device work.
  void zero_grad();
  bool has_grad(std::size_t slot) const;
  // Runs `fn(slot)` when a parameter's gradient of a backward pass is final (replaces any earlier one).
  void on_grad_ready(GradReady fn);

  // Buckets of at least `bytes` (the last may be smaller), in reverse registration order, never
  // spanning two groups: the order in which backward finishes the gradients.
  std::vector<Range> buckets(std::size_t bytes) const;
  // The maximal runs of a group's parameters that hold a gradient now, in registration order.
  std::vector<Range> runs_with_grad(std::size_t group) const;
  // A view of `flat` (laid out like group `slot`'s buffers) shaped like that parameter: optimizer state.
  Tensor view_of(const Tensor& flat, std::size_t slot) const;

 private:
  std::size_t group_for(const Tensor& t);
  void place(std::size_t slot);
  Range range(std::size_t group, std::size_t first, std::size_t last) const;

  std::vector<Slot> slots_;
  std::vector<Group> groups_;
  GradReady grad_ready_;
};

}  // namespace kiln::nn

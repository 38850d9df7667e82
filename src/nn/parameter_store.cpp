// The parameter store: flat per-(device, dtype) buffers, parameters and gradients as views of them.
#include "kiln/parameter_store.h"

#include <algorithm>
#include <unordered_set>

#include "core/tensor_impl.h"

namespace kiln::nn {

namespace {
// Every parameter starts on a 256-byte boundary (cudaMalloc's alignment), so each view is as aligned
// as a tensor of its own would be: vectorised kernels, cuBLAS and cuDNN see the same pointers.
constexpr std::size_t kAlignBytes = 256;

std::int64_t align_up(std::int64_t n, std::int64_t to) { return (n + to - 1) / to * to; }
}  // namespace

ParameterStore::ParameterStore(const io::NamedTensors& params) {
  std::unordered_set<const TensorImpl*> seen;
  std::vector<std::int64_t> end;  // per group: elements laid out so far
  for (const auto& [name, t] : params) {
    KILN_CHECK(t.defined() && t.is_leaf(), "parameter store: '", name, "' is not a defined leaf tensor");
    KILN_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float16 || t.dtype() == DType::BFloat16,
               "parameter store: '", name, "' is ", t.str(), ", not floating point");
    KILN_CHECK(seen.insert(t.impl()).second, "parameter store: '", name, "' is registered twice");
    Slot s{name, t, group_for(t), 0};
    if (end.size() < groups_.size()) end.resize(groups_.size(), 0);
    const std::int64_t align = static_cast<std::int64_t>(kAlignBytes / dtype_size(t.dtype()));
    s.offset = align_up(end[s.group], align);
    end[s.group] = s.offset + t.numel();
    groups_[s.group].slots.push_back(slots_.size());
    slots_.push_back(std::move(s));
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    Group& gr = groups_[g];
    gr.params = Tensor::zeros({std::max<std::int64_t>(end[g], 1)}, gr.dtype, gr.device);
    gr.grads = Tensor::zeros({std::max<std::int64_t>(end[g], 1)}, gr.dtype, gr.device);
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) place(i);
}

ParameterStore::~ParameterStore() {
  // Detach the hooks, unless a newer store has taken the parameter over since.
  for (const Slot& s : slots_) {
    TensorImpl* impl = s.param.impl();
    if (impl->grad_view && impl->grad_view->storage == groups_[s.group].grads.impl()->storage) {
      impl->grad_view.reset();
      impl->grad_ready = nullptr;
    }
  }
}

std::size_t ParameterStore::group_for(const Tensor& t) {
  for (std::size_t g = 0; g < groups_.size(); ++g)
    if (groups_[g].device == t.device() && groups_[g].dtype == t.dtype()) return g;
  Group gr;
  gr.device = t.device();
  gr.dtype = t.dtype();
  groups_.push_back(std::move(gr));
  return groups_.size() - 1;
}

// Copies a parameter (and a gradient it already has) into the buffers, then points its handle there.
void ParameterStore::place(std::size_t i) {
  Slot& s = slots_[i];
  const Group& gr = groups_[s.group];
  Tensor value = view_of(gr.params, i), grad = view_of(gr.grads, i);
  value.copy_(s.param);
  TensorImpl* impl = s.param.impl();
  if (impl->grad) grad.copy_(Tensor(impl->grad));
  impl->storage = value.impl()->storage;
  impl->offset = value.impl()->offset;
  impl->grad_view = grad.impl_ptr();
  if (impl->grad) impl->grad = impl->grad_view;
  impl->grad_ready = [this, i] {
    if (grad_ready_) grad_ready_(i);
  };
}

io::NamedTensors ParameterStore::named_parameters() const {
  io::NamedTensors out;
  out.reserve(slots_.size());
  for (const Slot& s : slots_) out.emplace_back(s.name, s.param);
  return out;
}

std::int64_t ParameterStore::numel() const {
  std::int64_t n = 0;
  for (const Slot& s : slots_) n += s.param.numel();
  return n;
}

void ParameterStore::zero_grad() {
  for (Slot& s : slots_) s.param.impl()->grad.reset();
}

bool ParameterStore::has_grad(std::size_t slot) const { return slots_.at(slot).param.impl()->grad != nullptr; }

void ParameterStore::on_grad_ready(GradReady fn) { grad_ready_ = std::move(fn); }

Tensor ParameterStore::view_of(const Tensor& flat, std::size_t slot) const {
  const Slot& s = slots_.at(slot);
  return flat.narrow0(s.offset, s.param.numel()).reshape(s.param.shape());
}

ParameterStore::Range ParameterStore::range(std::size_t group, std::size_t first, std::size_t last) const {
  const Slot &a = slots_[first], &b = slots_[last];
  return Range{group, a.offset, b.offset + b.param.numel() - a.offset, first, last};
}

std::vector<ParameterStore::Range> ParameterStore::buckets(std::size_t bytes) const {
  std::vector<Range> out;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::vector<std::size_t>& ids = groups_[g].slots;
    const std::size_t elem = dtype_size(groups_[g].dtype);
    std::size_t k = ids.size();
    while (k > 0) {  // walk back from the last parameter, closing a bucket once it holds `bytes`
      const std::size_t last = k - 1;
      std::size_t first = last;
      while (first > 0 && static_cast<std::size_t>(range(g, ids[first], ids[last]).numel) * elem < bytes) --first;
      out.push_back(range(g, ids[first], ids[last]));
      k = first;
    }
  }
  return out;
}

std::vector<ParameterStore::Range> ParameterStore::runs_with_grad(std::size_t group) const {
  std::vector<Range> out;
  const std::vector<std::size_t>& ids = groups_.at(group).slots;
  for (std::size_t k = 0; k < ids.size();) {
    if (!has_grad(ids[k])) {
      ++k;
      continue;
    }
    std::size_t j = k;
    while (j + 1 < ids.size() && has_grad(ids[j + 1])) ++j;
    out.push_back(range(group, ids[k], ids[j]));
    k = j + 1;
  }
  return out;
}

}  // namespace kiln::nn

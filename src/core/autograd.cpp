// The autograd engine: graph recording and the reverse-mode pass.
#include "kiln/autograd.h"

#include <unordered_map>

#include "core/tensor_impl.h"
#include "kiln/ops.h"
#include "kiln/profile.h"

namespace kiln {

namespace {
thread_local bool g_grad_enabled = true;

// The node that receives a leaf's gradient and adds it into leaf.grad. A leaf has at most one
// live accumulator, so a leaf used twice in a graph is reached along two edges of one node and
// its gradients are summed by the engine before they land: the node runs once per backward pass,
// which is when the leaf's gradient of that pass is final.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : Node("accumulate_grad"), leaf_(leaf) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    auto leaf = leaf_.lock();
    if (!leaf) return {};
    if (leaf->grad) {
      Tensor acc(leaf->grad);
      axpy_(1.0f, g, acc);
    } else if (leaf->grad_view) {
      Tensor(leaf->grad_view).copy_(g);  // into the parameter store's flat gradient buffer
      leaf->grad = leaf->grad_view;
    } else {
      leaf->grad = own_copy_unless_sole_owner(g, *leaf);
    }
    if (leaf->grad_ready) leaf->grad_ready();
    return {};
  }

 private:
  // g itself when nothing else can see its memory (the usual case: a fresh weight gradient);
  // otherwise an own copy, since g may alias another gradient (add's backward passes g through
  // twice) and later backward passes accumulate into leaf.grad in place.
  static std::shared_ptr<TensorImpl> own_copy_unless_sole_owner(const Tensor& g, const TensorImpl& leaf) {
    const bool sole_owner = g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1 &&
                            g.impl()->offset == 0 && g.impl()->shape == leaf.shape;
    return sole_owner ? g.impl_ptr() : g.clone().impl_ptr();
  }
  std::weak_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  TensorImpl* impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    impl->grad_accumulator = acc;
  }
  return acc;
}
}  // namespace

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  KILN_CHECK(fn_ != nullptr, "backward through '", name(),
             "' a second time: its saved tensors were freed by the first backward pass");
  return fn_(grad_output);
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

namespace autograd {

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->requires_grad()) return true;
  return false;
}

Tensor record(const char* name, Tensor out, std::initializer_list<const Tensor*> inputs, FunctionNode::Fn backward) {
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->layer = profile::current_layer();
  node->backward_flops = profile::current_layer_backward_flops();
  node->next.reserve(inputs.size());
  for (const Tensor* t : inputs) node->next.push_back(t ? edge_of(*t) : nullptr);
  TensorImpl* impl = out.impl();
  impl->grad_fn = std::move(node);
  impl->requires_grad = true;
  return out;
}

void backward(const Tensor& root, const Tensor& grad) {
  KILN_CHECK(root.defined(), "backward() on an undefined tensor");
  KILN_CHECK(root.requires_grad(), "backward() on ", root.str(),
             ", which does not require grad (no input of the computation requires grad, or it ran under NoGradGuard)");
  Tensor seed = grad;
  if (!seed.defined()) {
    KILN_CHECK(root.numel() == 1, "backward() without a gradient needs a single-element output, got ", root.str());
    seed = Tensor::full(root.shape(), 1.0f, root.device());
  }
  KILN_CHECK(seed.shape() == root.shape() && seed.device() == root.device(), "backward(): gradient ", seed.str(),
             " does not match output ", root.str());

  NoGradGuard no_grad;  // backward computations are not themselves recorded
  std::shared_ptr<Node> start = edge_of(root);

  // Count, for every node, how many edges lead into it; a node runs once all of them delivered.
  std::unordered_map<Node*, int> pending;
  {
    std::vector<Node*> stack{start.get()};
    pending[start.get()] = 0;
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (const auto& next : n->next) {
        if (!next) continue;
        auto it = pending.find(next.get());
        if (it == pending.end()) {
          pending[next.get()] = 1;
          stack.push_back(next.get());
        } else {
          ++it->second;
        }
      }
    }
  }

  std::unordered_map<Node*, Tensor> buffers;
  buffers[start.get()] = seed;
  std::vector<std::shared_ptr<Node>> ready{start};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Tensor g;
    if (auto it = buffers.find(node.get()); it != buffers.end()) {
      g = std::move(it->second);
      buffers.erase(it);
    }
    // A node that no gradient reached still releases its inputs' pending counts.
    std::vector<Tensor> grads;
    if (g.defined()) {
      profile::Scope scope(node->layer.empty() ? node->name() : node->layer, "bwd", g.device(), node->backward_flops);
      grads = node->apply(g);
    }
    node->release();
    KILN_CHECK(grads.empty() || grads.size() == node->next.size(), "autograd: '", node->name(), "' returned ",
               grads.size(), " gradients for ", node->next.size(), " inputs");
    for (std::size_t i = 0; i < node->next.size(); ++i) {
      const auto& next = node->next[i];
      if (!next) continue;
      if (i < grads.size() && grads[i].defined()) {
        Tensor& slot = buffers[next.get()];
        slot = slot.defined() ? add(slot, grads[i]) : grads[i];
      }
      if (--pending[next.get()] == 0) ready.push_back(next);
    }
  }
}

}  // namespace autograd
}  // namespace kiln

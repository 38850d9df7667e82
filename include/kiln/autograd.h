// kiln/autograd.h — reverse-mode automatic differentiation over a dynamic graph.
//
// Each differentiable op that sees an input requiring grad records a Node: one edge per input
// (the input's own grad_fn, or its leaf accumulator; null where no gradient is wanted) and a
// backward function. Tensor::backward() walks the graph in topological order, sums the gradients
// that reach a node along several edges, and releases each node's saved tensors as soon as it has
// run, so the activations are freed during the backward pass.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/tensor.h"

namespace kiln {

class Node {
 public:
  explicit Node(std::string name) : name_(std::move(name)) {}
  virtual ~Node() = default;
  // Given d(loss)/d(output), returns d(loss)/d(input_i) for every input (undefined when not needed).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors once the node has run.
  virtual void release() {}
  const std::string& name() const { return name_; }
  // The layer that recorded the node ("features.0 conv2d"; empty outside layers) and its backward FLOPs.
  std::string layer;
  double backward_flops = 0.0;

  std::vector<std::shared_ptr<Node>> next;  // one per input

 private:
  std::string name_;
};

// A node whose backward is a closure; the closure owns what it saved and is dropped on release().
class FunctionNode final : public Node {
 public:
  using Fn = std::function<std::vector<Tensor>(const Tensor&)>;
  FunctionNode(std::string name, Fn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release() override { fn_ = nullptr; }

 private:
  Fn fn_;
};

// Whether ops record graph nodes on this thread.
bool grad_enabled();

// Disables recording for its lifetime (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

namespace autograd {
// True when `out` should get a grad_fn: recording is on and some input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
// Attaches a FunctionNode named `name` to `out` with edges to `inputs`. Returns `out`.
Tensor record(const char* name, Tensor out, std::initializer_list<const Tensor*> inputs, FunctionNode::Fn backward);
// Runs the backward pass from `root` with seed gradient `grad`.
void backward(const Tensor& root, const Tensor& grad);
}  // namespace autograd

}  // namespace kiln

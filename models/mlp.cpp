// The MLP: Linear/ReLU pairs and a final Linear, named like torch.nn.Sequential.
#include "kiln/models.h"

namespace kiln::models {

std::unique_ptr<nn::Sequential> mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t classes,
                                    Generator& gen, Device device) {
  auto net = std::make_unique<nn::Sequential>();
  std::int64_t prev = in;
  for (std::int64_t h : hidden) {
    net->add(std::make_unique<nn::Linear>(prev, h, gen, device));
    net->add(std::make_unique<nn::ReLU>());
    prev = h;
  }
  net->add(std::make_unique<nn::Linear>(prev, classes, gen, device));
  return net;
}

}  // namespace kiln::models

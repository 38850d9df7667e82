// kiln/models.h — model definitions (models/). Parameter names match the equivalent PyTorch model.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/nn.h"

namespace kiln::models {

// The MLP as PyTorch's nn.Sequential(Linear, ReLU, Linear, ReLU, ..., Linear), parameters named
// "0.weight", "0.bias", "2.weight", ... It takes [N, in] (flatten images first) and returns logits.
std::unique_ptr<nn::Sequential> mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t classes,
                                    Generator& gen, Device device = Device::cpu());

}  // namespace kiln::models

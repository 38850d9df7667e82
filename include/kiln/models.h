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

// torchvision's AlexNet for in_channels x 224 x 224 inputs (any size >= 63 works: the adaptive pool
// makes the classifier input 256 x 6 x 6). Dropout masks come from `dropout_gen`.
std::unique_ptr<nn::Sequential> alexnet(std::int64_t in_channels, std::int64_t classes, Generator& gen,
                                        const std::shared_ptr<Generator>& dropout_gen, Device device = Device::cpu());
// The 2012 paper's AlexNet with LRN; groups = 2 reproduces its two-tower convolutions 2, 4 and 5.
std::unique_ptr<nn::Sequential> alexnet2012(std::int64_t in_channels, std::int64_t classes, std::int64_t groups,
                                            Generator& gen, const std::shared_ptr<Generator>& dropout_gen,
                                            Device device = Device::cpu());

}  // namespace kiln::models

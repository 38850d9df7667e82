// AlexNet, two layouts:
//  - alexnet: torchvision's single-tower model (64-192-384-256-256 convolutions, adaptive average
//    pooling to 6x6, dropout, 4096-4096-classes), parameters named exactly as torchvision names them
//    ("features.0.weight" ... "classifier.6.bias") so weights move both ways with PyTorch;
//  - alexnet2012: the original paper's (96-256-384-384-256, local response norm after conv1/conv2,
//    optionally the two-GPU grouping of conv2/4/5 as groups = 2), same naming scheme.
#include "kiln/models.h"

namespace kiln::models {

namespace {
// torchvision keeps PyTorch's default layer initialisation for AlexNet; so does kiln, so that the
// usual recipes (SGD, lr 0.01) behave the same.
constexpr nn::Init kInit = nn::Init::TorchDefault;

std::unique_ptr<nn::Sequential> classifier(std::int64_t classes, Generator& gen, Device device,
                                           const std::shared_ptr<Generator>& dropout_gen) {
  auto c = std::make_unique<nn::Sequential>();
  c->add(std::make_unique<nn::Dropout>(0.5f, dropout_gen));
  c->add(std::make_unique<nn::Linear>(256 * 6 * 6, 4096, gen, device, kInit));
  c->add(std::make_unique<nn::ReLU>());
  c->add(std::make_unique<nn::Dropout>(0.5f, dropout_gen));
  c->add(std::make_unique<nn::Linear>(4096, 4096, gen, device, kInit));
  c->add(std::make_unique<nn::ReLU>());
  c->add(std::make_unique<nn::Linear>(4096, classes, gen, device, kInit));
  return c;
}

std::unique_ptr<nn::Sequential> assemble(std::unique_ptr<nn::Sequential> features, std::int64_t classes,
                                         Generator& gen, Device device, const std::shared_ptr<Generator>& dropout_gen) {
  auto net = std::make_unique<nn::Sequential>();
  net->add("features", std::move(features));
  net->add("avgpool", std::make_unique<nn::AdaptiveAvgPool2d>(6, 6));
  net->add("flatten", std::make_unique<nn::Flatten>());
  net->add("classifier", classifier(classes, gen, device, dropout_gen));
  return net;
}
}  // namespace

std::unique_ptr<nn::Sequential> alexnet(std::int64_t in_channels, std::int64_t classes, Generator& gen,
                                        const std::shared_ptr<Generator>& dropout_gen, Device device) {
  auto f = std::make_unique<nn::Sequential>();
  f->add(std::make_unique<nn::Conv2d>(in_channels, 64, 11, gen, device, 4, 2, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::MaxPool2d>(3, 2));
  f->add(std::make_unique<nn::Conv2d>(64, 192, 5, gen, device, 1, 2, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::MaxPool2d>(3, 2));
  f->add(std::make_unique<nn::Conv2d>(192, 384, 3, gen, device, 1, 1, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::Conv2d>(384, 256, 3, gen, device, 1, 1, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::Conv2d>(256, 256, 3, gen, device, 1, 1, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::MaxPool2d>(3, 2));
  return assemble(std::move(f), classes, gen, device, dropout_gen);
}

std::unique_ptr<nn::Sequential> alexnet2012(std::int64_t in_channels, std::int64_t classes, std::int64_t groups,
                                            Generator& gen, const std::shared_ptr<Generator>& dropout_gen,
                                            Device device) {
  KILN_CHECK(groups == 1 || groups == 2, "alexnet2012: groups must be 1 or 2, got ", groups);
  auto f = std::make_unique<nn::Sequential>();
  f->add(std::make_unique<nn::Conv2d>(in_channels, 96, 11, gen, device, 4, 2, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::LocalResponseNorm>(5, 1e-4f, 0.75f, 2.0f));
  f->add(std::make_unique<nn::MaxPool2d>(3, 2));
  f->add(std::make_unique<nn::Conv2d>(96, 256, 5, gen, device, 1, 2, groups, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::LocalResponseNorm>(5, 1e-4f, 0.75f, 2.0f));
  f->add(std::make_unique<nn::MaxPool2d>(3, 2));
  f->add(std::make_unique<nn::Conv2d>(256, 384, 3, gen, device, 1, 1, 1, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::Conv2d>(384, 384, 3, gen, device, 1, 1, groups, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::Conv2d>(384, 256, 3, gen, device, 1, 1, groups, kInit));
  f->add(std::make_unique<nn::ReLU>());
  f->add(std::make_unique<nn::MaxPool2d>(3, 2));
  return assemble(std::move(f), classes, gen, device, dropout_gen);
}

}  // namespace kiln::models

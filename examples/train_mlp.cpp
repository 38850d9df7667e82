// Train an MLP on MNIST with kiln's public API. Usage: train_mlp DATA_DIR [EPOCHS]
#include <cstdio>
#include <string>

#include "kiln/kiln.h"

int main(int argc, char** argv) try {
  using namespace kiln;
  const std::string dir = argc > 1 ? argv[1] : "data/mnist";
  const int epochs = argc > 2 ? std::stoi(argv[2]) : 3;
  const Device dev = cuda_available() ? Device::cuda(0) : Device::cpu();

  data::Dataset train = data::load_mnist(dir, true), test = data::load_mnist(dir, false);
  Generator gen(42);
  auto model = models::mlp(784, {512, 256}, 10, gen, dev);
  auto opt = optim::sgd(model->named_parameters(), {/*lr*/ 0.01f, /*momentum*/ 0.9f});
  data::Loader loader(train, {/*batch*/ 128, /*shuffle*/ true, false, /*seed*/ 42, /*workers*/ 2, dev});
  auto input = [](const Tensor& u8) { return normalize_images(u8, {0.1307f}, {0.3081f}).flatten(1); };

  for (int epoch = 0; epoch < epochs; ++epoch) {
    loader.start_epoch(epoch);
    for (data::Batch b; loader.next(b);) {
      Tensor loss = cross_entropy((*model)(input(b.images)), b.labels);
      opt->zero_grad();
      loss.backward();
      opt->step();
    }
    NoGradGuard eval;
    Tensor logits = (*model)(input(test.images.to(dev)));
    const float acc = count_correct(logits, test.labels.to(dev)).item() / test.size();
    std::printf("epoch %d: test accuracy %.2f%%\n", epoch + 1, 100 * acc);
  }
} catch (const kiln::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}

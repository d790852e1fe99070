// One Fashion-MNIST epoch of the main job, through the example's own training code
// (examples/fashion_mnist_lib.hpp, one epoch, default recipe); the sample is the epoch's training
// time in seconds (the test evaluation is excluded and reduced to one image).
#include "bench/kiln/items.hpp"
#include "bench/work_items.hpp"
#include "examples/fashion_mnist_lib.hpp"

namespace bench::kiln_items {

void add_fashion_mnist(Registry& items) {
  items.add(kFashionMnistName, "s", [](const Config& c) {
    kiln::examples::FashionMnistConfig config;
    config.epochs = 1;
    config.batch_size = static_cast<int>(kFashionMnistBatch);
    config.threads = c.threads;
    config.train_limit = c.limit;
    config.test_limit = 1;
    const auto result = kiln::examples::train_fashion_mnist(config);
    const auto& epoch = result.epochs.at(0);
    print_info("kiln", "fashion-mnist train accuracy", std::to_string(epoch.train_accuracy));
    return Samples{epoch.train_seconds};
  });
}

}  // namespace bench::kiln_items

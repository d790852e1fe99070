// libtorch's benchmark program (bench/harness.hpp for the command line). scripts/bench.sh runs it
// with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp (Debian's libtorch otherwise links
// whatever libblas.so.3 the system chose, possibly the reference BLAS) and OMP_NUM_THREADS set.
#include "bench/torch/items.hpp"

int main(int argc, char** argv) {
  bench::Registry items;
  bench::torch_items::add_batch_norm(items);
  bench::torch_items::add_models(items);
  bench::torch_items::add_overhead(items);
  bench::torch_items::add_fashion_mnist(items);
  return bench::main(argc, argv, "torch", items, [](int threads) {
    torch::set_num_threads(threads);
    bench::print_info("torch", "blas", bench::blas_core());
  });
}

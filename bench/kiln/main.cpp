// kiln's benchmark program (bench/harness.hpp for the command line). Threads come from the
// environment, as a user would set them: KILN_NUM_THREADS (the engine) and OPENBLAS_NUM_THREADS;
// scripts/bench.sh sets both to --threads for each process, and this program checks that they agree.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "bench/kiln/items.hpp"
#include "bench/triad.hpp"
#include "bench/work_items.hpp"

int main(int argc, char** argv) {
  bench::Registry items;
  bench::kiln_items::add_batch_norm(items);
  bench::kiln_items::add_models(items);
  bench::kiln_items::add_overhead(items);
  bench::kiln_items::add_fashion_mnist(items);
  items.add(bench::kTriadName, "GB/s", bench::triad);
  return bench::main(argc, argv, "kiln", items, [](int threads) {
    for (const char* var : {"KILN_NUM_THREADS", "OPENBLAS_NUM_THREADS"}) {
      const char* value = std::getenv(var);
      if (!value || std::stoi(value) != threads)
        throw std::invalid_argument(std::string("run with ") + var + "=" + std::to_string(threads) +
                                    " (scripts/bench.sh sets it)");
    }
    bench::print_info("kiln", "blas", bench::blas_core());
  });
}

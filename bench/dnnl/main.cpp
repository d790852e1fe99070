// oneDNN's benchmark program (bench/harness.hpp for the command line). oneDNN's threads are
// OpenMP's: scripts/bench.sh sets OMP_NUM_THREADS per process (read when the runtime starts, so
// this program only checks it).
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "bench/harness.hpp"

namespace bench::dnnl_items {
void add_batch_norm(Registry& items);  // batch_norm.cpp
}

namespace {

std::string isa_name(dnnl::cpu_isa isa) {
  using dnnl::cpu_isa;
  const std::pair<cpu_isa, const char*> names[] = {
      {cpu_isa::sse41, "sse41"}, {cpu_isa::avx, "avx"}, {cpu_isa::avx2, "avx2"},
      {cpu_isa::avx2_vnni, "avx2_vnni"}, {cpu_isa::avx512_core, "avx512_core"},
      {cpu_isa::avx512_core_vnni, "avx512_core_vnni"}, {cpu_isa::avx512_core_bf16, "avx512_core_bf16"},
      {cpu_isa::avx512_core_amx, "avx512_core_amx"}};
  for (const auto& [value, name] : names)
    if (value == isa) return name;
  return "other (" + std::to_string(static_cast<int>(isa)) + ")";
}

}  // namespace

int main(int argc, char** argv) {
  bench::Registry items;
  bench::dnnl_items::add_batch_norm(items);
  return bench::main(argc, argv, "dnnl", items, [](int threads) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    if (!omp || std::stoi(omp) != threads)
      throw std::invalid_argument("run with OMP_NUM_THREADS=" + std::to_string(threads) + " (scripts/bench.sh sets it)");
    bench::print_info("dnnl", "isa", isa_name(dnnl::get_effective_cpu_isa()));
  });
}

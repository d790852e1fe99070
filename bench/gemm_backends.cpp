// Measures single-precision matrix products at the shapes kiln's main job runs (convolutions as
// im2col products and dense layers of the Fashion-MNIST CNN at batch 128), one thread, with each
// candidate backend: OpenBLAS, BLIS and oneDNN, each loaded with dlopen (RTLD_LOCAL, so their
// identically named cblas symbols do not clash) and skipped when not installed. Prints each
// library's kernel (OpenBLAS's core, BLIS's configuration, oneDNN's ISA), then one row per shape:
// the best of several repetitions in ms and GFLOP/s. This is the measurement behind the choice
// in framework/kernels/gemm.cpp; it is not a test.
//
//   ninja -C build bench/gemm_backends && ./build/bench/gemm_backends [repetitions]
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

// The CBLAS row-major sgemm (OpenBLAS and BLIS export the same signature) and its enums.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                            int, float, float*, int);
using DnnlSgemm = int (*)(char, char, std::int64_t, std::int64_t, std::int64_t, float,
                          const float*, std::int64_t, const float*, std::int64_t, float, float*,
                          std::int64_t);

struct Shape {
  const char* what;
  bool ta, tb;
  int m, n, k;
};

// The products of one training step of the main job's CNN at batch 128 (NHWC, per image as kiln
// runs them and over the whole batch), and its dense layers; see examples/fashion_mnist_lib.cpp.
const Shape kShapes[] = {
    {"conv1 forward, 1 image [676x9]*[9x32]", false, false, 676, 32, 9},
    {"conv1 forward, batch [86528x9]*[9x32]", false, false, 86528, 32, 9},
    {"conv2 forward, 1 image [121x288]*[288x64]", false, false, 121, 64, 288},
    {"conv2 forward, batch [15488x288]*[288x64]", false, false, 15488, 64, 288},
    {"conv2 backprop input, 1 image dy*f^T", false, true, 121, 288, 64},
    {"conv2 backprop filter, 1 image dy^T*col", true, false, 64, 288, 121},
    {"conv2 backprop filter, 1 image col^T*dy", true, false, 288, 64, 121},
    {"dense forward [128x1600]*[1600x10]", false, false, 128, 10, 1600},
    {"dense dW [1600x128]*[128x10]", true, false, 1600, 10, 128},
    {"dense dx [128x10]*[10x1600]^T", false, true, 128, 1600, 10},
    {"square 512", false, false, 512, 512, 512},
};

struct Backend {
  std::string name, kernel;
  CblasSgemm cblas = nullptr;
  DnnlSgemm dnnl = nullptr;
};

void* open_library(const char* file) { return dlopen(file, RTLD_NOW | RTLD_LOCAL); }

template <class F>
F symbol(void* lib, const char* name) {
  return lib ? reinterpret_cast<F>(dlsym(lib, name)) : nullptr;
}

std::vector<Backend> load_backends() {
  std::vector<Backend> out;
  if (void* lib = open_library("libopenblas.so.0")) {
    Backend b{"OpenBLAS", "?"};
    b.cblas = symbol<CblasSgemm>(lib, "cblas_sgemm");
    if (auto set = symbol<void (*)(int)>(lib, "openblas_set_num_threads")) set(1);
    if (auto core = symbol<char* (*)()>(lib, "openblas_get_corename")) b.kernel = core();
    if (auto config = symbol<char* (*)()>(lib, "openblas_get_config"))
      b.kernel += std::string(" (") + config() + ")";
    if (b.cblas) out.push_back(b);
  } else {
    std::printf("OpenBLAS: not installed (libopenblas.so.0)\n");
  }
  if (void* lib = open_library("libblis.so.4")) {
    Backend b{"BLIS", "?"};
    b.cblas = symbol<CblasSgemm>(lib, "cblas_sgemm");
    if (auto set = symbol<void (*)(std::int64_t)>(lib, "bli_thread_set_num_threads")) set(1);
    auto query = symbol<int (*)()>(lib, "bli_arch_query_id");
    auto name = symbol<char* (*)(int)>(lib, "bli_arch_string");
    if (query && name) b.kernel = std::string("configuration ") + name(query());
    if (b.cblas) out.push_back(b);
  } else {
    std::printf("BLIS: not installed (libblis.so.4)\n");
  }
  if (void* lib = open_library("libdnnl.so.2")) {
    Backend b{"oneDNN", "?"};
    b.dnnl = symbol<DnnlSgemm>(lib, "dnnl_sgemm");
    // oneDNN's OpenMP build: one thread through its OpenMP runtime.
    if (void* omp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD))
      if (auto set = symbol<void (*)(int)>(omp, "omp_set_num_threads")) set(1);
    if (auto isa = symbol<int (*)()>(lib, "dnnl_get_effective_cpu_isa")) {
      char hex[32];
      std::snprintf(hex, sizeof hex, "ISA 0x%x", static_cast<unsigned>(isa()));
      b.kernel = hex;
    }
    if (b.dnnl) out.push_back(b);
  } else {
    std::printf("oneDNN: not installed (libdnnl.so.2)\n");
  }
  return out;
}

double best_ms(int repetitions, const auto& f) {
  f();  // warm-up (oneDNN JITs its kernels on first use)
  double best = 1e30;
  for (int r = 0; r < repetitions; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const std::chrono::duration<double, std::milli> d = std::chrono::steady_clock::now() - t0;
    best = std::min(best, d.count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  const auto backends = load_backends();
  for (const auto& b : backends) std::printf("%-9s %s\n", b.name.c_str(), b.kernel.c_str());
  std::printf("\n%-44s", "shape (1 thread; best of repetitions)");
  for (const auto& b : backends) std::printf(" %20s", b.name.c_str());
  std::printf("\n");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Shape& s : kShapes) {
    const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    std::vector<float> a(static_cast<std::size_t>(s.m) * s.k), b(static_cast<std::size_t>(s.k) * s.n),
        c(static_cast<std::size_t>(s.m) * s.n);
    for (auto& v : a) v = u(rng);
    for (auto& v : b) v = u(rng);
    const double flop = 2.0 * s.m * s.n * s.k;
    std::printf("%-44s", s.what);
    for (const auto& be : backends) {
      const double ms = best_ms(repetitions, [&] {
        if (be.dnnl)
          be.dnnl(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(),
                  ldb, 0.0f, c.data(), s.n);
        else
          be.cblas(kRowMajor, s.ta ? kTrans : kNoTrans, s.tb ? kTrans : kNoTrans, s.m, s.n, s.k,
                   1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
      });
      std::printf(" %8.3f ms %5.0f GF", ms, flop / ms * 1e-6);
    }
    std::printf("\n");
  }
}

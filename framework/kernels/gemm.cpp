// The only translation unit of kiln that includes a BLAS header (see gemm.hpp and BUILD_NOTES.md).
//
// Backend choice, measured with bench/gemm_backends.cpp on this project's machines (AMD EPYC with
// AVX-512, one thread, shapes of the Fashion-MNIST CNN at batch 128): oneDNN 2.6 sgemm ran 1.5-3x
// faster than OpenBLAS 0.3.21 (which picked its Haswell kernel there, and its generic Prescott
// kernel on the Xeon model 207) and 4-7x faster than BLIS 0.9 (which fell back to its generic
// kernels on that CPU). oneDNN has no double-precision product, so float64 stays on OpenBLAS.
#include "framework/kernels/gemm.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <mutex>
#include <string>

// OpenBLAS's header trips clang's -Wpedantic unless it is included as a system header; silence it
// here so that a plain -I build stays warning-free too.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpedantic"
#pragma clang diagnostic ignored "-Wc99-extensions"
#endif
#include <cblas.h>
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
#include <oneapi/dnnl/dnnl.h>

#include "framework/errors.hpp"
#include "framework/thread_pool.hpp"

// Declared by OpenBLAS's cblas.h, but not by the reference (netlib) cblas.h that the Debian
// alternatives system may select; identical redeclarations are harmless.
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" char* openblas_get_config(void);
extern "C" char* openblas_get_corename(void);

namespace kiln::kernels {

namespace {

using i64 = std::int64_t;

[[noreturn]] void bad(const std::string& what) { throw InvalidArgumentError("gemm: " + what); }

void check_int(i64 v, const char* name) {
  if (v < 0) bad(std::string(name) + " = " + std::to_string(v) + " is negative");
  if (v > static_cast<i64>(INT_MAX))
    bad(std::string(name) + " = " + std::to_string(v) + " does not fit a 32-bit BLAS integer");
}

// Checks the arguments and handles the empty cases; returns false when nothing is left to do.
template <class T>
bool prepare(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, i64 lda, i64 ldb, T beta, T* c,
             i64 ldc) {
  check_int(m, "m");
  check_int(n, "n");
  check_int(k, "k");
  check_int(lda, "lda");
  check_int(ldb, "ldb");
  check_int(ldc, "ldc");
  // Row-major: the stored row length of A is k (m when transposed), of B n (k), of C n.
  const i64 a_cols = trans_a ? m : k;
  const i64 b_cols = trans_b ? k : n;
  if (lda < std::max<i64>(1, a_cols))
    bad("lda = " + std::to_string(lda) + " < " + std::to_string(a_cols));
  if (ldb < std::max<i64>(1, b_cols))
    bad("ldb = " + std::to_string(ldb) + " < " + std::to_string(b_cols));
  if (ldc < std::max<i64>(1, n)) bad("ldc = " + std::to_string(ldc) + " < " + std::to_string(n));
  if (m == 0 || n == 0) return false;
  if (k == 0) {
    // op(A) op(B) is the zero matrix: C = beta * C (beta == 0 overwrites, as BLAS does).
    for (i64 i = 0; i < m; ++i) {
      T* row = c + i * ldc;
      if (beta == T(0)) {
        std::fill(row, row + n, T(0));
      } else {
        for (i64 j = 0; j < n; ++j) row[j] *= beta;
      }
    }
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- backend facts

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// OpenBLAS's kernels that predate AVX2 (its generic fallbacks for CPUs it does not know).
bool openblas_core_is_generic(const std::string& core) {
  for (const char* old : {"Prescott", "Katmai", "Coppermine", "Northwood", "Core2", "Penryn",
                          "Dunnington", "Nehalem", "Atom", "Banias", "Generic", "Barcelona",
                          "Opteron", "Sandybridge", "Bulldozer", "Piledriver"})
    if (core == old) return true;
  return false;
}

std::string openblas_core() {
  const char* core = openblas_get_corename();
  return core ? core : "unknown";
}

// "OpenBLAS 0.3.21": the first two words of openblas_get_config().
std::string openblas_version() {
  const std::string config = openblas_get_config() ? openblas_get_config() : "OpenBLAS";
  const auto first = config.find(' ');
  const auto second = first == std::string::npos ? first : config.find(' ', first + 1);
  return config.substr(0, second);
}

const char* dnnl_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "generic";
  }
}

// oneDNN JITs for AVX2 and up; below that (or a reference build) it runs generic C++ loops.
bool dnnl_isa_is_generic(dnnl_cpu_isa_t isa) {
  return (static_cast<unsigned>(isa) & static_cast<unsigned>(dnnl_cpu_isa_avx2)) !=
         static_cast<unsigned>(dnnl_cpu_isa_avx2);
}

std::string dnnl_description() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " sgemm " + dnnl_isa_name(dnnl_get_effective_cpu_isa());
}

// Once per process and precision: a warning on stderr when a library runs a kernel older than
// the AVX2 the CPU has (products several times slower than they could be).
void warn_once_if_generic(bool is_double) {
  static std::once_flag float_once, double_once;
  std::call_once(is_double ? double_once : float_once, [is_double] {
    if (!cpu_has_avx2()) return;
    if (is_double && openblas_core_is_generic(openblas_core())) {
      std::fprintf(stderr,
                   "kiln: warning: %s runs its generic '%s' kernel on this AVX2 CPU; float64 "
                   "products are slow (set OPENBLAS_CORETYPE=Haswell before starting the "
                   "program)\n",
                   openblas_version().c_str(), openblas_core().c_str());
    }
    if (!is_double && dnnl_isa_is_generic(dnnl_get_effective_cpu_isa())) {
      std::fprintf(stderr,
                   "kiln: warning: %s does not use this CPU's AVX2; float32 products are slow "
                   "(is DNNL_MAX_CPU_ISA set?)\n",
                   dnnl_description().c_str());
    }
  });
}

// ---------------------------------------------------------------- one library call

// oneDNN's OpenMP build runs omp_get_max_threads() threads per call unless it is already inside
// an OpenMP parallel region. kiln threads its work itself, so each call runs with the calling
// thread's OpenMP thread count set to 1 (a per-thread setting, restored afterwards). The functions
// are looked up in the OpenMP runtime oneDNN loaded (libgomp), so kiln does not link a runtime of
// its own (clang's -fopenmp would bring a second, different one).
struct OmpControls {
  int (*get_max_threads)() = nullptr;
  void (*set_num_threads)(int) = nullptr;
};
const OmpControls& omp_controls() {
  static const OmpControls controls = [] {
    OmpControls c;
    if (void* lib = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD)) {
      c.get_max_threads = reinterpret_cast<int (*)()>(dlsym(lib, "omp_get_max_threads"));
      c.set_num_threads = reinterpret_cast<void (*)(int)>(dlsym(lib, "omp_set_num_threads"));
      if (!c.get_max_threads || !c.set_num_threads) c = {};
    }
    return c;
  }();
  return controls;
}
class OneOmpThread {
 public:
  OneOmpThread() : c_(omp_controls()) {
    if (c_.set_num_threads) {
      saved_ = c_.get_max_threads();
      if (saved_ != 1) c_.set_num_threads(1);
    }
  }
  ~OneOmpThread() {
    if (c_.set_num_threads && saved_ != 1) c_.set_num_threads(saved_);
  }
  OneOmpThread(const OneOmpThread&) = delete;
  OneOmpThread& operator=(const OneOmpThread&) = delete;

 private:
  const OmpControls& c_;
  int saved_ = 1;
};

thread_local int backend_depth = 0;

// Marks the calling thread as inside a library call (in_backend_call()).
class InBackend {
 public:
  InBackend() { ++backend_depth; }
  ~InBackend() { --backend_depth; }
  InBackend(const InBackend&) = delete;
  InBackend& operator=(const InBackend&) = delete;
};

void call(bool ta, bool tb, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
          const float* b, i64 ldb, float beta, float* c, i64 ldc) {
  const OneOmpThread one;
  const InBackend inside;
  const dnnl_status_t s =
      dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (s != dnnl_success) bad("oneDNN's dnnl_sgemm failed with status " + std::to_string(int(s)));
}

// Set by set_blas_threads: the caller's choice stands; else OpenBLAS runs one thread per call.
std::atomic<bool> blas_threads_chosen{false};

void call(bool ta, bool tb, i64 m, i64 n, i64 k, double alpha, const double* a, i64 lda,
          const double* b, i64 ldb, double beta, double* c, i64 ldc) {
  static std::once_flag one_thread;
  std::call_once(one_thread, [] {
    if (!blas_threads_chosen.load()) openblas_set_num_threads(1);
  });
  const InBackend inside;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

// ---------------------------------------------------------------- splitting on the pool

// Products below this many multiply-adds run as one call; larger ones are split so that each
// block has at least kBlockWork of them. A pool round trip costs a few microseconds (2^20
// multiply-adds take about 10 us at 100 GFLOP/s), but a split also leaves the operands in both
// cores' caches, and a later write to them (the optimizer's update of a weight matrix) then waits
// for the other core (see RunFrame::worth_a_thread in executor.cpp). Split at 2 threads (from
// 2^21 on), the MLP benchmark's 60x784x100 product (4.7M) took 85 us against 75 whole, the
// 784x60x100 gradient of its weights 70 against 56, and the Adam update of those weights that
// followed 82 against 32. 2^23 (8.4M, about 100 us at one thread) splits where the halves pay
// for that; the CNN's convolutions are 25-300M.
constexpr i64 kParallelWork = i64{1} << 23;
constexpr i64 kBlockWork = i64{1} << 20;
constexpr i64 kAlign = 16;  // block edges on multiples of 16 rows/columns (whole SIMD tiles)

// C = alpha op(A) op(B) + beta C in blocks of rows of C (op(A) rows) when m >= n, else columns
// (op(B) columns). Each block of C depends only on its rows of op(A) (columns of op(B)), so the
// blocks are independent, and their bounds depend only on (m, n, k): bit-identical results for
// any thread count.
template <class T>
void split(bool ta, bool tb, i64 m, i64 n, i64 k, T alpha, const T* a, i64 lda, const T* b,
           i64 ldb, T beta, T* c, i64 ldc) {
  if (m * n * k < kParallelWork) return call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const bool rows = m >= n;
  const i64 other = rows ? n : m;
  i64 grain = (kBlockWork + other * k - 1) / (other * k);
  grain = (grain + kAlign - 1) / kAlign * kAlign;
  parallel_for(rows ? m : n, grain, [&](i64 lo, i64 hi) {
    if (rows) {
      call(ta, tb, hi - lo, n, k, alpha, a + (ta ? lo : lo * lda), lda, b, ldb, beta,
           c + lo * ldc, ldc);
    } else {
      call(ta, tb, m, hi - lo, k, alpha, a, lda, b + (tb ? lo * ldb : lo), ldb, beta, c + lo, ldc);
    }
  });
}

}  // namespace

void gemm(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
          const float* b, i64 ldb, float beta, float* c, i64 ldc) {
  if (!prepare(trans_a, trans_b, m, n, k, lda, ldb, beta, c, ldc)) return;
  warn_once_if_generic(false);
  split(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, double alpha, const double* a, i64 lda,
          const double* b, i64 ldb, double beta, double* c, i64 ldc) {
  if (!prepare(trans_a, trans_b, m, n, k, lda, ldb, beta, c, ldc)) return;
  warn_once_if_generic(true);
  split(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_serial(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a,
                 i64 lda, const float* b, i64 ldb, float beta, float* c, i64 ldc) {
  if (!prepare(trans_a, trans_b, m, n, k, lda, ldb, beta, c, ldc)) return;
  warn_once_if_generic(false);
  call(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_serial(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, double alpha, const double* a,
                 i64 lda, const double* b, i64 ldb, double beta, double* c, i64 ldc) {
  if (!prepare(trans_a, trans_b, m, n, k, lda, ldb, beta, c, ldc)) return;
  warn_once_if_generic(true);
  call(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool in_backend_call() { return backend_depth > 0; }

std::string blas_backend_description() {
  return dnnl_description() + "; " + openblas_version() + " " + openblas_core() + " (float64)";
}

void set_blas_threads(int n) {
  blas_threads_chosen.store(true);
  openblas_set_num_threads(std::max(1, n));
}

}  // namespace kiln::kernels

// The only translation unit of kiln that includes <cblas.h> (see BUILD_NOTES.md).
#include "framework/kernels/gemm.hpp"

#include <algorithm>
#include <climits>
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

#include "framework/errors.hpp"

// Declared by OpenBLAS's cblas.h, but not by the reference (netlib) cblas.h that the Debian
// alternatives system may select; an identical redeclaration is harmless.
extern "C" void openblas_set_num_threads(int num_threads);

namespace kiln::kernels {

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw InvalidArgumentError("gemm: " + what);
}

blasint to_blas(std::int64_t v, const char* name) {
  if (v < 0) bad(std::string(name) + " = " + std::to_string(v) + " is negative");
  if (v > static_cast<std::int64_t>(INT_MAX)) {
    bad(std::string(name) + " = " + std::to_string(v) +
        " does not fit OpenBLAS's 32-bit integer interface");
  }
  return static_cast<blasint>(v);
}

// Checks the arguments and handles the empty cases; returns false when nothing is left to do.
template <class T>
bool prepare(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
             std::int64_t lda, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  to_blas(m, "m");
  to_blas(n, "n");
  to_blas(k, "k");
  to_blas(lda, "lda");
  to_blas(ldb, "ldb");
  to_blas(ldc, "ldc");
  // Row-major: the stored row length of A is k (m when transposed), of B n (k), of C n.
  const std::int64_t a_cols = trans_a ? m : k;
  const std::int64_t b_cols = trans_b ? k : n;
  if (lda < std::max<std::int64_t>(1, a_cols))
    bad("lda = " + std::to_string(lda) + " < " + std::to_string(a_cols));
  if (ldb < std::max<std::int64_t>(1, b_cols))
    bad("ldb = " + std::to_string(ldb) + " < " + std::to_string(b_cols));
  if (ldc < std::max<std::int64_t>(1, n))
    bad("ldc = " + std::to_string(ldc) + " < " + std::to_string(n));
  if (m == 0 || n == 0) return false;
  if (k == 0) {
    // op(A) op(B) is the zero matrix: C = beta * C (beta == 0 overwrites, as BLAS does).
    for (std::int64_t i = 0; i < m; ++i) {
      T* row = c + i * ldc;
      if (beta == T(0)) {
        std::fill(row, row + n, T(0));
      } else {
        for (std::int64_t j = 0; j < n; ++j) row[j] *= beta;
      }
    }
    return false;
  }
  return true;
}

CBLAS_TRANSPOSE op(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc) {
  if (!prepare(trans_a, trans_b, m, n, k, lda, ldb, beta, c, ldc)) return;
  cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
          const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
          double* c, std::int64_t ldc) {
  if (!prepare(trans_a, trans_b, m, n, k, lda, ldb, beta, c, ldc)) return;
  cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void set_blas_threads(int n) {
  openblas_set_num_threads(std::max(1, n));
}

}  // namespace kiln::kernels

#pragma once
// Dense matrix product through OpenBLAS. This header does not include <cblas.h>; gemm.cpp is the
// only translation unit of kiln that does (OpenBLAS's header clashes with other cblas
// declarations).
#include <cstdint>

namespace kiln::kernels {

/// Row-major C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, where op(X) is X or X^T.
/// A is stored [m,k] (or [k,m] when trans_a) with row stride lda; likewise B [k,n] / [n,k] with
/// ldb and C [m,n] with ldc. beta == 0 overwrites C without reading it (NaN in C does not leak).
/// Empty products are allowed: m or n == 0 does nothing, k == 0 only scales C by beta.
/// Throws kiln::InvalidArgumentError for negative sizes, too small leading dimensions, or sizes
/// that do not fit OpenBLAS's 32-bit integer interface.
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc);
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
          const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
          double* c, std::int64_t ldc);

/// Sets the number of OpenBLAS threads for the whole process (1 when kiln threads the work
/// itself). Values below 1 are treated as 1.
void set_blas_threads(int n);

}  // namespace kiln::kernels

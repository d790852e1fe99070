#pragma once
// Dense matrix products: the one seam between kiln and its BLAS libraries.
//
// Backends (chosen by measurement, bench/gemm_backends.cpp): float32 products run oneDNN's
// dnnl_sgemm, which JIT-compiles for the instruction set the CPU reports (AVX2, AVX-512, ...)
// rather than looking the CPU model up in a table; float64 products run OpenBLAS (Debian 12's
// 0.3.21 may fall back to its generic SSE3 "Prescott" kernel on CPUs newer than it; float64 only
// serves gradient checks). This header includes neither library; gemm.cpp is the only
// translation unit of kiln that does.
//
// Threads: a large product is split into blocks of rows (or columns) of C on kiln's thread pool
// (framework/thread_pool.hpp), each block one single-threaded library call; the blocks depend
// only on the sizes, so results are bit-identical for any thread count. Neither library starts
// threads of its own for kiln's calls. All functions are safe to call from many threads at once.
#include <cstdint>
#include <string>

namespace kiln::kernels {

/// Row-major C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, where op(X) is X or X^T.
/// A is stored [m,k] (or [k,m] when trans_a) with row stride lda; likewise B [k,n] / [n,k] with
/// ldb and C [m,n] with ldc. beta == 0 overwrites C without reading it (NaN in C does not leak).
/// Empty products are allowed: m or n == 0 does nothing, k == 0 only scales C by beta.
/// Throws kiln::InvalidArgumentError for negative sizes, too small leading dimensions, or sizes
/// that do not fit a 32-bit BLAS integer.
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc);
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
          const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
          double* c, std::int64_t ldc);

/// The same product as one single-threaded library call on the calling thread (no split on the
/// pool): for kernels that already run on the pool, e.g. one image of a convolution each.
void gemm_serial(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                 float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                 float beta, float* c, std::int64_t ldc);
void gemm_serial(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                 double alpha, const double* a, std::int64_t lda, const double* b,
                 std::int64_t ldb, double beta, double* c, std::int64_t ldc);

/// The kernels kiln's products run, for logs and headers, e.g.
/// "oneDNN 2.6.3 sgemm avx512_core_bf16; OpenBLAS 0.3.21 Haswell (float64)".
std::string blas_backend_description();

/// True while the calling thread is inside a library call of the functions above. oneDNN's sgemm
/// allocates its packing buffers inside each call; the allocation accounting of a steady-state run
/// (tests/framework/allocation_test.cpp) uses this to tell the library's allocations from kiln's.
bool in_backend_call();

/// Sets the number of OpenBLAS threads (float64 products) for the whole process; values below 1
/// are treated as 1. Without a call, kiln sets 1 at its first float64 product (it threads its
/// products itself, see above). oneDNN always runs one thread per call.
void set_blas_threads(int n);

}  // namespace kiln::kernels

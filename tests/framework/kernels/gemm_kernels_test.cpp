// Tests of the raw-buffer gemm (framework/kernels/gemm.hpp) against a naive reference written
// here: every combination of transposes with leading dimensions, and the edge cases.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "framework/errors.hpp"
#include "framework/kernels/gemm.hpp"
#include "tests/framework/kernels/kernel_test_support.hpp"

namespace {

using i64 = std::int64_t;
using namespace kiln::testing::kernel_buffers;
namespace kk = kiln::kernels;

// Naive C = alpha op(A) op(B) + beta C, row-major with leading dimensions (reference only).
template <class T>
void naive_gemm(bool ta, bool tb, i64 m, i64 n, i64 k, T alpha, const std::vector<T>& a, i64 lda,
                const std::vector<T>& b, i64 ldb, T beta, std::vector<T>& c, i64 ldc) {
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) {
      double s = 0;
      for (i64 p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
      }
      c[i * ldc + j] = static_cast<T>(alpha * s + (beta == T(0) ? 0.0 : beta * c[i * ldc + j]));
    }
  }
}

TEST_CASE_TEMPLATE("kernels.gemm.matches_naive_all_transposes", T, float, double) {
  const i64 m = 5, n = 7, k = 4;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      // Leading dimensions larger than the rows need, to check they are honoured.
      const i64 lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      const auto a = random_vector<T>((ta ? k : m) * lda, 1);
      const auto b = random_vector<T>((tb ? n : k) * ldb, 2);
      auto c = random_vector<T>(m * ldc, 3);
      auto expected = c;
      kk::gemm(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, T(2), c.data(), ldc);
      naive_gemm(ta, tb, m, n, k, T(0.5), a, lda, b, ldb, T(2), expected, ldc);
      CHECK(rel_error(c, expected) <= tolerance<T>());
    }
  }
}

TEST_CASE_TEMPLATE("kernels.gemm.edge_cases", T, float, double) {
  SUBCASE("beta 0 overwrites NaN") {
    const auto a = random_vector<T>(6, 4), b = random_vector<T>(6, 5);
    std::vector<T> c(4, std::numeric_limits<T>::quiet_NaN());
    std::vector<T> expected(4);
    kk::gemm(false, false, 2, 2, 3, T(1), a.data(), 3, b.data(), 2, T(0), c.data(), 2);
    naive_gemm(false, false, 2, 2, 3, T(1), a, 3, b, 2, T(0), expected, 2);
    CHECK(rel_error(c, expected) <= tolerance<T>());
  }
  SUBCASE("k == 0 scales C by beta") {
    std::vector<T> c = {1, 2, 3, 4};
    kk::gemm(false, false, 2, 2, 0, T(1), nullptr, 1, nullptr, 2, T(3), c.data(), 2);
    CHECK(c == std::vector<T>{3, 6, 9, 12});
    kk::gemm(false, false, 2, 2, 0, T(1), nullptr, 1, nullptr, 2, T(0), c.data(), 2);
    CHECK(c == std::vector<T>{0, 0, 0, 0});
  }
  SUBCASE("m == 0 does nothing") {
    kk::gemm(false, false, 0, 2, 3, T(1), nullptr, 3, nullptr, 2, T(0), nullptr, 2);
  }
  SUBCASE("bad leading dimension throws") {
    std::vector<T> a(6), b(6), c(4);
    CHECK_THROWS_AS(kk::gemm(false, false, 2, 2, 3, T(1), a.data(), 2, b.data(), 2, T(0),
                             c.data(), 2),
                    kiln::InvalidArgumentError);
  }
  SUBCASE("one BLAS thread") {
    kk::set_blas_threads(1);
    const auto a = random_vector<T>(12, 6), b = random_vector<T>(12, 7);
    std::vector<T> c(9), expected(9);
    kk::gemm(false, true, 3, 3, 4, T(1), a.data(), 4, b.data(), 4, T(0), c.data(), 3);
    naive_gemm(false, true, 3, 3, 4, T(1), a, 4, b, 4, T(0), expected, 3);
    CHECK(rel_error(c, expected) <= tolerance<T>());
  }
}

}  // namespace

// MatMul: values (hand-computed) for every transpose combination, static shapes with unknown
// dimensions, errors naming the op, and gradient checks of the four transpose cases.
#include <doctest/doctest.h>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::check_grad;
using kiln::testing::check_throws_naming;
using kiln::testing::kFloat32;

TEST_CASE("linalg.matmul_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] = [[58,64],[139,154]].
  const xt::xarray<double> av{{1, 2, 3}, {4, 5, 6}}, bv{{7, 8}, {9, 10}, {11, 12}};
  const xt::xarray<double> want{{58, 64}, {139, 154}};
  Tensor a = constant(av), b = constant(bv);
  Tensor at = constant(xt::xarray<double>(xt::transpose(av))),
         bt = constant(xt::xarray<double>(xt::transpose(bv)));
  CHECK(matmul(a, b).shape() == Shape{2, 2});
  CHECK(testing::allclose(sess.run(matmul(a, b)), want));
  CHECK(testing::allclose(sess.run(matmul(at, b, {.transpose_a = true})), want));
  CHECK(testing::allclose(sess.run(matmul(a, bt, {.transpose_b = true})), want));
  CHECK(testing::allclose(sess.run(matmul(at, bt, {.transpose_a = true, .transpose_b = true})),
                          want));
  const Array f =
      sess.run(matmul(constant(xt::xarray<float>(av)), constant(xt::xarray<float>(bv))));
  CHECK(f.dtype() == float32);
  CHECK(testing::allclose(f, want));
  // [3,2] x [2,3]: a non-square result.
  CHECK(testing::allclose(sess.run(matmul(b, a)), {{39, 54, 69}, {49, 68, 87}, {59, 82, 105}}));
  // An empty inner dimension gives zeros.
  Tensor e1 = placeholder(float32, {2, -1}, "e1"), e2 = placeholder(float32, {-1, 3}, "e2");
  CHECK(testing::allclose(sess.run(matmul(e1, e2), {{e1, xt::xarray<float>::from_shape({2, 0})},
                                                    {e2, xt::xarray<float>::from_shape({0, 3})}}),
                          xt::zeros<double>({2, 3})));
}

TEST_CASE("linalg.matmul_static_shapes") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  CHECK(matmul(x, placeholder(float32, {3, 5})).shape() == Shape{-1, 5});
  CHECK(matmul(x, placeholder(float32, {5, 3}), {.transpose_b = true}).shape() == Shape{-1, 5});
  CHECK(matmul(x, placeholder(float32, {-1, 4}), {.transpose_a = true}).shape() == Shape{3, 4});
  CHECK(matmul(placeholder(float32), placeholder(float32, {3, 4})).shape() == Shape{-1, 4});
  CHECK(matmul(x, placeholder(float32, {-1, -1})).shape() == Shape{-1, -1});
}

TEST_CASE("linalg.matmul_errors_name_the_op") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = placeholder(float32, {2, 3}, "a");
  try {
    matmul(a, placeholder(float32, {4, 5}), {}, "mm");
    FAIL("expected ValueError");
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("Dimensions must be equal, but are 3 and 4") != std::string::npos);
    CHECK(msg.find("'mm'") != std::string::npos);
    CHECK(msg.find("MatMul") != std::string::npos);
    CHECK(msg.find("[2,3], [4,5]") != std::string::npos);
  }
  check_throws_naming<ValueError>(
      [&] {
        matmul(a, placeholder(float32, {2, 5}), {.transpose_b = true}, "mm_t");
      },
      "mm_t", "MatMul");
  check_throws_naming<ValueError>(
      [&] {
        matmul(a, placeholder(float32, {3, 4, 5}), {}, "mm_rank");
      },
      "mm_rank", "MatMul");
  check_throws_naming<TypeError>(
      [&] {
        matmul(a, placeholder(float64, {3, 4}), {}, "mm_mixed");
      },
      "mm_mixed", "MatMul");
  check_throws_naming<TypeError>(
      [&] {
        matmul(placeholder(int32, {2, 3}), placeholder(int32, {3, 4}), {}, "mm_int");
      },
      "mm_int", "MatMul");
  // Inner dimensions that only disagree at run time.
  Tensor p = placeholder(float32, {-1, -1}, "p"), q = placeholder(float32, {-1, -1}, "q");
  Session sess;
  try {
    sess.run(matmul(p, q, {}, "late"), {{p, xt::xarray<float>::from_shape({2, 3})},
                                        {q, xt::xarray<float>::from_shape({4, 5})}});
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(std::string(e.what()).find("'late'") != std::string::npos);
  }
}

TEST_CASE("linalg.matmul_gradients") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = placeholder(float64, {2, 3}, "a"), at = placeholder(float64, {3, 2}, "at");
  Tensor b = placeholder(float64, {3, 4}, "b"), bt = placeholder(float64, {4, 3}, "bt");
  const Array av = xt::xarray<double>{{0.5, -1.5, 2.0}, {1.2, 0.7, -1.9}};
  const Array atv = xt::xarray<double>{{0.5, 1.2}, {-1.5, 0.7}, {2.0, -1.9}};
  const Array bv =
      xt::xarray<double>{{0.1, 0.2, -0.3, 0.4}, {1.5, -0.6, 0.7, 0.8}, {0.9, 1.0, -1.1, 1.2}};
  const Array btv =
      xt::xarray<double>{{0.1, 1.5, 0.9}, {0.2, -0.6, 1.0}, {-0.3, 0.7, -1.1}, {0.4, 0.8, 1.2}};
  check_grad(matmul(a, b), {{a, av}, {b, bv}});
  check_grad(matmul(at, b, {.transpose_a = true}), {{at, atv}, {b, bv}});
  check_grad(matmul(a, bt, {.transpose_b = true}), {{a, av}, {bt, btv}});
  check_grad(matmul(at, bt, {.transpose_a = true, .transpose_b = true}), {{at, atv}, {bt, btv}});
  Tensor d = placeholder(float64, {-1, 3}, "d");  // batch dimension unknown at build
  check_grad(matmul(d, b), {{d, av}, {b, bv}});
  // Second order: the gradient of a product of both inputs.
  check_grad(*gradients({reduce_sum(square(matmul(a, b)))}, {a})[0], {{a, av}, {b, bv}}, 1e-5);

  Tensor f = placeholder(float32, {2, 3}, "f"), h = placeholder(float32, {3, 4}, "h");
  const FeedDict fv{{f, xt::xarray<float>(av.as<double>())},
                    {h, xt::xarray<float>(bv.as<double>())}};
  check_grad(matmul(f, h), fv, 2e-3, kFloat32);
  check_grad(matmul(h, f, {.transpose_a = true, .transpose_b = true}), fv, 2e-3, kFloat32);
}

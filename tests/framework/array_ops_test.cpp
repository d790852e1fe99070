// Array ops: values (hand-computed unless a comment says otherwise), static shape inference with
// unknown (-1) dimensions and ranks, errors naming the op, and gradient checks.
#include <doctest/doctest.h>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::check_grad;
using kiln::testing::check_throws_naming;
using kiln::testing::column;
using kiln::testing::contains;
using kiln::testing::kFloat32;
using kiln::testing::message_of;

namespace {

xt::xarray<double> iota(std::vector<std::size_t> shape) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = static_cast<double>(i);
  return a;
}

}  // namespace

TEST_CASE("array.sum_to_shape_needs_a_target_its_input_broadcasts_to") {
  // [6, 5] reduces to [1, 5], [5], [6, 1] or itself; not to [4, 5] (4 is neither 1 nor 6).
  Graph g;
  auto guard = g.as_default();
  Session sess;
  CHECK_THROWS_AS(sum_to_shape(placeholder(float32, {6, 5}), constant(xt::xarray<std::int32_t>{4, 5})), ValueError);
  CHECK_THROWS_AS(sum_to_shape(placeholder(float32, {5}), constant(xt::xarray<std::int32_t>{1, 5})), ValueError);
  const std::string built = message_of<ValueError>(
      [&] { sum_to_shape(placeholder(float32, {6, 5}), constant(xt::xarray<std::int32_t>{4, 5}), "sts"); });
  CHECK(contains(built, "'sts' (op: 'SumToShape')"));
  CHECK(contains(built, "cannot reduce [6,5] to [4,5]"));
  Tensor x = placeholder(float32, {6, -1}, "x"), target = placeholder(int32, {2}, "target");
  Tensor y = sum_to_shape(x, target);
  const xt::xarray<float> xv = xt::ones<float>({6, 5});
  CHECK(sess.run(y, {{x, xv}, {target, xt::xarray<std::int32_t>{6, 1}}}).shape() == Shape{6, 1});
  for (const auto& bad : {xt::xarray<std::int32_t>{4, 5}, xt::xarray<std::int32_t>{6, 2}}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(sess.run(y, {{x, xv}, {target, bad}}), InvalidArgumentError);
    CHECK(contains(message_of<InvalidArgumentError>([&] { sess.run(y, {{x, xv}, {target, bad}}); }),
                   "(op: 'SumToShape')"));
  }
}

TEST_CASE("array.reshape_and_one_hot_reject_fed_shapes_they_cannot_hold") {
  // Found by probing fed shapes under valgrind: a product that wraps around 2^64 gave a tiny buffer
  // that later kernels read and wrote past.
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {-1}, "x"), s64 = placeholder(int64, {3}, "s64");
  Tensor s = placeholder(int32, {-1}, "s"), any = placeholder(int32, Shape::unknown(), "any");
  const xt::xarray<float> six{1, 2, 3, 4, 5, 6};
  // 7 * 7905747460161236407 == 1 (mod 2^64): the -1 would be inferred as 6.
  CHECK_THROWS_AS(sess.run(reshape(x, s64), {{x, six}, {s64, xt::xarray<std::int64_t>{-1, 7, 7905747460161236407LL}}}),
                  InvalidArgumentError);
  const auto fails = [&](const Tensor& target, const Array& value) {
    return message_of<InvalidArgumentError>([&] { sess.run(reshape(x, target), {{x, six}, {target, value}}); });
  };
  CHECK(contains(fails(s, xt::xarray<std::int32_t>{-5, 2}), "a negative dimension in the requested shape [-5,2]"));
  CHECK(contains(fails(s, xt::xarray<std::int32_t>{-1, -1, 6}), "more than one -1"));
  CHECK(contains(fails(s, xt::xarray<std::int32_t>{0, -1}), "cannot hold"));
  CHECK(contains(fails(s, xt::xarray<std::int32_t>{4, -1}), "cannot hold"));
  CHECK(contains(fails(s, xt::xarray<std::int32_t>{2, 2}), "the requested shape has 4"));
  CHECK(contains(fails(any, xt::xarray<std::int32_t>{{2, 3}}), "must be a vector"));
  CHECK(sess.run(reshape(x, s), {{x, six}, {s, xt::xarray<std::int32_t>{2, -1, 1}}}).shape() == Shape{2, 3, 1});
  CHECK(sess.run(reshape(x, any), {{x, six}, {any, xt::xarray<std::int32_t>{-1}}}).shape() == Shape{6});
  // 4 * 2^62 == 0 (mod 2^64).
  Tensor i = placeholder(int32, {-1}, "i");
  CHECK_THROWS_AS(sess.run(one_hot(i, std::int64_t{1} << 62), {{i, xt::xarray<std::int32_t>{0, 0, 0, 0}}}),
                  InvalidArgumentError);
  const std::string hot = message_of<InvalidArgumentError>(
      [&] { sess.run(one_hot(i, std::int64_t{1} << 62, float32, "hot"), {{i, xt::xarray<std::int32_t>{0, 0, 0, 0}}}); });
  CHECK(contains(hot, "'hot': an array of shape [4,4611686018427387904] of float would hold"));
  CHECK(contains(message_of<InvalidArgumentError>([&] {
                   sess.run(reshape(x, s, "r"), {{x, six}, {s, xt::xarray<std::int32_t>{-5, 2}}});
                 }),
                 "Input to reshape 'r': a negative dimension"));
}

TEST_CASE("array.transpose") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor x = constant(xt::xarray<float>{{1, 2, 3}, {4, 5, 6}});
  CHECK(testing::allclose(sess.run(transpose(x)), {{1, 4}, {2, 5}, {3, 6}}));
  CHECK(transpose(x).shape() == Shape{3, 2});
  // x3[i,j,k] = 12i + 4j + k; y = transpose(x3, {1,2,0}) has y[j,k,i] = x3[i,j,k].
  Tensor x3 = constant(iota({2, 3, 4}));
  Tensor y = transpose(x3, {1, 2, 0});
  CHECK(y.shape() == Shape{3, 4, 2});
  xt::xarray<double> want = xt::xarray<double>::from_shape({3, 4, 2});
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) want(j, k, i) = static_cast<double>(12 * i + 4 * j + k);
  CHECK(testing::allclose(sess.run(y), want));
  CHECK(testing::allclose(sess.run(transpose(constant(xt::xarray<std::int32_t>{{1, 2}, {3, 4}}))),
                          {{1, 3}, {2, 4}}));

  Tensor p = placeholder(float32, {-1, 3, 5}, "p");
  CHECK(transpose(p, {2, 0, 1}).shape() == Shape{5, -1, 3});
  Tensor u = placeholder(float32, Shape::unknown(), "u");
  CHECK(transpose(u).shape() == Shape::unknown());
  CHECK(transpose(u, {1, 0, 2}).shape() == Shape{-1, -1, -1});
  // Unknown rank at build: the axes are reversed at run time.
  const Array r = sess.run(transpose(u), {{u, xt::xarray<float>{{1, 2, 3}, {4, 5, 6}}}});
  CHECK(testing::allclose(r, {{1, 4}, {2, 5}, {3, 6}}));

  check_throws_naming<ValueError>(
      [&] {
        transpose(p, {0, 0, 1}, "bad_perm");
      },
      "bad_perm", "Transpose");
  check_throws_naming<ValueError>(
      [&] {
        transpose(p, {1, 0}, "short_perm");
      },
      "short_perm", "Transpose");
}

TEST_CASE("array.expand_dims_and_squeeze") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor x = constant(xt::xarray<float>{{1, 2, 3}, {4, 5, 6}});
  CHECK(expand_dims(x, 0).shape() == Shape{1, 2, 3});
  CHECK(expand_dims(x, 1).shape() == Shape{2, 1, 3});
  CHECK(expand_dims(x, -1).shape() == Shape{2, 3, 1});
  CHECK(testing::allclose(sess.run(expand_dims(x, 1)), {{{1, 2, 3}}, {{4, 5, 6}}}));
  check_throws_naming<ValueError>([&] { expand_dims(x, 3, "ed"); }, "ed", "ExpandDims");
  check_throws_naming<ValueError>([&] { expand_dims(x, -4, "ed2"); }, "ed2", "ExpandDims");

  Tensor p = placeholder(float32, {1, -1, 1, 3}, "p");
  CHECK(squeeze(p).shape() == Shape::unknown());  // the -1 could be 1
  CHECK(squeeze(p, {0, 2}).shape() == Shape{-1, 3});
  CHECK(squeeze(p, {-2}).shape() == Shape{1, -1, 3});
  CHECK(squeeze(p, {1}).shape() == Shape{1, 1, 3});
  CHECK(squeeze(constant(xt::xarray<float>{{{1, 2}}})).shape() == Shape{2});
  const Array pv = xt::xarray<float>{{{{1, 2, 3}}, {{4, 5, 6}}}};  // [1,2,1,3]
  CHECK(testing::allclose(sess.run(squeeze(p), {{p, pv}}), {{1, 2, 3}, {4, 5, 6}}));
  CHECK(testing::allclose(sess.run(squeeze(p, {0}), {{p, pv}}), {{{1, 2, 3}}, {{4, 5, 6}}}));
  check_throws_naming<ValueError>([&] { squeeze(p, {3}, "sq"); }, "sq", "Squeeze");
  check_throws_naming<ValueError>([&] { squeeze(p, {4}, "sq_range"); }, "sq_range", "Squeeze");
  // A dimension unknown at build but not 1 at run time.
  CHECK_THROWS_AS(sess.run(squeeze(p, {1}), {{p, pv}}), InvalidArgumentError);
}

TEST_CASE("array.concat") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor a = constant(xt::xarray<float>{{1, 2}, {3, 4}});
  Tensor b = constant(xt::xarray<float>{{5, 6}});
  Tensor c = constant(xt::xarray<float>(column({7, 8})));
  CHECK(concat({a, b}, 0).shape() == Shape{3, 2});
  CHECK(testing::allclose(sess.run(concat({a, b}, 0)), {{1, 2}, {3, 4}, {5, 6}}));
  CHECK(testing::allclose(sess.run(concat({a, c, a}, 1)), {{1, 2, 7, 1, 2}, {3, 4, 8, 3, 4}}));
  CHECK(testing::allclose(sess.run(concat({c, a}, -1)), {{7, 1, 2}, {8, 3, 4}}));
  CHECK(testing::allclose(
      sess.run(concat({constant(xt::xarray<bool>{true}), constant(xt::xarray<bool>{false})}, 0)),
      {1, 0}));

  Tensor p = placeholder(float32, {-1, 3}, "p"), q = placeholder(float32, {2, 3}, "q");
  CHECK(concat({p, q}, 0).shape() == Shape{-1, 3});
  CHECK(concat({q, q}, 0).shape() == Shape{4, 3});
  CHECK(concat({p, q}, 1).shape() == Shape{2, 6});
  CHECK(concat({placeholder(float32, {-1, 2}), placeholder(float32, {3, -1})}, 1).shape() ==
        Shape{3, -1});
  CHECK(concat({placeholder(float32), q}, 0).shape() == Shape{-1, 3});
  CHECK(concat({placeholder(float32), placeholder(float32)}, 0).shape() == Shape::unknown());

  check_throws_naming<ValueError>(
      [&] {
        concat({q, placeholder(float32, {2, 4})}, 0, "cat");
      },
      "cat", "ConcatV2");
  check_throws_naming<ValueError>(
      [&] {
        concat({q, placeholder(float32, {2, 3, 1})}, 0, "cat_rank");
      },
      "cat_rank", "ConcatV2");
  check_throws_naming<ValueError>([&] { concat({q, q}, 2, "cat_axis"); }, "cat_axis", "ConcatV2");
  check_throws_naming<ValueError>(
      [&] {
        concat({scalar(1.0), scalar(2.0)}, 0, "cat_scalars");
      },
      "cat_scalars", "ConcatV2");
  check_throws_naming<TypeError>(
      [&] {
        concat({q, placeholder(int32, {2, 3})}, 0, "cat_type");
      },
      "cat_type", "ConcatV2");
  CHECK_THROWS_AS(concat({}, 0), ValueError);
  // Shapes that only disagree at run time.
  Tensor u = placeholder(float32, {-1, -1}, "u"), v = placeholder(float32, {-1, -1}, "v");
  CHECK_THROWS_AS(sess.run(concat({u, v}, 0),
                           {{u, xt::xarray<float>{{1, 2}}}, {v, xt::xarray<float>{{1, 2, 3}}}}),
                  InvalidArgumentError);
}

TEST_CASE("array.stack") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor a = constant(xt::xarray<float>{1, 2}), b = constant(xt::xarray<float>{3, 4}),
         c = constant(xt::xarray<float>{5, 6});
  CHECK(stack({a, b, c}).shape() == Shape{3, 2});
  CHECK(testing::allclose(sess.run(stack({a, b, c})), {{1, 2}, {3, 4}, {5, 6}}));
  CHECK(stack({a, b, c}, 1).shape() == Shape{2, 3});
  CHECK(testing::allclose(sess.run(stack({a, b, c}, 1)), {{1, 3, 5}, {2, 4, 6}}));
  CHECK(testing::allclose(sess.run(stack({a, b, c}, -1)), {{1, 3, 5}, {2, 4, 6}}));
  CHECK(testing::allclose(sess.run(stack({scalar(1.0), scalar(2.0)})), {1, 2}));

  CHECK(stack({placeholder(float32, {-1, 2}), placeholder(float32, {3, -1})}, 1).shape() ==
        Shape{3, 2, 2});
  CHECK(stack({placeholder(float32), placeholder(float32)}).shape() == Shape::unknown());
  check_throws_naming<ValueError>(
      [&] {
        stack({a, constant(xt::xarray<float>{1, 2, 3})}, 0, "st");
      },
      "st", "Pack");
  check_throws_naming<ValueError>([&] { stack({a, b}, 2, "st_axis"); }, "st_axis", "Pack");
  check_throws_naming<TypeError>(
      [&] {
        stack({a, constant(xt::xarray<double>{1, 2})}, 0, "st_type");
      },
      "st_type", "Pack");
}

TEST_CASE("array.slice") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor x = constant(xt::xarray<float>{{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}});
  CHECK(slice(x, {1, 1}, {2, -1}).shape() == Shape{2, 3});
  CHECK(testing::allclose(sess.run(slice(x, {1, 1}, {2, -1})), {{6, 7, 8}, {10, 11, 12}}));
  CHECK(testing::allclose(sess.run(slice(x, {0, 2}, {-1, 1})), column({3, 7, 11})));
  CHECK(testing::allclose(sess.run(slice(x, {2, 4}, {1, 0})),
                          xt::xarray<double>::from_shape({1, 0})));
  // x3[i,j,k] = 12i + 4j + k: the window [1:2, 1:3, 2:4].
  CHECK(testing::allclose(sess.run(slice(constant(iota({2, 3, 4})), {1, 1, 2}, {1, 2, 2})),
                          {{{18, 19}, {22, 23}}}));

  Tensor p = placeholder(float32, {-1, 5}, "p");
  CHECK(slice(p, {1, 1}, {2, -1}).shape() == Shape{2, 4});
  CHECK(slice(p, {1, 1}, {-1, 2}).shape() == Shape{-1, 2});
  CHECK(slice(placeholder(float32), {0, 1}, {2, -1}).shape() == Shape{2, -1});
  check_throws_naming<ValueError>([&] { slice(p, {0}, {1}, "sl_rank"); }, "sl_rank", "Slice");
  check_throws_naming<ValueError>(
      [&] {
        slice(p, {0, 3}, {1, 3}, "sl_bounds");
      },
      "sl_bounds", "Slice");
  check_throws_naming<ValueError>([&] { slice(p, {0, 0}, {1}, "sl_len"); }, "sl_len", "Slice");
  check_throws_naming<ValueError>([&] { slice(p, {-1, 0}, {1, 1}, "sl_neg"); }, "sl_neg", "Slice");
  CHECK_THROWS_AS(sess.run(slice(p, {2, 0}, {2, -1}), {{p, xt::xarray<float>::from_shape({3, 5})}}),
                  InvalidArgumentError);
}

TEST_CASE("array.size_rank_shape") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor p = placeholder(float32, {-1, 3}, "p");
  CHECK(size(p).shape() == Shape{});
  CHECK(size(p).dtype() == int32);
  CHECK(rank(p).dtype() == int32);
  const FeedDict feed{{p, xt::xarray<float>::from_shape({2, 3})}};
  CHECK(sess.run(size(p), feed).scalar<std::int32_t>() == 6);
  CHECK(sess.run(rank(p), feed).scalar<std::int32_t>() == 2);
  CHECK(sess.run(rank(scalar(1.0))).scalar<std::int32_t>() == 0);
  CHECK(testing::allclose(sess.run(shape(p), feed), {2, 3}));
}

TEST_CASE("array.tile") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor x = constant(xt::xarray<float>{{1, 2}, {3, 4}});
  CHECK(tile(x, {2, 3}).shape() == Shape{4, 6});
  CHECK(testing::allclose(
      sess.run(tile(x, {2, 3})),
      {{1, 2, 1, 2, 1, 2}, {3, 4, 3, 4, 3, 4}, {1, 2, 1, 2, 1, 2}, {3, 4, 3, 4, 3, 4}}));
  CHECK(testing::allclose(sess.run(tile(constant(xt::xarray<std::int64_t>{1, 2, 3}), {2})),
                          {1, 2, 3, 1, 2, 3}));
  CHECK(testing::allclose(sess.run(tile(x, {1, 0})), xt::xarray<double>::from_shape({2, 0})));
  CHECK(tile(placeholder(float32, {-1, 3}), {2, 2}).shape() == Shape{-1, 6});
  CHECK(tile(placeholder(float32), {2, 2}).shape() == Shape{-1, -1});
  check_throws_naming<ValueError>([&] { tile(x, {2}, "tl"); }, "tl", "Tile");
  check_throws_naming<ValueError>([&] { tile(x, {2, -1}, "tl_neg"); }, "tl_neg", "Tile");
}

TEST_CASE("array.one_hot") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Out-of-range indices (-1, 3) give rows of zeros, like TF.
  Tensor y = one_hot(constant(xt::xarray<std::int32_t>{0, 2, -1, 1, 3}), 3);
  CHECK(y.dtype() == float32);
  CHECK(y.shape() == Shape{5, 3});
  CHECK(testing::allclose(sess.run(y), {{1, 0, 0}, {0, 0, 1}, {0, 0, 0}, {0, 1, 0}, {0, 0, 0}}));
  Tensor z = one_hot(constant(xt::xarray<std::int64_t>(column({1, 0}))), 2, float64);
  CHECK(z.shape() == Shape{2, 1, 2});
  CHECK(sess.run(z).dtype() == float64);
  CHECK(testing::allclose(sess.run(z), {{{0, 1}}, {{1, 0}}}));
  CHECK(one_hot(placeholder(int64, {-1}), 10).shape() == Shape{-1, 10});
  check_throws_naming<TypeError>([&] { one_hot(placeholder(float32, {3}), 2, float32, "oh"); },
                                 "oh", "OneHot");
  check_throws_naming<ValueError>(
      [&] { one_hot(placeholder(int32, {3}), -1, float32, "oh_depth"); }, "oh_depth", "OneHot");
  CHECK(op_registry().get("OneHot").not_differentiable);
}

TEST_CASE("array.gradients") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = placeholder(float64, {2, 3}, "a");
  Tensor b = placeholder(float64, {1, 3}, "b");
  Tensor d = placeholder(float64, {-1, 3}, "d");  // dynamic: gradients take run-time shapes
  Tensor u = placeholder(float64, Shape::unknown(), "u");
  const Array av = xt::xarray<double>{{0.5, -1.5, 2.0}, {1.2, 0.7, -1.9}};
  const Array bv = xt::xarray<double>{{0.3, 1.1, -0.9}};
  const Array dv = xt::xarray<double>{{0.1, 0.2, 0.3}, {0.4, -0.5, 0.6}, {0.7, 0.8, -0.9}};
  // Weights that make the Jacobians non-trivial.
  Tensor w = constant(xt::xarray<double>{{1, 2, 3}, {4, 5, 6}}),
         wr = constant(xt::xarray<double>{1.5, -2, 3});
  check_grad(identity(a), {{a, av}});
  check_grad(reshape(a, Shape{3, 2}), {{a, av}});
  check_grad(reshape(d, Shape{-1}), {{d, dv}});
  check_grad(broadcast_to(b, constant(xt::xarray<std::int32_t>{2, 3})), {{b, bv}});
  check_grad(sum_to_shape(a, constant(xt::xarray<std::int32_t>{1, 3})), {{a, av}});
  check_grad(broadcast_to(b, shape(d)), {{b, bv}}, 1e-6, {.extra_feeds = {{d, dv}}});
  check_grad(transpose(a * w), {{a, av}});
  check_grad(transpose(u, {1, 0}), {{u, av}});
  check_grad(expand_dims(a, 1), {{a, av}});
  check_grad(expand_dims(d, 0), {{d, dv}});
  check_grad(squeeze(b), {{b, bv}});
  check_grad(concat({a, b, a * w}, 0), {{a, av}, {b, bv}});
  check_grad(concat({a, b}, 0), {{a, av}, {b, bv}});
  check_grad(concat({d, a}, 0), {{d, dv}, {a, av}});  // extent of d unknown: ConcatGrad
  check_grad(concat({d, d * 2.0}, -1), {{d, dv}});
  check_grad(stack({a, a * w, a}, 1), {{a, av}});
  check_grad(stack({u, u * 3.0}, 2), {{u, av}});  // unknown rank: ConcatGrad with pack
  check_grad(slice(a, {0, 1}, {-1, 2}), {{a, av}});
  check_grad(slice(d, {1, 0}, {2, 2}), {{d, dv}});
  check_grad(tile(a, {2, 3}), {{a, av}});
  check_grad(tile(d, {3, 2}), {{d, dv}});
  // Second order: the gradient ops SliceGrad and ConcatGrad, differentiated again.
  check_grad(*gradients({reduce_sum(square(slice(a, {1, 0}, {1, 2})))}, {a})[0], {{a, av}});
  check_grad(*gradients({reduce_sum(square(concat({d, d * wr}, 0)))}, {d})[0], {{d, dv}}, 1e-5);
  check_grad(*gradients({reduce_sum(square(stack({u, u * 2.0}, 0)))}, {u})[0], {{u, av}}, 1e-5);

  // float32, looser tolerance and a larger step.
  Tensor f = placeholder(float32, {2, 3}, "f");
  const Array fv = xt::xarray<float>{{0.5f, -1.5f, 2.0f}, {1.2f, 0.7f, -1.9f}};
  check_grad(transpose(f), {{f, fv}}, 2e-3, kFloat32);
  check_grad(concat({f, f * 2.0}, 1), {{f, fv}}, 2e-3, kFloat32);
  check_grad(tile(slice(f, {0, 1}, {2, 2}), {2, 1}), {{f, fv}}, 2e-3, kFloat32);
}

// Shapes whose element or byte count overflows int64 (issue 11: zeros({2^32, 2^32}) used to run and
// return an Array of that shape holding 0 elements): ValueError when the shape is static (at
// build), InvalidArgumentError when it is known only at run time; the message names the shape.
#include <doctest/doctest.h>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;

TEST_CASE("types.shape_counts_and_overflow") {
  CHECK(Shape{2, 3, 4}.num_elements() == 24);
  CHECK(Shape{2, 3, 4}.num_bytes(float64) == 192);
  CHECK(Shape{-1, 3}.num_bytes(float32) == -1);
  CHECK(Shape{0, 1LL << 62, 1LL << 62}.num_elements() == 0);  // empty, however large the rest
  CHECK(Shape{1LL << 60, -1, 4}.rank() == 3);                  // unknown dims are not counted
  const std::string m = message_of<ValueError>([] { (void)Shape{1LL << 32, 1LL << 32}; });
  CHECK(contains(m, "[4294967296,4294967296]"));
  CHECK(contains(m, "int64"));
  // 2^62 elements fit; their bytes as double (2^65) do not.
  CHECK(Shape{1LL << 31, 1LL << 31}.num_elements() == (1LL << 62));
  CHECK(contains(message_of<ValueError>([] { (void)Shape({1LL << 31, 1LL << 31}).num_bytes(float64); }),
                 "[2147483648,2147483648] of double"));
  CHECK(checked_num_elements({3, 5}, 8) == 15);
  CHECK_FALSE(checked_num_elements({1LL << 40, 1LL << 30}).has_value());
}

TEST_CASE("types.static_shapes_that_overflow_fail_at_build") {
  Graph g;
  auto guard = g.as_default();
  CHECK(contains(message_of<ValueError>([] { zeros({1LL << 32, 1LL << 32}); }), "4294967296"));
  CHECK(contains(message_of<ValueError>([] { placeholder(float32, {1LL << 40, 1LL << 40}, "x"); }),
                 "1099511627776"));
  // fill: elements fit, bytes do not; the message names the op and the shape.
  const std::string m = message_of<ValueError>([] { fill({1LL << 31, 1LL << 31}, 1.0, float64, "big"); });
  CHECK(contains(m, "fill 'big'"));
  CHECK(contains(m, "[2147483648,2147483648]"));
  // A product of static dims past int64 in a shape function: tile of a known shape.
  Tensor x = zeros({2, 2});
  CHECK(contains(message_of<ValueError>([&] { tile(x, {1LL << 32, 1LL << 32}); }), "8589934592"));
}

TEST_CASE("types.runtime_shapes_that_overflow_fail_at_run") {
  Graph g;
  auto guard = g.as_default();
  Tensor target = placeholder(int64, {2}, "target");
  Tensor b = broadcast_to(scalar(1.0), target, "bcast");
  Tensor x = placeholder(float32, Shape::unknown(), "x");
  Tensor t = tile(x, {1LL << 32, 1LL << 32}, "tiled");
  Tensor r = reshape(x, target, "reshaped");
  Session sess;
  const xt::xarray<std::int64_t> huge{1LL << 32, 1LL << 32};
  const xt::xarray<float> one = xt::ones<float>({1, 1});
  CHECK(contains(message_of<InvalidArgumentError>([&] { sess.run(b, {{target, huge}}); }),
                 "'bcast': an array of shape [4294967296,4294967296] of float"));
  CHECK(contains(message_of<InvalidArgumentError>([&] { sess.run(t, {{x, one}}); }), "'tiled'"));
  CHECK(contains(message_of<InvalidArgumentError>([&] { sess.run(r, {{x, one}, {target, huge}}); }),
                 "reshape 'reshaped'"));
  CHECK(contains(message_of<InvalidArgumentError>([] { make_array(float32, {std::size_t{1} << 62, 4}); }),
                 "[4611686018427387904,4] of float"));
}

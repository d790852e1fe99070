// operator<<(std::ostream&, const Array&) prints like NumPy. Golden strings: NumPy 1.24.2's
// np.array2string(a, max_line_width=75, separator=', ', prefix='array(', suffix=',') inside
// "array(...)", followed by NumPy 2's "shape=..., dtype=..." extras (printed always here), with the
// same rule for moving them to a new line.
#include <doctest/doctest.h>

#include <limits>
#include <sstream>

#include <kiln.hpp>

using namespace kiln;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string printed(const Array& a) {
  std::ostringstream os;
  os << a;
  return os.str();
}

// 0.1f * i in float32, as NumPy's np.float32(0.1) * np.arange(n, dtype=np.float32).
Array tenths(std::size_t n) {
  xt::xarray<float> v = xt::xarray<float>::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) v(i) = 0.1f * static_cast<float>(i);
  return Array(v);
}

}  // namespace

TEST_CASE("array.prints_like_numpy_f32_2x3") {
  CHECK(printed(Array(xt::xarray<float>{{1, 2.5, 3}, {4, 5, 6}})) ==
      "array([[1. , 2.5, 3. ],\n"
      "       [4. , 5. , 6. ]], shape=(2, 3), dtype=float32)");
}

TEST_CASE("array.prints_like_numpy_f32_nonfinite") {
  CHECK(printed(Array(xt::xarray<float>{1.5f, kNaN, -kInf, 2.25f})) ==
      "array([1.5 ,  nan, -inf, 2.25], shape=(4,), dtype=float32)");
}

TEST_CASE("array.prints_like_numpy_f64_sci") {
  CHECK(printed(Array(xt::xarray<double>{1e-5, 1.5e10, -3})) ==
      "array([ 1.0e-05,  1.5e+10, -3.0e+00], shape=(3,), dtype=float64)");
}

TEST_CASE("array.prints_like_numpy_f32_thirds") {
  CHECK(printed(Array(xt::xarray<float>{1.0f / 3, 2.0f / 3, 10})) ==
      "array([ 0.33333334,  0.6666667 , 10.        ], shape=(3,), dtype=float32)");
}

TEST_CASE("array.prints_like_numpy_f64_thirds") {
  CHECK(printed(Array(xt::xarray<double>{1.0 / 3, 2.0 / 3, 10})) ==
      "array([ 0.33333333,  0.66666667, 10.        ], shape=(3,), dtype=float64)");
}

TEST_CASE("array.prints_like_numpy_i64_summarized") {
  CHECK(printed(Array(xt::xarray<std::int64_t>(xt::reshape_view(xt::arange<std::int64_t>(2000), {40, 50})))) ==
      "array([[   0,    1,    2, ...,   47,   48,   49],\n"
      "       [  50,   51,   52, ...,   97,   98,   99],\n"
      "       [ 100,  101,  102, ...,  147,  148,  149],\n"
      "       ...,\n"
      "       [1850, 1851, 1852, ..., 1897, 1898, 1899],\n"
      "       [1900, 1901, 1902, ..., 1947, 1948, 1949],\n"
      "       [1950, 1951, 1952, ..., 1997, 1998, 1999]],\n"
      "      shape=(40, 50), dtype=int64)");
}

TEST_CASE("array.prints_like_numpy_i32_3d") {
  CHECK(printed(Array(xt::xarray<std::int32_t>(xt::reshape_view(xt::arange<std::int32_t>(24), {2, 3, 4})))) ==
      "array([[[ 0,  1,  2,  3],\n"
      "        [ 4,  5,  6,  7],\n"
      "        [ 8,  9, 10, 11]],\n"
      "\n"
      "       [[12, 13, 14, 15],\n"
      "        [16, 17, 18, 19],\n"
      "        [20, 21, 22, 23]]], shape=(2, 3, 4), dtype=int32)");
}

TEST_CASE("array.prints_like_numpy_bool") {
  CHECK(printed(Array(xt::xarray<bool>{true, false})) ==
      "array([ True, False], shape=(2,), dtype=bool)");
}

TEST_CASE("array.prints_like_numpy_f32_wrap") {
  CHECK(printed(tenths(30)) ==
      "array([0.        , 0.1       , 0.2       , 0.3       , 0.4       ,\n"
      "       0.5       , 0.6       , 0.7       , 0.8       , 0.90000004,\n"
      "       1.        , 1.1       , 1.2       , 1.3000001 , 1.4       ,\n"
      "       1.5       , 1.6       , 1.7       , 1.8000001 , 1.9       ,\n"
      "       2.        , 2.1000001 , 2.2       , 2.3       , 2.4       ,\n"
      "       2.5       , 2.6000001 , 2.7       , 2.8       , 2.9       ],\n"
      "      shape=(30,), dtype=float32)");
}

TEST_CASE("array.prints_like_numpy_f32_scalar") {
  CHECK(printed(Array(3.0f)) ==
      "array(3., shape=(), dtype=float32)");
}

TEST_CASE("array.prints_like_numpy_f32_empty") {
  CHECK(printed(Array(xt::xarray<float>::from_shape({0, 3}))) ==
      "array([], shape=(0, 3), dtype=float32)");
}

TEST_CASE("array.prints_like_numpy_f64_1001") {
  CHECK(printed(Array(xt::xarray<double>(xt::arange<double>(1001)))) ==
      "array([   0.,    1.,    2., ...,  998.,  999., 1000.],\n"
      "      shape=(1001,), dtype=float64)");
}

TEST_CASE("array.prints_like_numpy_f32_allnan") {
  CHECK(printed(Array(xt::xarray<float>{kNaN, -kInf})) ==
      "array([ nan, -inf], shape=(2,), dtype=float32)");
}

TEST_CASE("array.prints_an_empty_array") {
  CHECK(printed(Array()) == "Array(empty: the value of an Operation)");
}

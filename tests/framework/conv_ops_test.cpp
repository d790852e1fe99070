// Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter: values against hand-computed cases and
// naive loops from TF's definitions, static shapes incl. unknown batch, both data formats, build-
// and run-time errors, and float64 gradient checks. (MaxPool and AvgPool: pool_ops_test.cpp.)
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "tests/framework/conv_pool_ops_support.hpp"

using namespace kiln;
using namespace kiln::testing::conv_pool_ops;

namespace {

struct ConvCase {
  i64 sh = 1, sw = 1, dh = 1, dw = 1;
  bool same = false;
};

// Calls f(n, oh, ow, ih, iw, i, j) for every output pixel and in-image tap of an NHWC conv.
template <class F>
void for_taps(const std::vector<std::size_t>& xs, const std::vector<std::size_t>& fs,
              const ConvCase& c, F f) {
  const i64 N = i64(xs[0]), H = i64(xs[1]), W = i64(xs[2]), KH = i64(fs[0]), KW = i64(fs[1]);
  const Dim dh = tf_dim(H, KH, c.sh, c.dh, c.same), dw = tf_dim(W, KW, c.sw, c.dw, c.same);
  for (i64 n = 0; n < N; ++n)
    for (i64 oh = 0; oh < dh.out; ++oh)
      for (i64 ow = 0; ow < dw.out; ++ow)
        for (i64 i = 0; i < KH; ++i)
          for (i64 j = 0; j < KW; ++j) {
            const i64 ih = oh * c.sh - dh.pad + i * c.dh, iw = ow * c.sw - dw.pad + j * c.dw;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) f(n, oh, ow, ih, iw, i, j);
          }
}

std::vector<std::size_t> conv_out_shape(const std::vector<std::size_t>& xs,
                                        const std::vector<std::size_t>& fs, const ConvCase& c) {
  return {xs[0], std::size_t(tf_dim(i64(xs[1]), i64(fs[0]), c.sh, c.dh, c.same).out),
          std::size_t(tf_dim(i64(xs[2]), i64(fs[1]), c.sw, c.dw, c.same).out), fs[3]};
}

// y = conv2d(x, f), NHWC, straight from the definition.
Arr naive_conv(const Arr& x, const Arr& f, const ConvCase& c) {
  const std::vector<std::size_t> xs(x.shape().begin(), x.shape().end()),
      fs(f.shape().begin(), f.shape().end());
  Arr y = xt::zeros<double>(conv_out_shape(xs, fs, c));
  for_taps(xs, fs, c, [&](i64 n, i64 oh, i64 ow, i64 ih, i64 iw, i64 i, i64 j) {
    for (std::size_t ch = 0; ch < fs[2]; ++ch)
      for (std::size_t o = 0; o < fs[3]; ++o) y(n, oh, ow, o) += x(n, ih, iw, ch) * f(i, j, ch, o);
  });
  return y;
}

// The adjoints: dx[n, ih, iw, c] += dy[n, oh, ow, o] f[i, j, c, o]; df[i, j, c, o] += x dy.
Arr naive_backprop_input(const std::vector<std::size_t>& xs, const Arr& f, const Arr& dy,
                         const ConvCase& c) {
  const std::vector<std::size_t> fs(f.shape().begin(), f.shape().end());
  Arr dx = xt::zeros<double>(xs);
  for_taps(xs, fs, c, [&](i64 n, i64 oh, i64 ow, i64 ih, i64 iw, i64 i, i64 j) {
    for (std::size_t ch = 0; ch < fs[2]; ++ch)
      for (std::size_t o = 0; o < fs[3]; ++o) dx(n, ih, iw, ch) += dy(n, oh, ow, o) * f(i, j, ch, o);
  });
  return dx;
}
Arr naive_backprop_filter(const Arr& x, const std::vector<std::size_t>& fs, const Arr& dy,
                          const ConvCase& c) {
  const std::vector<std::size_t> xs(x.shape().begin(), x.shape().end());
  Arr df = xt::zeros<double>(fs);
  for_taps(xs, fs, c, [&](i64 n, i64 oh, i64 ow, i64 ih, i64 iw, i64 i, i64 j) {
    for (std::size_t ch = 0; ch < fs[2]; ++ch)
      for (std::size_t o = 0; o < fs[3]; ++o) df(i, j, ch, o) += x(n, ih, iw, ch) * dy(n, oh, ow, o);
  });
  return df;
}

std::vector<i64> dims(const Arr& a) { return {a.shape().begin(), a.shape().end()}; }
std::vector<std::size_t> sizes(const Arr& a) { return {a.shape().begin(), a.shape().end()}; }

}  // namespace

// ---------------------------------------------------------------- Conv2D values and shapes

TEST_CASE("conv.conv2d_hand_computed_valid_and_same") {
  Graph g;
  auto guard = g.as_default();
  // x = [[1 2 3] [4 5 6] [7 8 9]], a 2x2 filter of ones: each output is a 2x2 window sum.
  Arr xv = Arr::from_shape({1, 3, 3, 1});
  for (int i = 0; i < 9; ++i) xv.data()[i] = i + 1;
  Session sess;
  for (DType t : {float32, float64}) {
    CAPTURE(t);
    Tensor x = cast(constant(xv), t);
    Tensor f = ones({2, 2, 1, 1}, t);
    // VALID: 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28.
    Tensor valid = nn::conv2d(x, f, {1, 1, 1, 1}, "VALID");
    CHECK(valid.shape() == Shape{1, 2, 2, 1});
    CHECK(near_eq(sess.run(valid), image({{12, 16}, {24, 28}})));
    // SAME: out 3, pad_total = (3-1)*1 + 2 - 3 = 1, all of it after: the last row/column windows
    // see one (3+6 = 9, 7+8 = 15) or two zeros (9).
    Tensor same = nn::conv2d(x, f, {1, 1, 1, 1}, "SAME");
    CHECK(same.shape() == Shape{1, 3, 3, 1});
    CHECK(near_eq(sess.run(same),
                   image({{12, 16, 9}, {24, 28, 15}, {15, 17, 9}})));
    // Stride 2, SAME: out ceil(3/2) = 2, pad_total = (2-1)*2 + 2 - 3 = 1 (after): windows at
    // rows/cols {0,1} and {2}: 12, 3+6 = 9, 7+8 = 15, 9.
    CHECK(near_eq(sess.run(nn::conv2d(x, f, {1, 2, 2, 1}, "SAME")), image({{12, 9}, {15, 9}})));
    // Dilation 2, VALID: the taps (0,0), (0,2), (2,0), (2,2): 1 + 3 + 7 + 9 = 20.
    CHECK(near_eq(sess.run(nn::conv2d(x, f, {1, 1, 1, 1}, "VALID", {.dilations = {1, 2, 2, 1}})),
                   image({{20}})));
  }
}

TEST_CASE("conv.conv2d_matches_naive_loops_in_both_formats") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  const Arr xv = uniform({2, 5, 6, 3}, 1);
  const Arr fv = uniform({3, 2, 3, 4}, 2);
  for (const ConvCase c : {ConvCase{}, ConvCase{.same = true}, ConvCase{.sh = 2, .sw = 3},
                           ConvCase{.sh = 2, .sw = 2, .same = true},
                           ConvCase{.dh = 2, .dw = 2}, ConvCase{.dh = 2, .dw = 3, .same = true},
                           ConvCase{.sh = 2, .sw = 1, .dh = 1, .dw = 2, .same = true}}) {
    CAPTURE(c.sh);
    CAPTURE(c.sw);
    CAPTURE(c.dh);
    CAPTURE(c.dw);
    CAPTURE(c.same);
    const Arr want = naive_conv(xv, fv, c);
    const std::string pad = c.same ? "SAME" : "VALID";
    Tensor f = constant(fv);
    Tensor x = placeholder(float64, {-1, 5, 6, 3});
    Tensor y = nn::conv2d(x, f, {c.sh, c.sw}, pad, {.dilations = {c.dh, c.dw}});
    CHECK(y.shape() == Shape{-1, i64(want.shape()[1]), i64(want.shape()[2]), 4});
    CHECK(near_eq(sess.run(y, {{x, xv}}), want, 1e-12, 1e-12));
    // NCHW: same numbers, channels second.
    Tensor xc = placeholder(float64, {-1, 3, 5, 6});
    Tensor yc = nn::conv2d(xc, f, {1, 1, c.sh, c.sw}, pad,
                           {.data_format = "NCHW", .dilations = {1, 1, c.dh, c.dw}});
    CHECK(yc.shape() == Shape{-1, 4, i64(want.shape()[1]), i64(want.shape()[2])});
    CHECK(near_eq(sess.run(yc, {{xc, to_nchw(xv)}}), to_nchw(want), 1e-12, 1e-12));
    // float32 through the same kernels.
    Tensor y32 = nn::conv2d(cast(constant(xv), float32), cast(f, float32), {c.sh, c.sw}, pad,
                            {.dilations = {c.dh, c.dw}});
    CHECK(near_eq(sess.run(y32), want, 1e-5, 1e-5));
  }
}

TEST_CASE("conv.backprop_ops_match_naive_adjoints") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  const Arr xv = uniform({2, 5, 4, 2}, 3);
  const Arr fv = uniform({2, 3, 2, 3}, 4);
  for (const ConvCase c : {ConvCase{}, ConvCase{.sh = 2, .sw = 2, .same = true},
                           ConvCase{.dh = 2, .dw = 1, .same = true}}) {
    CAPTURE(c.same);
    CAPTURE(c.sh);
    const std::string pad = c.same ? "SAME" : "VALID";
    const auto ys = conv_out_shape(sizes(xv), sizes(fv), c);
    const Arr dyv = uniform(ys, 5);
    const nn::Conv2DOptions nhwc{.dilations = {c.dh, c.dw}};
    const nn::Conv2DOptions nchw{.data_format = "NCHW", .dilations = {c.dh, c.dw}};
    Tensor f = constant(fv), dy = constant(dyv), x = constant(xv);
    // Sizes as a list (a constant: the static shape is known) ...
    Tensor dx = nn::conv2d_backprop_input(dims(xv), f, dy, {c.sh, c.sw}, pad, nhwc);
    CHECK(dx.shape() == Shape(dims(xv)));
    CHECK(near_eq(sess.run(dx), naive_backprop_input(sizes(xv), fv, dyv, c), 1e-12, 1e-12));
    Tensor df = nn::conv2d_backprop_filter(x, dims(fv), dy, {c.sh, c.sw}, pad, nhwc);
    CHECK(df.shape() == Shape(dims(fv)));
    CHECK(near_eq(sess.run(df), naive_backprop_filter(xv, sizes(fv), dyv, c), 1e-12, 1e-12));
    // ... and as a run-time tensor (the static shape is then unknown but of rank 4).
    Tensor xs = placeholder(int32, {4});
    Tensor dx_dyn = nn::conv2d_backprop_input(xs, f, dy, {c.sh, c.sw}, pad, nhwc);
    CHECK(dx_dyn.shape().rank() == 4);
    CHECK(dx_dyn.shape()[3] == 2);  // from the filter
    const xt::xarray<std::int32_t> xs_v{2, 5, 4, 2};
    CHECK(near_eq(sess.run(dx_dyn, {{xs, xs_v}}), naive_backprop_input(sizes(xv), fv, dyv, c),
                   1e-12, 1e-12));
    // NCHW.
    Tensor dxc = nn::conv2d_backprop_input({2, 2, 5, 4}, f, constant(to_nchw(dyv)), {c.sh, c.sw},
                                           pad, nchw);
    CHECK(near_eq(sess.run(dxc), to_nchw(naive_backprop_input(sizes(xv), fv, dyv, c)), 1e-12,
                   1e-12));
    Tensor dfc = nn::conv2d_backprop_filter(constant(to_nchw(xv)), dims(fv),
                                            constant(to_nchw(dyv)), {c.sh, c.sw}, pad, nchw);
    CHECK(near_eq(sess.run(dfc), naive_backprop_filter(xv, sizes(fv), dyv, c), 1e-12, 1e-12));
  }
}

TEST_CASE("conv.gradient_ops_keep_static_shapes_with_unknown_batch") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {-1, 5, 5, 2});
  Tensor f = constant(uniform({3, 3, 2, 4}, 6));
  Tensor y = nn::conv2d(x, f, {1, 2, 2, 1}, "SAME");
  CHECK(y.shape() == Shape{-1, 3, 3, 4});
  auto grads = gradients(reduce_sum(y * y), {x, f});
  REQUIRE(grads[0]);
  REQUIRE(grads[1]);
  CHECK(grads[0]->op().type() == "Conv2DBackpropInput");
  CHECK(grads[1]->op().type() == "Conv2DBackpropFilter");
  CHECK(grads[0]->shape() == Shape{-1, 5, 5, 2});
  CHECK(grads[1]->shape() == Shape{3, 3, 2, 4});
  Session sess;
  const auto out = sess.run({*grads[0], *grads[1]}, {{x, uniform({3, 5, 5, 2}, 7)}});
  CHECK(out[0].shape() == Shape{3, 5, 5, 2});
  CHECK(out[1].shape() == Shape{3, 3, 2, 4});
  // Unknown spatial dimensions stay unknown; the channel comes from the filter.
  Tensor xu = placeholder(float32, {-1, -1, 7, 2});
  CHECK(nn::conv2d(xu, cast(f, float32), {1, 1, 1, 1}, "VALID").shape() == Shape{-1, -1, 5, 4});
  CHECK(nn::conv2d(placeholder(float32), cast(f, float32), {1, 1, 1, 1}, "VALID").shape() ==
        Shape{-1, -1, -1, 4});
  // Strides given as one entry or (height, width), like TF2.
  CHECK(nn::conv2d(x, f, {2}, "VALID").shape() == Shape{-1, 2, 2, 4});
  CHECK(nn::conv2d(x, f, {1, 2}, "VALID").shape() == Shape{-1, 3, 2, 4});
}

TEST_CASE("conv.conv2d_build_errors_name_the_op") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 8, 8, 3}, "x");
  Tensor f = placeholder(float32, {3, 3, 3, 4}, "w");
  const auto value_error = [](auto fn, const std::string& part) {
    const std::string m = message_of<ValueError>(fn);
    INFO(m);
    CHECK(contains(m, part));
    CHECK(contains(m, "Conv2D"));
    CHECK(contains(m, "[?,8,8,3]"));  // the builder's input shapes
  };
  value_error([&] { nn::conv2d(x, f, {1, 1, 1, 1}, "same"); }, "padding must be \"SAME\" or \"VALID\"");
  value_error([&] { nn::conv2d(x, f, {1, 1, 1, 1}, "SAME", {.data_format = "NWHC"}); },
              "data_format");
  value_error([&] { nn::conv2d(x, f, {1, 1, 1}, "SAME"); }, "strides must have 4 entries");
  value_error([&] { nn::conv2d(x, f, {2, 1, 1, 1}, "SAME"); }, "batch and channel");
  value_error([&] { nn::conv2d(x, f, {1, 0, 1, 1}, "SAME"); }, "strides entries must be >= 1");
  value_error([&] { nn::conv2d(x, f, {1, 1, 1, 1}, "SAME", {.dilations = {1, 1, 1, 2}}); },
              "dilations in the batch and channel");
  value_error([&] { nn::conv2d(x, f, {1, 1, 1, 1}, "SAME", {.dilations = {0}}); },
              "dilations entries must be >= 1");
  value_error([&] { nn::conv2d(x, placeholder(float32, {3, 3, 2, 4}), {1, 1, 1, 1}, "SAME"); },
              "Depth of input (3) does not match the in_channels of the filter (2)");
  value_error([&] { nn::conv2d(x, placeholder(float32, {3, 3, 3}), {1, 1, 1, 1}, "SAME"); },
              "filter must be 4-dimensional");
  value_error([&] { nn::conv2d(x, placeholder(float32, {9, 3, 3, 4}), {1, 1, 1, 1}, "VALID"); },
              "Negative dimension size caused by subtracting 9 from 8");
  value_error([&] { nn::conv2d(x, f, {1, 1, 1, 1}, "VALID", {.dilations = {5}}); },
              "subtracting 11 from 8");
  const std::string rank = message_of<ValueError>(
      [&] { nn::conv2d(placeholder(float32, {8, 8, 3}), f, {1, 1, 1, 1}, "SAME", {}, "c1"); });
  CHECK(contains(rank, "input must be 4-dimensional"));
  CHECK(contains(rank, "'c1'"));
  // dtypes: TypeError.
  CHECK(contains(message_of<TypeError>(
                     [&] { nn::conv2d(x, placeholder(float64, {3, 3, 3, 4}), {1, 1, 1, 1}, "SAME"); }),
                 std::string("filter of type ") + dtype_name(float64) +
                     " does not match type " + dtype_name(float32) + " of input"));
  CHECK(contains(message_of<TypeError>([&] {
                   nn::conv2d(placeholder(int32, {1, 4, 4, 1}), placeholder(int32, {1, 1, 1, 1}),
                              {1, 1, 1, 1}, "SAME");
                 }),
                 "Conv2D"));
}

TEST_CASE("conv.backprop_and_run_time_errors") {
  Graph g;
  auto guard = g.as_default();
  Tensor f = placeholder(float32, {3, 3, 2, 4});
  Tensor dy = placeholder(float32, {1, 6, 6, 4});
  CHECK(contains(message_of<ValueError>([&] {
                   nn::conv2d_backprop_input({1, 6, 6, 2, 1}, f, dy, {1, 1, 1, 1}, "SAME");
                 }),
                 "input_sizes must be a vector of 4 sizes"));
  CHECK(contains(message_of<ValueError>(
                     [&] { nn::conv2d_backprop_input({1, 6, 6, 2}, f, dy, {1, 1, 1, 1}, "VALID"); }),
                 "out_backprop of shape [1,6,6,4] does not match the convolution's output shape "
                 "[1,4,4,4]"));
  CHECK(contains(message_of<ValueError>(
                     [&] { nn::conv2d_backprop_input({1, 6, 6, 3}, f, dy, {1, 1, 1, 1}, "SAME"); }),
                 "Conv2DBackpropInput"));
  CHECK(contains(message_of<TypeError>([&] {
                   nn::conv2d_backprop_input(placeholder(float32, {4}), f, dy, {1, 1, 1, 1}, "SAME");
                 }),
                 "input_sizes must be int32 or int64"));
  CHECK(contains(message_of<ValueError>([&] {
                   nn::conv2d_backprop_filter(placeholder(float32, {1, 6, 6, 2}), {3, 3, 2, 5}, dy,
                                              {1, 1, 1, 1}, "SAME");
                 }),
                 "Conv2DBackpropFilter"));
  // Run time: a VALID window larger than the fed input, a channel mismatch, wrong sizes.
  Session sess;
  Tensor x = placeholder(float32, {-1, -1, -1, 2});
  Tensor y = nn::conv2d(x, ones({3, 3, 2, 1}), {1, 1, 1, 1}, "VALID", {}, "conv");
  const xt::xarray<float> small = xt::zeros<float>({1, 2, 2, 2});
  const std::string m = message_of<InvalidArgumentError>([&] { sess.run(y, {{x, small}}); });
  CHECK(contains(m, "Conv2D 'conv'"));
  CHECK(contains(m, "Negative dimension size"));
  Tensor xs = placeholder(int32, {4});
  Tensor dx = nn::conv2d_backprop_input(xs, ones({3, 3, 2, 1}), ones({1, 4, 4, 1}), {1, 1, 1, 1},
                                        "VALID", {}, "bi");
  CHECK(contains(message_of<InvalidArgumentError>(
                     [&] { sess.run(dx, {{xs, xt::xarray<std::int32_t>{1, 5, 5, 2}}}); }),
                 "out_backprop of shape [1, 4, 4, 1] does not match the expected shape [1, 3, 3, 1]"));
  CHECK(contains(message_of<InvalidArgumentError>(
                     [&] { sess.run(dx, {{xs, xt::xarray<std::int32_t>{1, 6, 6, 3}}}); }),
                 "Conv2DBackpropInput 'bi'"));
}

TEST_CASE("conv.fed_sizes_whose_arrays_would_not_fit_are_rejected") {
  // Found by probing fed shapes under valgrind: 2^30 * 2^30 * 16 elements wrap around 2^64 to 0,
  // and the kernels wrote through an empty buffer.
  Graph g;
  auto guard = g.as_default();
  Session sess;
  const std::int64_t S = std::int64_t{1} << 30;
  const xt::xarray<std::int32_t> huge_input{1, 1 << 30, 1 << 30, 16}, huge_filter{1 << 30, 1 << 30, 16, 1};
  Tensor sizes = placeholder(int32, {4}, "sizes");
  Tensor f = placeholder(float32, {-1, -1, -1, -1}, "f"), dy = placeholder(float32, {-1, -1, -1, -1}, "dy");
  Tensor x = placeholder(float32, {-1, -1, -1, -1}, "x");
  Tensor dx = nn::conv2d_backprop_input(sizes, f, dy, {1, S, S, 1}, "SAME", {}, "bi");
  CHECK(contains(message_of<InvalidArgumentError>([&] {
                   sess.run(dx, {{sizes, huge_input}, {f, xt::xarray<float>(xt::ones<float>({1, 1, 16, 2}))},
                                 {dy, xt::xarray<float>(xt::ones<float>({1, 1, 1, 2}))}});
                 }),
                 "'bi': input_sizes: an array of shape [1,1073741824,1073741824,16] of float would hold"));
  Tensor df = nn::conv2d_backprop_filter(x, sizes, dy, {1, 1, 1, 1}, "SAME", {}, "bf");
  CHECK_THROWS_AS(sess.run(df, {{x, xt::xarray<float>(xt::ones<float>({1, 1, 1, 16}))}, {sizes, huge_filter},
                                {dy, xt::xarray<float>(xt::ones<float>({1, 1, 1, 1}))}}),
                  InvalidArgumentError);
  CHECK(contains(message_of<InvalidArgumentError>([&] {
                   sess.run(df, {{x, xt::xarray<float>(xt::ones<float>({1, 1, 1, 16}))}, {sizes, huge_filter},
                                 {dy, xt::xarray<float>(xt::ones<float>({1, 1, 1, 1}))}});
                 }),
                 "'bf': filter_sizes: an array of shape [1073741824,1073741824,16,1]"));
  // AvgPoolGrad through the gradient of avg_pool, its orig_input_shape fed.
  Tensor y = nn::avg_pool(x, {1, 1, 1, 1}, {1, S, S, 1}, "SAME");
  Tensor gx = *gradients(reduce_sum(y * dy), {x})[0];
  REQUIRE(gx.op().type() == "AvgPoolGrad");
  const xt::xarray<float> one16 = xt::ones<float>({1, 1, 1, 16});
  CHECK_THROWS_AS(sess.run(gx, {{x, one16}, {dy, one16}, {gx.op().inputs()[0], huge_input}}), InvalidArgumentError);
  CHECK(contains(message_of<InvalidArgumentError>(
                     [&] { sess.run(gx, {{x, one16}, {dy, one16}, {gx.op().inputs()[0], huge_input}}); }),
                 "'" + gx.op().name() + "': orig_input_shape: an array of shape"));
}

// ---------------------------------------------------------------- gradient checks (float64)

TEST_CASE("conv.gradient_checks") {
  Graph g;
  auto guard = g.as_default();
  const Arr xv = uniform({2, 4, 3, 2}, 11);
  const Arr fv = uniform({2, 2, 2, 3}, 12);
  Tensor x = placeholder(float64, {2, 4, 3, 2});
  Tensor f = placeholder(float64, {2, 2, 2, 3});
  SUBCASE("Conv2D NHWC, SAME, stride 2") {
    check_grad(nn::conv2d(x, f, {1, 2, 2, 1}, "SAME"), {{x, xv}, {f, fv}});
  }
  SUBCASE("Conv2D NHWC, VALID, dilation 2") {
    check_grad(nn::conv2d(x, f, {1, 1, 1, 1}, "VALID", {.dilations = {1, 2, 1, 1}}),
               {{x, xv}, {f, fv}});
  }
  SUBCASE("Conv2D NCHW, SAME") {
    Tensor xc = placeholder(float64, {2, 2, 4, 3});
    check_grad(nn::conv2d(xc, f, {1, 1, 1, 2}, "SAME", {.data_format = "NCHW"}),
               {{xc, to_nchw(xv)}, {f, fv}});
  }
  SUBCASE("Conv2DBackpropInput") {
    // dx = A_f^T dy for a [2, 4, 3, 2] input with SAME, stride 2: dy is [2, 2, 2, 3].
    Tensor dy = placeholder(float64, {2, 2, 2, 3});
    Tensor dx = nn::conv2d_backprop_input({2, 4, 3, 2}, f, dy, {2, 2}, "SAME");
    check_grad(dx, {{f, fv}, {dy, uniform({2, 2, 2, 3}, 13)}});
  }
  SUBCASE("Conv2DBackpropInput NCHW") {
    Tensor dy = placeholder(float64, {2, 3, 3, 2});
    Tensor dx = nn::conv2d_backprop_input({2, 2, 4, 3}, f, dy, {1, 1}, "VALID",
                                          {.data_format = "NCHW"});
    check_grad(dx, {{f, fv}, {dy, uniform({2, 3, 3, 2}, 14)}});
  }
  SUBCASE("Conv2DBackpropFilter") {
    Tensor dy = placeholder(float64, {2, 3, 2, 3});
    Tensor df = nn::conv2d_backprop_filter(x, {2, 2, 2, 3}, dy, {1, 1}, "VALID");
    check_grad(df, {{x, xv}, {dy, uniform({2, 3, 2, 3}, 15)}});
  }
  SUBCASE("Conv2DBackpropFilter dilated SAME") {
    Tensor dy = placeholder(float64, {2, 4, 3, 3});
    Tensor df = nn::conv2d_backprop_filter(x, {2, 2, 2, 3}, dy, {1, 1}, "SAME",
                                           {.dilations = {2, 2}});
    check_grad(df, {{x, xv}, {dy, uniform({2, 4, 3, 3}, 16)}});
  }
  SUBCASE("second order through Conv2D") {
    // d/dx of the filter gradient of sum(conv^2): Conv2DBackpropFilter's own gradient in use.
    Tensor y = nn::conv2d(x, f, {1, 1, 1, 1}, "SAME");
    Tensor df = *gradients(reduce_sum(y * y), {f})[0];
    check_grad(df, {{x, xv}}, 1e-6, {.extra_feeds = {{f, fv}}});
  }
}

// Linear regression by gradient descent, written with placeholders, variables, gradients() and a
// Session: the smallest complete define-then-run program.
#include <cstdio>
#include <random>

#include <kiln.hpp>

using namespace kiln;

int main() {
  Graph graph;
  auto as_default = graph.as_default();
  set_random_seed(0);

  // Data: y = 3 x0 - 2 x1 + 0.5 + noise.
  const std::size_t n = 256;
  std::mt19937 gen(1);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  xt::xarray<float> xs = xt::xarray<float>::from_shape({n, 2});
  xt::xarray<float> ys = xt::xarray<float>::from_shape({n, 1});
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    xs(i, 0) = u(gen);
    xs(i, 1) = u(gen);
    ys(i, 0) = 3.0f * xs(i, 0) - 2.0f * xs(i, 1) + 0.5f + noise(gen);
  }

  Tensor x = placeholder(float32, {-1, 2}, "x");
  Tensor y = placeholder(float32, {-1, 1}, "y");
  Variable w = get_variable("w", {2, 1}, {.initializer = initializers::zeros()});
  Variable b = get_variable("b", {1}, {.initializer = initializers::zeros()});
  Tensor prediction = matmul(x, w) + b;
  Tensor loss = reduce_mean(square(prediction - y), {}, false, "loss");

  const auto grads = gradients(loss, {w, b});
  const double learning_rate = 0.1;
  Operation step = group({assign_sub(w, *grads[0] * learning_rate), assign_sub(b, *grads[1] * learning_rate)}, "step");

  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{x, xs}, {y, ys}};
  for (int epoch = 0; epoch <= 200; ++epoch) {
    if (epoch % 50 == 0) std::printf("step %3d  loss %.5f\n", epoch, sess.run(loss, feeds).scalar<float>());
    sess.run(step, feeds);
  }
  const auto wv = sess.run(w).as<float>();
  std::printf("learned w = [%.3f, %.3f], b = %.3f (true: [3, -2], 0.5)\n", wv(0, 0), wv(1, 0),
              sess.run(b).as<float>()(0));
  return 0;
}

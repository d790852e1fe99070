// The seed's note, made visible: batch normalization's moving statistics are updated by ops in
// GraphKeys::UPDATE_OPS, and nothing runs them unless the train op depends on them.
//
// The same small network (matmul -> batch_normalization -> relu -> matmul) is trained twice on the
// same synthetic data with the same seed:
//   1. train_op = minimize(loss)                                   -- no dependency on UPDATE_OPS
//   2. { control_dependencies deps(get_collection(UPDATE_OPS)); train_op = minimize(loss); }
// Training accuracy (batch statistics) is the same; inference accuracy (moving statistics) collapses
// in run 1, whose moving mean and variance never leave their initial 0 and 1. (Run 1 also shows
// the optimizer's UPDATE_OPS guard warning on stderr.) Before training, Session::explain shows why:
// in run 2 the train op pulls the update ops in through control_dependencies(UPDATE_OPS); in run 1
// they are pruned, "not needed by the fetches".
#include <algorithm>
#include <cstdio>
#include <random>

#include <kiln.hpp>

using namespace kiln;

namespace {

constexpr std::size_t kFeatures = 4, kClasses = 3, kHidden = 16;

struct Data {
  xt::xarray<float> x;
  xt::xarray<std::int64_t> y;
};

// Three Gaussian clusters, all shifted by +8 on every feature: far from zero, so that normalizing
// with the initial moving statistics (mean 0, variance 1) is badly wrong.
Data make_data(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> noise(0.0f, 0.6f);
  const float centers[kClasses][kFeatures] = {{2, 0, -1, 1}, {-2, 1, 0, -1}, {0, -2, 2, 0}};
  Data d{xt::xarray<float>::from_shape({n, kFeatures}), xt::xarray<std::int64_t>::from_shape({n})};
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = i % kClasses;
    d.y(i) = static_cast<std::int64_t>(k);
    for (std::size_t j = 0; j < kFeatures; ++j) d.x(i, j) = 8.0f + centers[k][j] + noise(gen);
  }
  return d;
}

struct Result {
  float train_accuracy, test_accuracy;
  xt::xarray<float> moving_mean, moving_variance;
  Explanation step;                     // what one training step runs, from Session::explain
  std::vector<std::string> update_ops;  // the ops in UPDATE_OPS
};

Result train_network(bool with_update_ops, const Data& train_data, const Data& test_data) {
  Graph graph;
  auto as_default = graph.as_default();
  set_random_seed(42);

  Tensor x = placeholder(float32, {-1, static_cast<std::int64_t>(kFeatures)}, "x");
  Tensor labels = placeholder(int64, {-1}, "labels");
  Tensor training = placeholder(boolean, {}, "training");

  Variable w1 = get_variable("w1", {kFeatures, kHidden});
  Variable w2 = get_variable("w2", {kHidden, kClasses});
  Tensor h = layers::batch_normalization(matmul(x, w1), {.momentum = 0.9, .training = training, .name = "bn"});
  Tensor logits = matmul(nn::relu(h), w2);
  Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits);
  Tensor accuracy = metrics::accuracy(labels, argmax(logits, 1));

  Operation train_op;
  if (with_update_ops) {
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    train_op = train::AdamOptimizer(0.01).minimize(loss);
  } else {
    train_op = train::AdamOptimizer(0.01).minimize(loss);
  }

  Session sess;
  Result r;
  for (const auto& item : get_collection(GraphKeys::UPDATE_OPS)) r.update_ops.push_back(item.op().name());
  r.step = sess.explain(train_op, {{x, train_data.x}, {labels, train_data.y}, {training, true}});
  sess.run(global_variables_initializer());
  for (int step = 0; step < 300; ++step)
    sess.run(train_op, {{x, train_data.x}, {labels, train_data.y}, {training, true}});

  r.train_accuracy = sess.run(accuracy, {{x, train_data.x}, {labels, train_data.y}, {training, true}}).scalar<float>();
  r.test_accuracy = sess.run(accuracy, {{x, test_data.x}, {labels, test_data.y}, {training, false}}).scalar<float>();
  r.moving_mean = sess.run(graph.get_tensor_by_name("bn/moving_mean:0")).as<float>();
  r.moving_variance = sess.run(graph.get_tensor_by_name("bn/moving_variance:0")).as<float>();
  return r;
}

}  // namespace

int main() {
  const Data train_data = make_data(300, 1), test_data = make_data(300, 2);
  const Result without = train_network(false, train_data, test_data);
  const Result with = train_network(true, train_data, test_data);

  std::printf("%-44s %-22s %s\n", "", "without UPDATE_OPS", "with UPDATE_OPS");
  std::printf("%-44s %-22.3f %.3f\n", "training accuracy (batch statistics)", without.train_accuracy,
              with.train_accuracy);
  std::printf("%-44s %-22.3f %.3f\n", "inference accuracy (moving statistics)", without.test_accuracy,
              with.test_accuracy);
  for (std::size_t j = 0; j < 3; ++j) {
    char label[64];
    std::snprintf(label, sizeof label, "bn/moving_mean[%zu] / moving_variance[%zu]", j, j);
    char a[32], b[32];
    std::snprintf(a, sizeof a, "%.3f / %.3f", without.moving_mean(j), without.moving_variance(j));
    std::snprintf(b, sizeof b, "%.3f / %.3f", with.moving_mean(j), with.moving_variance(j));
    std::printf("%-44s %-22s %s\n", label, a, b);
  }
  std::printf("\nWhat one training step runs (sess.explain(train_op, feeds)), without and with the dependency:\n");
  for (const auto* r : {&without, &with}) {
    const std::string text = to_string(r->step);
    std::printf("\n  %s UPDATE_OPS: %s\n", r == &without ? "without" : "with", text.substr(0, text.find('\n')).c_str());
    for (const auto& line : r->step.control_dependencies)
      if (line.find("UPDATE_OPS") != std::string::npos) std::printf("    %s\n", line.c_str());
    for (const auto& p : r->step.pruned)
      if (std::find(r->update_ops.begin(), r->update_ops.end(), p.name) != r->update_ops.end())
        std::printf("    pruned: %s, an UPDATE_OPS item (%s)\n", p.name.c_str(), p.reason.c_str());
  }
  std::printf("\nThe fix (TF1's documented idiom):\n"
              "  control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));\n"
              "  train_op = optimizer.minimize(loss);\n");
  return 0;
}

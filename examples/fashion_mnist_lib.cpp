#include "examples/fashion_mnist_lib.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <kiln.hpp>

#include "layers/batch_norm_statistics.hpp"

#include "framework/kernels/gemm.hpp"

namespace kiln::examples {
namespace {

constexpr std::int64_t kPixels = 28 * 28;
constexpr int kClasses = 10;

double default_learning_rate(const std::string& optimizer) {
  if (optimizer == "sgd") return 0.1;
  if (optimizer == "momentum") return 0.01;
  return 1e-3;  // adam, rmsprop
}

std::unique_ptr<train::Optimizer> make_optimizer(const std::string& name, const Tensor& lr) {
  if (name == "adam") return std::make_unique<train::AdamOptimizer>(lr);
  if (name == "sgd") return std::make_unique<train::GradientDescentOptimizer>(lr);
  if (name == "momentum") return std::make_unique<train::MomentumOptimizer>(lr, 0.9);
  if (name == "rmsprop") return std::make_unique<train::RMSPropOptimizer>(lr);
  throw std::invalid_argument("unknown optimizer '" + name + "' (adam, sgd, momentum or rmsprop)");
}

}  // namespace

// The network of the header comment, written like the seed's TF1 program.
Model build_model(const FashionMnistConfig& c, std::int64_t steps_per_epoch) {
  const bool channels_first = c.data_format == "channels_first";
  Model m;
  m.x = placeholder(float32, channels_first ? Shape{-1, 1, 28, 28} : Shape{-1, 28, 28, 1}, "x");
  m.labels = placeholder(int64, {-1}, "labels");
  m.training = placeholder(boolean, {}, "training");

  auto conv_block = [&](Tensor h, int filters, const std::string& scope) {
    variable_scope vs(scope);
    h = layers::conv2d(h, filters, {3, 3},
                       {.padding = "same", .data_format = c.data_format, .use_bias = false});
    h = layers::batch_normalization(h, {.axis = channels_first ? 1 : -1,
                                        .momentum = c.bn_momentum,
                                        .training = m.training,
                                        .renorm = c.renorm,
                                        .fused = c.fused,
                                        .synchronized = c.distributed && c.synchronized_bn});
    h = nn::relu(h);
    return layers::max_pooling2d(h, {2, 2}, {2, 2}, {.data_format = c.data_format});
  };
  Tensor h = conv_block(m.x, 32, "block1");
  h = conv_block(h, 64, "block2");
  h = layers::flatten(h);
  if (c.hidden_units > 0) {
    variable_scope vs("hidden");
    if (c.hidden_batch_norm) {
      h = layers::dense(h, c.hidden_units, {.use_bias = false});
      h = layers::batch_normalization(h, {.momentum = c.bn_momentum,
                                          .training = m.training,
                                          .renorm = c.renorm,
                                          .synchronized = c.distributed && c.synchronized_bn});
    } else {
      h = layers::dense(h, c.hidden_units);
    }
    h = nn::relu(h);
    if (c.dropout > 0) h = layers::dropout(h, {.rate = c.dropout, .training = m.training});
  }
  m.logits = layers::dense(h, kClasses, {.name = "logits"});
  m.loss = losses::sparse_softmax_cross_entropy(m.labels, m.logits) + losses::get_regularization_loss();
  m.predictions = argmax(m.logits, 1);
  m.accuracy = metrics::accuracy(m.labels, m.predictions);

  const double lr = c.learning_rate > 0 ? c.learning_rate : default_learning_rate(c.optimizer);
  Variable step = train::get_or_create_global_step();
  m.learning_rate = train::exponential_decay(lr, step, static_cast<double>(steps_per_epoch), c.lr_decay,
                                             /*staircase=*/true);
  auto optimizer = make_optimizer(c.optimizer, m.learning_rate);
  {
    // The seed's note: batch norm's moving averages run with every training step.
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    if (c.distributed)  // gradients averaged over the ranks (one fused AllReduce per step)
      m.train_op = distributed::DistributedOptimizer(std::shared_ptr<train::Optimizer>(std::move(optimizer)))
                       .minimize(m.loss, {.global_step = step});
    else
      m.train_op = optimizer->minimize(m.loss, {.global_step = step});
  }
  if (c.distributed) {
    const Tensor n = cast(reshape(slice(shape(m.x), {0}, {1}), Shape{}), float32);
    m.step_totals = distributed::all_reduce(stack({m.loss * n, m.accuracy * n, n}), distributed::Reduction::sum,
                                            "step_totals");
    m.eval_in = placeholder(float64, {-1}, "eval_in");
    m.eval_totals = distributed::all_reduce(m.eval_in, distributed::Reduction::sum, "eval_totals");
  }
  return m;
}

namespace {

// Images as floats in [0, 1], one contiguous [n, 784] block.
std::vector<float> scaled_images(const data::IdxArray& images, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n * kPixels));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(images.data[i]) / 255.0f;
  return out;
}

struct Batch {
  xt::xarray<float> images;
  xt::xarray<std::int64_t> labels;
};

Batch make_batch(const std::vector<float>& images, const std::vector<std::uint8_t>& labels,
                 const std::vector<std::int64_t>& order, std::int64_t begin, std::int64_t end,
                 bool channels_first) {
  const auto n = static_cast<std::size_t>(end - begin);
  Batch b;
  b.images = channels_first ? xt::xarray<float>::from_shape({n, 1, 28, 28})
                            : xt::xarray<float>::from_shape({n, 28, 28, 1});
  b.labels = xt::xarray<std::int64_t>::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) {
    const auto idx = order.empty() ? begin + static_cast<std::int64_t>(i)
                                   : order[static_cast<std::size_t>(begin) + i];
    std::memcpy(b.images.data() + i * kPixels, images.data() + idx * kPixels, kPixels * sizeof(float));
    b.labels(i) = labels[static_cast<std::size_t>(idx)];
  }
  return b;
}

std::int64_t limit_of(std::int64_t available, std::int64_t limit) {
  return limit > 0 ? std::min(available, limit) : available;
}

void write_curves(const std::filesystem::path& path, const std::vector<EpochStats>& epochs) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  out << "epoch,learning_rate,train_loss,train_accuracy,test_loss,test_accuracy,train_seconds,"
         "eval_seconds,examples_per_second\n";
  out << std::setprecision(6);
  for (const auto& e : epochs)
    out << e.epoch << ',' << e.learning_rate << ',' << e.train_loss << ',' << e.train_accuracy << ','
        << e.test_loss << ',' << e.test_accuracy << ',' << e.train_seconds << ',' << e.eval_seconds << ','
        << e.examples_per_second << '\n';
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// One column pair per batch-norm layer: "<layer> moving_mean", "<layer> moving_variance".
void write_moving_stats(const std::filesystem::path& path, const TrainResult& r) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  out << "epoch";
  for (const auto& layer : r.batch_norm_layers) out << ',' << layer << " moving_mean," << layer << " moving_variance";
  out << '\n' << std::setprecision(6);
  for (const auto& s : r.moving_stats) {
    out << s.epoch;
    for (std::size_t i = 0; i < s.mean_of_moving_mean.size(); ++i)
      out << ',' << s.mean_of_moving_mean[i] << ',' << s.mean_of_moving_variance[i];
    out << '\n';
  }
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// The batch-norm layers' moving statistics, by layer name ("block1/batch_normalization").
struct MovingStatsProbe {
  std::vector<GraphElement> fetches;  // all moving means, then all moving variances
  std::vector<std::string> layers;
  explicit MovingStatsProbe(const std::vector<Variable>& variables) {
    std::vector<GraphElement> variances;
    for (const auto& v : variables) {
      const std::string name = v.op_name();
      const auto slash = name.rfind('/');
      if (slash == std::string::npos || name.substr(slash + 1) != "moving_mean") continue;
      const std::string layer = name.substr(0, slash);
      for (const auto& w : variables)
        if (w.op_name() == layer + "/moving_variance") {
          layers.push_back(layer);
          fetches.push_back(v);
          variances.push_back(w);
        }
    }
    fetches.insert(fetches.end(), variances.begin(), variances.end());
  }
  MovingStatsSample sample(Session& sess, double epoch) const {
    MovingStatsSample s;
    s.epoch = epoch;
    if (fetches.empty()) return s;
    const auto values = sess.run(fetches);
    auto mean = [](const Array& a) {
      const auto d = a.to_double();
      double sum = 0;
      for (double x : d) sum += x;
      return d.size() ? sum / static_cast<double>(d.size()) : 0.0;
    };
    for (std::size_t i = 0; i < layers.size(); ++i) {
      s.mean_of_moving_mean.push_back(mean(values[i]));
      s.mean_of_moving_variance.push_back(mean(values[layers.size() + i]));
    }
    return s;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Evaluation {
  double loss = 0, accuracy = 0;
};

// Test loss and accuracy in inference mode (moving statistics, no dropout), in batches. In
// distributed mode each rank evaluates its shard of the test set and the shards' totals are summed.
Evaluation evaluate(Session& sess, const Model& m, const std::vector<float>& test_x,
                    const std::vector<std::uint8_t>& test_labels, std::int64_t n_test, const FashionMnistConfig& c) {
  const bool channels_first = c.data_format == "channels_first";
  const int ranks = c.distributed ? distributed::size() : 1, rank = c.distributed ? distributed::rank() : 0;
  const std::int64_t shard_begin = n_test * rank / ranks, shard_end = n_test * (rank + 1) / ranks;
  double test_loss_sum = 0;
  std::int64_t correct = 0;
  for (std::int64_t begin = shard_begin; begin < shard_end; begin += c.eval_batch_size) {
    const std::int64_t end = std::min(shard_end, begin + c.eval_batch_size);
    Batch b = make_batch(test_x, test_labels, {}, begin, end, channels_first);
    const xt::xarray<std::int64_t> labels = b.labels;
    auto out = sess.run({m.loss, m.predictions},
                        {{m.x, std::move(b.images)}, {m.labels, std::move(b.labels)}, {m.training, false}});
    test_loss_sum += static_cast<double>(out[0].scalar<float>()) * static_cast<double>(end - begin);
    const auto& pred = out[1].as<std::int64_t>();
    for (std::size_t i = 0; i < labels.size(); ++i) correct += pred(i) == labels(i) ? 1 : 0;
  }
  if (c.distributed) {  // the shards' totals
    const auto t = sess.run(m.eval_totals, {{m.eval_in, xt::xarray<double>{test_loss_sum, static_cast<double>(correct)}}});
    test_loss_sum = t.as<double>()(0);
    correct = static_cast<std::int64_t>(t.as<double>()(1));
  }
  Evaluation e;
  e.loss = n_test > 0 ? test_loss_sum / static_cast<double>(n_test) : 0;
  e.accuracy = n_test > 0 ? static_cast<double>(correct) / static_cast<double>(n_test) : 0;
  return e;
}

}  // namespace

void validate(const FashionMnistConfig& c) {
  auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  if (c.epochs < 1) fail("epochs must be >= 1");
  if (c.batch_size < 1) fail("batch size must be >= 1");
  if (c.eval_batch_size < 1) fail("eval batch size must be >= 1");
  if (c.learning_rate < 0) fail("learning rate must be > 0 (0: the optimizer's default)");
  if (!(c.lr_decay > 0 && c.lr_decay <= 1)) fail("lr decay must be in (0, 1]");
  if (c.optimizer != "adam" && c.optimizer != "sgd" && c.optimizer != "momentum" && c.optimizer != "rmsprop")
    fail("optimizer must be adam, sgd, momentum or rmsprop, not '" + c.optimizer + "'");
  if (c.data_format != "channels_last" && c.data_format != "channels_first")
    fail("data format must be channels_last or channels_first, not '" + c.data_format + "'");
  if (c.hidden_units < 0) fail("hidden units must be >= 0");
  if (!(c.dropout >= 0 && c.dropout < 1)) fail("dropout must be in [0, 1)");
  if (!(c.bn_momentum >= 0 && c.bn_momentum < 1)) fail("batch norm momentum must be in [0, 1)");
  if (c.threads < 0) fail("threads must be >= 0 (0: all cores)");
  if (c.trace_step < 0) fail("trace step must be >= 0 (0: no trace)");
  if (c.train_limit < 0 || c.test_limit < 0) fail("limits must be >= 0 (0: everything)");
  if (c.precise_bn_batches < 0) fail("precise batch norm batches must be >= 0 (0: none)");
}

void build_fashion_mnist_graph(const FashionMnistConfig& c, std::int64_t steps_per_epoch) {
  validate(c);
  build_model(c, steps_per_epoch);
}

TrainResult train_fashion_mnist(const FashionMnistConfig& c, std::ostream* log) {
  return train_fashion_mnist(c, data::load_fashion_mnist(c.data_dir), log);
}

TrainResult train_fashion_mnist(const FashionMnistConfig& c, const data::Dataset& ds, std::ostream* log) {
  validate(c);
  // Distributed: rank r trains on slice r of every global batch and evaluates shard r of the test set.
  const int ranks = c.distributed ? distributed::size() : 1, rank = c.distributed ? distributed::rank() : 0;
  const auto share = [&](std::int64_t begin, std::int64_t end, int r) { return begin + (end - begin) * r / ranks; };
  if (rank != 0) log = nullptr;  // logs and files on rank 0 only
  const bool channels_first = c.data_format == "channels_first";
  TrainResult result;
  result.train_examples = limit_of(ds.train_images.shape.at(0), c.train_limit);
  result.test_examples = limit_of(ds.test_images.shape.at(0), c.test_limit);
  for (const auto* a : {&ds.train_images, &ds.test_images})
    if (a->shape.size() != 3 || a->shape[1] != 28 || a->shape[2] != 28)
      throw std::invalid_argument("fashion_mnist: expected 28x28 images");
  // One pool for the library (ops and their loops run on it); BLAS single-threaded inside it.
  result.threads = c.threads > 0 ? c.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  set_num_threads(result.threads);
  kernels::set_blas_threads(1);

  const std::vector<float> train_x = scaled_images(ds.train_images, result.train_examples);
  const std::vector<float> test_x = scaled_images(ds.test_images, result.test_examples);
  const std::int64_t n_train = result.train_examples, n_test = result.test_examples;
  const std::int64_t steps_per_epoch = (n_train + c.batch_size - 1) / c.batch_size;

  Graph graph;
  auto as_default = graph.as_default();
  set_random_seed(static_cast<std::int64_t>(c.seed));
  const Model m = build_model(c, steps_per_epoch);
  for (const Variable& v : trainable_variables()) result.parameters += v.shape().num_elements();

  std::filesystem::path out_dir;
  if (!c.output_dir.empty() && rank == 0) {
    out_dir = c.output_dir;
    std::filesystem::create_directories(out_dir);
    std::ofstream dot(out_dir / "graph.dot");
    write_graphviz(graph, dot, {.collapse_below = 2});
    if (!dot) throw std::runtime_error("cannot write " + (out_dir / "graph.dot").string());
  }

  const double lr0 = c.learning_rate > 0 ? c.learning_rate : default_learning_rate(c.optimizer);
  if (log) {
    *log << "fashion_mnist: " << n_train << " training and " << n_test << " test images from " << c.data_dir
         << "\nnetwork: conv3x3x32-bn-relu-pool2, conv3x3x64-bn-relu-pool2, ";
    if (c.hidden_units > 0) {
      *log << "dense" << c.hidden_units << (c.hidden_batch_norm ? "-bn" : "") << "-relu";
      if (c.dropout > 0) *log << "-dropout" << c.dropout;
      *log << ", ";
    }
    *log << "dense10; " << result.parameters << " trainable parameters; " << c.data_format << "; batch norm "
         << (c.fused ? (*c.fused ? "fused" : "not fused") : "fused when possible")
         << (c.renorm ? ", renorm" : "") << "\noptimizer: " << c.optimizer << ", learning rate " << lr0;
    if (c.lr_decay < 1) *log << " x" << c.lr_decay << " per epoch";
    *log << ", batch " << c.batch_size << ", " << c.epochs << (c.epochs == 1 ? " epoch" : " epochs") << ", seed " << c.seed << ", "
         << result.threads << " thread" << (result.threads == 1 ? "" : "s") << '\n'
         << "matrix products: " << kernels::blas_backend_description() << '\n';
    if (!out_dir.empty())
      *log << "writing " << (out_dir / "graph.dot").string() << ", curves.csv and moving_stats.csv\n";
    if (c.distributed)
      *log << "distributed: " << ranks << " ranks, " << c.batch_size << " examples per step split between them, "
           << (c.synchronized_bn ? "synchronized" : "per-rank") << " batch norm\n";
    *log << std::flush;
  }

  Session sess;
  sess.run(global_variables_initializer());
  const MovingStatsProbe probe(global_variables());
  result.batch_norm_layers = probe.layers;
  result.moving_stats.push_back(probe.sample(sess, 0));
  const std::int64_t sample_every = std::max<std::int64_t>(1, steps_per_epoch / 20);
  if (c.distributed) distributed::broadcast_variables(sess, 0);

  std::mt19937 rng(static_cast<std::mt19937::result_type>(c.seed));
  std::vector<std::int64_t> order(static_cast<std::size_t>(n_train));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);

  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    EpochStats st;
    st.epoch = epoch;
    st.learning_rate = static_cast<double>(sess.run(m.learning_rate).scalar<float>());
    fisher_yates_shuffle(order, rng);

    std::ostringstream label;
    label << "epoch " << epoch << '/' << c.epochs;
    ProgressBar bar(log ? *log : std::cout, log ? c.progress : ProgressBar::Mode::none, label.str(),
                    steps_per_epoch);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0, acc_sum = 0;
    std::int64_t seen = 0;
    for (std::int64_t s = 0; s < steps_per_epoch; ++s) {
      std::int64_t begin = s * c.batch_size, end = std::min(n_train, begin + c.batch_size);
      if (c.distributed) {
        if (end - begin < ranks) continue;  // a last batch too small to give every rank an example
        const std::int64_t global_begin = begin;
        begin = share(global_begin, end, rank);
        end = share(global_begin, end, rank + 1);
      }
      Batch b = make_batch(train_x, ds.train_labels.data, order, begin, end, channels_first);
      if (c.distributed) {
        auto out = sess.run({m.train_op, m.step_totals},
                            {{m.x, std::move(b.images)}, {m.labels, std::move(b.labels)}, {m.training, true}});
        const auto& t = out[1].as<float>();
        loss_sum += static_cast<double>(t(0));
        acc_sum += static_cast<double>(t(1));
        seen += static_cast<std::int64_t>(t(2));
        bar.update(s + 1, seen, loss_sum / static_cast<double>(seen), acc_sum / static_cast<double>(seen));
        continue;
      }
      const bool traced = c.trace_step == (epoch - 1) * steps_per_epoch + s + 1;
      RunMetadata meta;
      auto out = sess.run({m.train_op, m.loss, m.accuracy},
                          {{m.x, std::move(b.images)}, {m.labels, std::move(b.labels)}, {m.training, true}},
                          RunOptions{.trace_level = traced ? RunOptions::full_trace : RunOptions::no_trace}, &meta);
      if (traced) {
        result.trace_summary = meta.summary();
        if (!out_dir.empty()) {
          result.trace_path = (out_dir / "trace.json").string();
          std::ofstream(result.trace_path) << meta.chrome_trace();
        }
      }
      const auto n = static_cast<double>(end - begin);
      loss_sum += static_cast<double>(out[1].scalar<float>()) * n;
      acc_sum += static_cast<double>(out[2].scalar<float>()) * n;
      seen += end - begin;
      bar.update(s + 1, seen, loss_sum / static_cast<double>(seen), acc_sum / static_cast<double>(seen));
      if ((s + 1) % sample_every == 0 || s + 1 == steps_per_epoch)
        result.moving_stats.push_back(probe.sample(
            sess, epoch - 1 + static_cast<double>(s + 1) / static_cast<double>(steps_per_epoch)));
    }
    bar.finish();
    st.train_seconds = seconds_since(t0);
    st.train_loss = loss_sum / static_cast<double>(seen);
    st.train_accuracy = acc_sum / static_cast<double>(seen);
    st.examples_per_second = static_cast<double>(seen) / st.train_seconds;

    const auto t1 = std::chrono::steady_clock::now();
    const Evaluation ev = evaluate(sess, m, test_x, ds.test_labels.data, n_test, c);
    st.eval_seconds = seconds_since(t1);
    st.test_loss = ev.loss;
    st.test_accuracy = ev.accuracy;
    result.epochs.push_back(st);

    if (log) {
      std::ostringstream line;
      line << std::fixed << label.str() << "  lr " << std::setprecision(6) << st.learning_rate
           << std::setprecision(4) << "  train loss " << st.train_loss << " acc " << st.train_accuracy
           << "  |  test loss " << st.test_loss << " acc " << st.test_accuracy << "  |  "
           << std::setprecision(1) << st.train_seconds << " s (" << std::setprecision(0)
           << st.examples_per_second << " ex/s), eval " << std::setprecision(1) << st.eval_seconds << " s\n";
      *log << line.str() << std::flush;
    }
    if (!out_dir.empty()) {
      write_curves(out_dir / "curves.csv", result.epochs);
      write_moving_stats(out_dir / "moving_stats.csv", result);
    }
  }

  if (c.precise_bn_batches > 0) {
    // Precise batch-norm statistics over the first batches of the last epoch's order.
    const auto t2 = std::chrono::steady_clock::now();
    std::int64_t step = 0;
    const std::int64_t steps = std::min<std::int64_t>(c.precise_bn_batches, steps_per_epoch);
    layers::recompute_batch_norm_statistics(sess, [&]() -> std::optional<FeedDict> {
      if (step == steps) return std::nullopt;
      const std::int64_t begin = step++ * c.batch_size, end = std::min(n_train, begin + c.batch_size);
      Batch b = make_batch(train_x, ds.train_labels.data, order, begin, end, channels_first);
      return FeedDict{{m.x, std::move(b.images)}};
    });
    const double seconds = seconds_since(t2);
    result.precise_bn_test_accuracy = evaluate(sess, m, test_x, ds.test_labels.data, n_test, c).accuracy;
    if (log)
      *log << "precise batch norm over " << steps << " training batches (" << std::fixed << std::setprecision(1)
           << seconds << " s): test accuracy " << std::setprecision(4) << result.epochs.back().test_accuracy
           << " -> " << *result.precise_bn_test_accuracy << '\n'
           << std::flush;
  }
  if (c.after_training) c.after_training(sess, m);
  return result;
}

}  // namespace kiln::examples

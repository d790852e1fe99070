#include "layers/batch_norm_statistics.hpp"

#include <algorithm>
#include <map>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include "framework/ops.hpp"
#include "framework/op_registry.hpp"

namespace kiln::layers {

std::optional<FeedDict> FeedBatches::next() {
  if (next_) return next_();
  if (pos_ < batches_.size()) return batches_[pos_++];
  return std::nullopt;
}

namespace {

using kiln::detail::Node;

constexpr const char* kWhere = "recompute_batch_norm_statistics: ";

// One layer: its moving statistics and, per call of the layer, the two values its updates move
// towards.
struct Layer {
  std::string name;
  const Node* moving[2] = {nullptr, nullptr};  // mean, variance
  std::vector<Tensor> values[2];
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// assign_moving_average(v, value, momentum) builds AssignSub(v, Mul(Sub(v, value), decay)).
Tensor update_value(const Node* assign) {
  const auto& delta = assign->inputs[1];
  if (delta.node->def->type == "Mul") {
    const auto& diff = delta.node->inputs[0];
    if (diff.node->def->type == "Sub") return Tensor(diff.node->inputs[1]);
  }
  throw InternalError(std::string(kWhere) + "the update '" + assign->name +
                      "' is not v - (v - value) * decay (assign_moving_average)");
}

std::vector<Layer> find_layers(const Graph& g, const std::vector<std::string>& wanted) {
  std::map<std::string, Layer> by_name;
  const std::string kinds[2] = {"/moving_mean", "/moving_variance"};
  for (int i = 0; i < g.num_nodes(); ++i) {
    const Node* n = g.node(i);
    if (n->def->type != "AssignSub" || n->name.find("AssignMovingAvg/") == std::string::npos) continue;
    const Node* var = n->inputs[0].node;
    for (int k = 0; k < 2; ++k) {
      if (!var->def->is_variable || !ends_with(var->name, kinds[k])) continue;
      Layer& l = by_name[var->name.substr(0, var->name.size() - kinds[k].size())];
      l.moving[k] = var;
      l.values[k].push_back(update_value(n));
    }
  }
  for (auto& [name, l] : by_name) {
    l.name = name;
    if (!l.moving[0] || !l.moving[1] || l.values[0].size() != l.values[1].size())
      throw InternalError(std::string(kWhere) + "layer '" + name + "' does not have one mean and one variance update per call");
  }
  std::vector<Layer> layers;
  if (wanted.empty()) {
    for (auto& [name, l] : by_name) layers.push_back(l);
    if (layers.empty())
      throw ValueError(std::string(kWhere) + "the graph has no batch-normalization layer with moving-average updates "
                       "(layers built with training = false have none)");
  } else {
    for (const auto& name : wanted) {
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        std::string known;
        for (auto& [k, l] : by_name) known += (known.empty() ? "" : ", ") + k;
        throw ValueError(std::string(kWhere) + "no batch-normalization layer '" + name + "' with moving-average updates; "
                         "the graph has: [" + known + "]");
      }
      layers.push_back(it->second);
    }
  }
  for (const Layer& l : layers)
    if (g.name_in_use(l.name + "/renorm_mean"))
      throw ValueError(std::string(kWhere) + "layer '" + l.name +
                       "' uses batch renormalization: its moving statistics derive from the renorm averages, "
                       "not from batch statistics");
  return layers;
}

// Running sums over the batch statistics of one layer, in double.
struct Sums {
  xt::xarray<double> m, v, m2;
  int count = 0;
  void add(const xt::xarray<double>& mean, const xt::xarray<double>& var) {
    if (count == 0) {
      m = xt::zeros<double>(mean.shape());
      v = xt::zeros<double>(var.shape());
      m2 = xt::zeros<double>(mean.shape());
    }
    m += mean;
    v += var;
    m2 += mean * mean;
    ++count;
  }
};

Array as_variable_value(const xt::xarray<double>& v, const Variable& var, const std::string& layer) {
  const Shape want = var.shape();
  if (static_cast<std::int64_t>(v.size()) != want.num_elements())
    throw InternalError(std::string(kWhere) + "layer '" + layer + "': statistics of " + std::to_string(v.size()) +
                        " values for the variable " + var.name() + " of shape " + want.to_string());
  const std::vector<std::size_t> dims(want.dims().begin(), want.dims().end());
  return visit_dtype(var.dtype(), [&]<class T>() -> Array {
    xt::xarray<T> out = xt::xarray<T>::from_shape(dims);
    std::transform(v.begin(), v.end(), out.begin(), [](double d) { return static_cast<T>(d); });
    return Array(std::move(out));
  });
}

}  // namespace

std::vector<BatchNormStatistics> recompute_batch_norm_statistics(Session& sess, FeedBatches batches,
                                                                 const PreciseBatchNormOptions& options) {
  Graph& g = sess.graph();
  const std::vector<Layer> layers = find_layers(g, options.layers);
  std::optional<Tensor> training;
  if (!options.training.empty() && g.name_in_use(options.training)) {
    const Operation op = g.get_operation_by_name(options.training);
    if (op.node()->def->is_placeholder) training = op.output(0);
  }

  std::vector<GraphElement> fetches;
  for (const Layer& l : layers)
    for (std::size_t c = 0; c < l.values[0].size(); ++c) {
      fetches.emplace_back(l.values[0][c]);
      fetches.emplace_back(l.values[1][c]);
    }
  std::vector<Sums> sums(layers.size());
  while (auto batch = batches.next()) {
    FeedDict feeds = std::move(*batch);
    if (training && std::none_of(feeds.begin(), feeds.end(), [&](const auto& f) { return f.first == *training; }))
      feeds.emplace_back(*training, Array(true));
    const std::vector<Array> out = sess.run(fetches, feeds);
    std::size_t k = 0;
    for (std::size_t i = 0; i < layers.size(); ++i)
      for (std::size_t c = 0; c < layers[i].values[0].size(); ++c, k += 2)
        sums[i].add(out[k].to_double(), out[k + 1].to_double());
  }
  if (sums.empty() || sums[0].count == 0) throw ValueError(std::string(kWhere) + "no batches given");

  // Assign the new values through placeholders, in one run.
  std::vector<BatchNormStatistics> result;
  std::vector<GraphElement> assigns;
  FeedDict feeds;
  {
    auto guard = g.as_default();
    control_dependencies none(nullptr);
    name_scope ns("recompute_batch_norm_statistics");
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const Sums& s = sums[i];
      const double n = s.count;
      const xt::xarray<double> mean = s.m / n;
      const xt::xarray<double> between = xt::maximum(s.m2 / n - mean * mean, 0.0);
      const xt::xarray<double> var = s.v / n + between;
      BatchNormStatistics st;
      st.layer = layers[i].name;
      st.moving_mean = Variable(layers[i].moving[0]->variable);
      st.moving_variance = Variable(layers[i].moving[1]->variable);
      st.mean = as_variable_value(mean, st.moving_mean, st.layer);
      st.variance = as_variable_value(var, st.moving_variance, st.layer);
      st.samples = s.count;
      for (const auto& [v, value] : {std::pair{st.moving_mean, st.mean}, std::pair{st.moving_variance, st.variance}}) {
        const Tensor p = placeholder(v.dtype(), v.shape());
        assigns.emplace_back(assign(v, p));
        feeds.emplace_back(p, value);
      }
      result.push_back(std::move(st));
    }
  }
  sess.run(assigns, feeds);
  return result;
}

}  // namespace kiln::layers

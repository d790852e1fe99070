#include "autodiff/gradient_checker.hpp"

#include <cmath>
#include <sstream>

#include "autodiff/gradients.hpp"
#include "framework/errors.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops.hpp"

namespace kiln {

namespace {

Array from_double(const xt::xarray<double>& v, DType dtype) {
  return visit_dtype(dtype, [&]<class T>() {
    xt::xarray<T> r = xt::xarray<T>::from_shape(v.shape());
    for (std::size_t i = 0; i < v.size(); ++i) r.data()[i] = static_cast<T>(v.data()[i]);
    return Array(std::move(r));
  });
}

std::set<std::string>& checked_types() {
  static std::set<std::string> types;
  return types;
}

// Records the types of the ops on a path from one of xs to y.
void record_checked_types(const Tensor& y, const std::vector<Tensor>& xs) {
  const Graph& g = y.graph();
  std::vector<const detail::Node*> from;
  for (auto& x : xs) from.push_back(x.op().node());
  const std::vector<char> between = detail::ops_between(g, from, {y.op().node()});
  for (int i = 0; i < g.num_nodes(); ++i)
    if (between[static_cast<std::size_t>(i)]) checked_types().insert(g.node(i)->def->type);
}

}  // namespace

const std::set<std::string>& gradient_checked_op_types() { return checked_types(); }

GradientCheckResult check_gradients(const Tensor& y, const FeedDict& xs_and_values, const GradientCheckOptions& options) {
  Graph& g = y.graph();
  auto guard = g.as_default();
  std::vector<Tensor> xs;
  for (auto& [x, v] : xs_and_values) {
    if (!is_floating(x.dtype())) throw ValueError("check_gradients: '" + x.name() + "' is not a float tensor");
    xs.push_back(x);
  }
  Session sess(g);
  FeedDict feeds = options.extra_feeds;
  for (auto& xv : xs_and_values) feeds.push_back(xv);

  const Array y0 = sess.run(y, feeds);
  const std::size_t ny = static_cast<std::size_t>(y0.size());
  const Shape yshape = y0.shape();
  const Tensor grad_y = placeholder(y.dtype(), yshape, "check_gradients_grad_y");
  const auto grads = gradients({y}, xs, {grad_y});
  record_checked_types(y, xs);

  GradientCheckResult result;
  std::ostringstream worst;
  for (std::size_t xi = 0; xi < xs.size(); ++xi) {
    const xt::xarray<double> x0 = xs_and_values[xi].second.to_double();
    const std::size_t nx = x0.size();
    // Symbolic Jacobian, one row per element of y.
    xt::xarray<double> symbolic = xt::zeros<double>({ny, nx});
    if (grads[xi]) {
      for (std::size_t j = 0; j < ny; ++j) {
        xt::xarray<double> onehot = xt::zeros<double>(y0.to_double().shape());
        onehot.data()[j] = 1.0;
        FeedDict f = feeds;
        f.emplace_back(grad_y, from_double(onehot, y.dtype()));
        const auto row = sess.run(*grads[xi], f).to_double();
        for (std::size_t i = 0; i < nx; ++i) symbolic(j, i) = row.data()[i];
      }
    }
    // Numeric Jacobian by central differences, one column per element of x.
    for (std::size_t i = 0; i < nx; ++i) {
      const auto eval = [&](double offset) {
        xt::xarray<double> xp = x0;
        xp.data()[i] += offset;
        FeedDict f = options.extra_feeds;
        for (std::size_t k = 0; k < xs_and_values.size(); ++k)
          f.emplace_back(xs[k], k == xi ? from_double(xp, xs[k].dtype()) : xs_and_values[k].second);
        return sess.run(y, f).to_double();
      };
      const auto plus = eval(options.delta), minus = eval(-options.delta);
      for (std::size_t j = 0; j < ny; ++j) {
        const double numeric = (plus.data()[j] - minus.data()[j]) / (2 * options.delta);
        const double err = std::abs(numeric - symbolic(j, i));
        if (!(err <= result.max_error)) {  // also catches NaN
          result.max_error = std::isnan(err) ? INFINITY : err;
          worst.str("");
          worst << "worst: d " << y.name() << "[" << j << "] / d " << xs[xi].name() << "[" << i
                << "]: symbolic " << symbolic(j, i) << ", numeric " << numeric
                << (grads[xi] ? "" : " (no symbolic gradient: x is unconnected)");
        }
      }
    }
  }
  result.report = worst.str();
  return result;
}

}  // namespace kiln

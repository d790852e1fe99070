// BatchNormalization: argument checks and variables in build(), then the fused path (one
// FusedBatchNorm op, or a cond of a training and an inference one) or the composed path (TF 1.8's
// normalization.py `call`, step by step: adjustment, moments, cond on `training`, virtual-batch
// averaging, renorm correction, moving-average updates, nn::batch_normalization). Only ops are
// composed here; the math lives in the ops and kernels.
#include "layers/batch_normalization.hpp"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "distributed/communicator.hpp"
#include "distributed/synchronized_moments.hpp"
#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/ops/common.hpp"
#include "framework/nn_batch_norm.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops.hpp"


namespace kiln::layers {

namespace {

std::string list_text(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// TF's moving_averages.assign_moving_average(v, value, momentum, zero_debias=False):
// v <- v - (v - value) * (1 - momentum).
Tensor assign_moving_average(const Variable& v, const Tensor& value, double momentum) {
  name_scope ns("AssignMovingAvg");
  const Tensor decay = scalar(1.0 - momentum, v.dtype(), "decay");
  return assign_sub(v, (v.value() - value) * decay);
}

// TF's _compose_transforms: (scale, offset) followed by (then_scale, then_offset), where the
// latter may be absent (gamma / beta off).
void compose_transforms(Tensor scale, Tensor offset, std::optional<Tensor>& then_scale,
                        std::optional<Tensor>& then_offset) {
  if (then_scale) {
    scale = scale * *then_scale;
    offset = offset * *then_scale;
  }
  if (then_offset) offset = offset + *then_offset;
  then_scale = scale;
  then_offset = offset;
}

}  // namespace

// ---------------------------------------------------------------- argument types

const Tensor& Training::tensor() const {
  if (const Tensor* t = std::get_if<Tensor>(&v_)) return *t;
  throw ValueError("Training::tensor(): `training` is a bool, not a tensor");
}

std::optional<bool> Training::constant_value() const {
  if (const bool* b = std::get_if<bool>(&v_)) return *b;
  const Tensor& t = std::get<Tensor>(v_);
  if (t.valid() && t.dtype() == boolean && t.op().type() == "Const") {
    const Array& a = t.op().attrs<Array>();
    if (a.size() == 1) return a.scalar<bool>();
  }
  return std::nullopt;
}

double ClipValue::value() const {
  if (const double* d = std::get_if<double>(&v_)) return *d;
  throw ValueError("ClipValue::value(): the clipping bound is a tensor");
}

Tensor ClipValue::as_tensor(DType dtype, const std::string& layer) const {
  if (const double* d = std::get_if<double>(&v_)) return scalar(*d, dtype);
  const Tensor& t = std::get<Tensor>(v_);
  if (!t.valid()) throw ValueError("Layer '" + layer + "': a renorm_clipping bound is a null Tensor");
  if (!is_floating(t.dtype()))
    throw TypeError("Layer '" + layer + "': the renorm_clipping bound '" + t.name() + "' must be a float tensor, got " +
                    dtype_name(t.dtype()));
  if (t.shape().rank() > 0)
    throw ValueError("Layer '" + layer + "': the renorm_clipping bound '" + t.name() + "' must be a scalar, got shape " +
                     t.shape().to_string());
  return t.dtype() == dtype ? t : cast(t, dtype);
}

RenormClipping RenormClipping::from_dict(const std::map<std::string, ClipValue>& dict) {
  RenormClipping r;
  for (const auto& [key, value] : dict) {
    if (key == "rmax") r.rmax = value;
    else if (key == "rmin") r.rmin = value;
    else if (key == "dmax") r.dmax = value;
    else r.unknown_keys.push_back(key);
  }
  return r;
}

// ---------------------------------------------------------------- the layer

BatchNormalization::BatchNormalization(BatchNormalizationOptions options)
    : BatchNormalization(std::move(options), false) {}

BatchNormalization::BatchNormalization(BatchNormalizationOptions options, bool functional)
    : Layer(options.name, "batch_normalization", options.trainable, options.reuse, functional),
      opts_(std::move(options)) {}

std::string BatchNormalization::where(const Shape& input_shape) const {
  return detail::at(display_name(), input_shape);
}

void BatchNormalization::forget_variables() {
  for (Variable* v : {&gamma_, &beta_, &moving_mean_, &moving_variance_, &renorm_mean_, &renorm_mean_weight_,
                      &renorm_stddev_, &renorm_stddev_weight_})
    *v = Variable();
}

void BatchNormalization::build(const Shape& input_shape) {
  const std::string at = where(input_shape);
  if (const auto& bad = opts_.renorm_clipping.unknown_keys; !bad.empty()) {
    std::string keys;
    for (const auto& k : bad) keys += (keys.empty() ? "'" : ", '") + k + "'";
    throw ValueError("renorm_clipping contains keys not in ['rmax', 'rmin', 'dmax']: " + keys + at);
  }
  kiln::detail::check_variance_epsilon(opts_.epsilon, at);
  if (!input_shape.has_rank() || input_shape.rank() == 0)
    throw ValueError("Input has undefined rank: " + input_shape.to_string() + at);
  const int ndims = input_shape.rank();

  // Axes: resolve negatives, then validate (TF's order and wording).
  std::vector<int> axis = opts_.axis.values();
  if (axis.empty()) throw ValueError("`axis` must name at least one axis, got []" + at);
  for (int& a : axis)
    if (a < 0) a += ndims;
  for (int a : axis)
    if (a < 0 || a >= ndims) throw ValueError("Invalid axis: " + std::to_string(a) + at);
  {
    std::vector<int> sorted = axis;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      throw ValueError("Duplicate axis: " + list_text(axis) + at);
  }

  if (opts_.virtual_batch_size) {
    if (*opts_.virtual_batch_size <= 0)
      throw ValueError("virtual_batch_size must be a positive integer that divides the true batch size of the "
                       "input Tensor, got " + std::to_string(*opts_.virtual_batch_size) + at);
    if (std::find(axis.begin(), axis.end(), 0) != axis.end())
      throw ValueError("When using virtual_batch_size, the batch dimension must be 0 and thus axis cannot include 0" +
                       at);
    if (opts_.adjustment) throw ValueError("When using virtual_batch_size, adjustment cannot be specified" + at);
  }

  // The fused path: whenever it applies unless fused == false; fused == true that cannot apply is
  // an error naming the reason (kiln decision).
  std::string reason;
  if (opts_.renorm) reason = "renorm is enabled";
  else if (ndims != 4) reason = "the input has rank " + std::to_string(ndims) + ", not 4";
  else if (axis != std::vector<int>{1} && axis != std::vector<int>{3})
    reason = "axis " + list_text(axis) + " is neither [1] (NCHW) nor [3] (NHWC)";
  else if (opts_.virtual_batch_size) reason = "virtual_batch_size is set";
  else if (opts_.adjustment) reason = "adjustment is set";
  if (opts_.fused == true && !reason.empty())
    throw ValueError("fused batch normalization cannot be used: " + reason + at);
  use_fused_ = opts_.fused != false && reason.empty();
  synchronized_ = opts_.synchronized && distributed::size() > 1;
  if (opts_.synchronized && opts_.virtual_batch_size)
    throw ValueError("synchronized batch normalization cannot be combined with virtual_batch_size" + at);
  bessel_ = use_fused_;
  if (synchronized_) use_fused_ = false;  // the composed ops, with the fused path's moving variance
  data_format_ = use_fused_ ? (axis[0] == 1 ? "NCHW" : "NHWC") : "";

  for (int a : axis)
    if (input_shape[a] < 0)
      throw ValueError("Input has undefined `axis` dimension. Input shape: " + input_shape.to_string() + at);

  std::vector<std::int64_t> param;
  if (axis.size() == 1 && !opts_.virtual_batch_size) {
    param = {input_shape[axis[0]]};
  } else {
    for (int i = 0; i < ndims; ++i)
      param.push_back(std::find(axis.begin(), axis.end(), i) != axis.end() ? input_shape[i] : 1);
    if (opts_.virtual_batch_size) {
      param.insert(param.begin() + 1, 1);
      for (int& a : axis) ++a;  // the inserted group dimension
    }
  }
  input_shape_ = input_shape;
  axis_ = axis;
  param_shape_ = Shape(param);

  const auto or_default = [](const Initializer& i, Initializer fallback) { return i ? i : fallback; };
  if (opts_.scale)
    gamma_ = add_variable("gamma", param_shape_,
                          {.dtype = dtype_,
                           .initializer = or_default(opts_.gamma_initializer, initializers::ones()),
                           .regularizer = opts_.gamma_regularizer,
                           .trainable = true,
                           .constraint = opts_.gamma_constraint});
  if (opts_.center)
    beta_ = add_variable("beta", param_shape_,
                         {.dtype = dtype_,
                          .initializer = or_default(opts_.beta_initializer, initializers::zeros()),
                          .regularizer = opts_.beta_regularizer,
                          .trainable = true,
                          .constraint = opts_.beta_constraint});
  moving_mean_ = add_variable("moving_mean", param_shape_,
                              {.dtype = dtype_,
                               .initializer = or_default(opts_.moving_mean_initializer, initializers::zeros()),
                               .trainable = false});
  moving_variance_ = add_variable("moving_variance", param_shape_,
                                  {.dtype = dtype_,
                                   .initializer = or_default(opts_.moving_variance_initializer, initializers::ones()),
                                   .trainable = false});
  if (opts_.renorm) {
    const auto renorm_variable = [&](const char* name, const Shape& shape) {
      return add_variable(name, shape, {.dtype = dtype_, .initializer = initializers::zeros(), .trainable = false});
    };
    renorm_mean_ = renorm_variable("renorm_mean", param_shape_);
    renorm_mean_weight_ = renorm_variable("renorm_mean_weight", Shape{});
    renorm_stddev_ = renorm_variable("renorm_stddev", param_shape_);
    renorm_stddev_weight_ = renorm_variable("renorm_stddev_weight", Shape{});
  }
}

Tensor BatchNormalization::operator()(const Tensor& inputs, Training training) {
  if (!inputs.valid()) throw ValueError("Layer '" + display_name() + "': the inputs are a null Tensor");
  const Shape& s = inputs.shape();
  const DType t = inputs.dtype();
  if (!is_floating(t))
    throw TypeError(std::string("Batch normalization needs float32 or float64 inputs, got ") + dtype_name(t) + " '" +
                    inputs.name() + "'" + where(s));
  if (built()) {
    if (t != dtype_)
      throw TypeError(std::string("Input '") + inputs.name() + "' has dtype " + dtype_name(t) +
                      ", the layer was built for " + dtype_name(dtype_) + where(s));
    const int ndims = input_shape_.rank();
    if (!s.has_rank()) throw ValueError("Input has undefined rank: " + s.to_string() + where(s));
    if (s.rank() != ndims)
      throw ValueError("Input 0 of layer " + name() + " is incompatible with the layer: expected ndim=" +
                       std::to_string(ndims) + ", found ndim=" + std::to_string(s.rank()) +
                       ". Full shape received: " + s.to_string() + where(s));
    const int shift = opts_.virtual_batch_size ? 1 : 0;
    for (int a : axis_) {
      const int ia = a - shift;
      if (s[ia] >= 0 && s[ia] != input_shape_[ia])
        throw ValueError("Input 0 of layer " + name() + " is incompatible with the layer: expected axis " +
                         std::to_string(ia) + " of input shape to have value " + std::to_string(input_shape_[ia]) +
                         " but received input with shape " + s.to_string() + where(s));
    }
  } else {
    dtype_ = t;
  }
  if (training.is_tensor()) {
    const Tensor& p = training.tensor();
    if (!p.valid()) throw ValueError("`training` is a null Tensor" + where(s));
    if (p.dtype() != boolean)
      throw TypeError("`training` must be a bool or a scalar boolean tensor, got '" + p.name() + "' of dtype " +
                      dtype_name(p.dtype()) + where(s));
    if (p.shape().rank() > 0)
      throw ValueError("`training` must be a scalar boolean tensor, got '" + p.name() + "' of shape " +
                       p.shape().to_string() + where(s));
  }
  return call_in_scope(s, [&] { return call(inputs, training); });
}

Tensor BatchNormalization::fused_call(const Tensor& inputs, const Training& training) {
  const std::optional<bool> tv = training.constant_value();
  // scale = false / center = false: constant ones / zeros (TF's _gamma_const / _beta_const).
  const Tensor gamma = gamma_.valid() ? gamma_.value() : ones(param_shape_, dtype_, "Const");
  const Tensor beta = beta_.valid() ? beta_.value() : zeros(param_shape_, dtype_, "Const");
  const auto train = [&] {
    const auto o = nn::fused_batch_norm(inputs, gamma, beta, std::nullopt, std::nullopt, opts_.epsilon, data_format_,
                                        true);
    return std::vector<Tensor>{o.y, o.batch_mean, o.batch_variance};
  };
  const auto infer = [&] {
    const auto o = nn::fused_batch_norm(inputs, gamma, beta, moving_mean_.value(), moving_variance_.value(),
                                        opts_.epsilon, data_format_, false);
    return std::vector<Tensor>{o.y, o.batch_mean, o.batch_variance};
  };
  const std::vector<Tensor> out = tv ? (*tv ? train() : infer()) : cond(training.tensor(), train, infer);
  if (!tv || *tv) {
    // The batch variance is Bessel-corrected by the op (TF). With a run-time `training`, the
    // updates are gated like the composed path's (kiln decision: bit-identical when false).
    const auto update = [&](const Variable& v, const Tensor& value) -> GraphElement {
      if (tv) return assign_moving_average(v, value, opts_.momentum);
      return cond(
          training.tensor(), [&] { return assign_moving_average(v, value, opts_.momentum); },
          [&] { return v.value(); });
    };
    add_update(update(moving_mean_, out[1]));
    add_update(update(moving_variance_, out[2]));
  }
  return out[0];
}

Tensor BatchNormalization::call(const Tensor& original_inputs, const Training& training) {
  const std::optional<bool> tv = training.constant_value();
  const Shape& original_shape = original_inputs.shape();
  Tensor inputs = original_inputs;

  // Virtual batches: [N, ...] -> [V, N / V, ...]; group j holds rows j, j + G, ... (G = N / V).
  std::vector<std::int64_t> rest;
  bool rest_known = true;
  if (opts_.virtual_batch_size) {
    const std::int64_t v = *opts_.virtual_batch_size;
    const std::int64_t n = original_shape[0];
    if (n >= 0 && n % v != 0)
      throw ValueError("virtual_batch_size " + std::to_string(v) + " does not divide the batch size " +
                       std::to_string(n) + where(original_shape));
    rest.assign(original_shape.dims().begin() + 1, original_shape.dims().end());
    rest_known = std::all_of(rest.begin(), rest.end(), [](std::int64_t d) { return d >= 0; });
    std::vector<std::int64_t> expanded{v, -1};
    expanded.insert(expanded.end(), rest.begin(), rest.end());
    if (rest_known) {
      inputs = reshape(inputs, Shape(expanded), "Reshape");
    } else {
      const Tensor tail = slice(shape(original_inputs), {1}, {-1});
      inputs = reshape(inputs, concat({kiln::detail::int32_vector({v, -1}, "shape"), tail}, 0), "Reshape");
    }
  }
  if (use_fused_) return fused_call(inputs, training);

  const int ndims = inputs.shape().rank();
  std::vector<int> reduction_axes;
  for (int i = 0; i < ndims; ++i)
    if (std::find(axis_.begin(), axis_.end(), i) == axis_.end()) reduction_axes.push_back(i);
  if (opts_.virtual_batch_size) reduction_axes.erase(reduction_axes.begin() + 1);  // keep the groups apart

  // Single-axis statistics ([C]) broadcast by reshaping unless the axis is the last one.
  std::vector<int> leading(static_cast<std::size_t>(std::max(ndims - 1, 0)));
  std::iota(leading.begin(), leading.end(), 0);
  std::vector<std::int64_t> broadcast_shape(static_cast<std::size_t>(ndims), 1);
  broadcast_shape[static_cast<std::size_t>(axis_[0])] = param_shape_.rank() == 1 ? param_shape_[0]
                                                                                   : param_shape_[axis_[0]];
  const auto broadcast = [&](const Tensor& v) {
    if (v.shape().rank() != ndims && reduction_axes != leading) return reshape(v, Shape(broadcast_shape));
    return v;
  };

  std::optional<Tensor> scale, offset;
  if (gamma_.valid()) scale = broadcast(gamma_.value());
  if (beta_.valid()) offset = broadcast(beta_.value());

  Tensor mean, variance;
  if (!tv || *tv) {
    if (opts_.adjustment) {
      const std::pair<Tensor, Tensor> adjustment = opts_.adjustment(shape(inputs));
      Tensor adj_scale = adjustment.first, adj_bias = adjustment.second;
      if (!tv) {  // adjust only in training
        adj_scale = cond(
            training.tensor(), [&] { return adj_scale; }, [&] { return ones_like(adj_scale); });
        adj_bias = cond(
            training.tensor(), [&] { return adj_bias; }, [&] { return zeros_like(adj_bias); });
      }
      compose_transforms(adj_scale, adj_bias, scale, offset);
    }

    const bool keep_dims = opts_.virtual_batch_size.has_value() || axis_.size() > 1;
    Tensor update_variance;
    const bool synchronized_statistics_built = synchronized_ && !reduction_axes.empty();
    if (synchronized_statistics_built) {
      const std::vector<Tensor> stats = synchronized_statistics(inputs, reduction_axes, keep_dims, training);
      mean = stats[0];
      variance = stats[1];
      update_variance = stats[2];
    } else if (reduction_axes.empty()) {  // every axis normalized: per-element statistics (TF reduces nothing)
      mean = identity(inputs, "mean");
      variance = zeros_like(inputs, "variance");
    } else {
      std::tie(mean, variance) = nn::moments(inputs, reduction_axes, keep_dims);
    }
    if (!tv && !synchronized_statistics_built) {
      const Tensor batch_mean = mean, batch_variance = variance;
      mean = cond(
          training.tensor(), [&] { return batch_mean; }, [&] { return moving_mean_.value(); });
      variance = cond(
          training.tensor(), [&] { return batch_variance; }, [&] { return moving_variance_.value(); });
    }
    if (!update_variance.valid()) update_variance = variance;

    Tensor new_mean = mean, new_variance = update_variance;
    if (opts_.virtual_batch_size) {  // one step with the averages over the groups
      new_mean = reduce_mean(mean, {1}, true);
      new_variance = reduce_mean(variance, {1}, true);
    }

    if (opts_.renorm) {
      const RenormCorrection rc = renorm_correction(new_mean, new_variance, training);
      new_mean = rc.new_mean;
      new_variance = rc.new_variance;
      // Training: x_hat * r + d, then gamma and beta: x_hat * (r * gamma) + (d * gamma + beta).
      compose_transforms(broadcast(stop_gradient(rc.r, "renorm_r")), broadcast(stop_gradient(rc.d, "renorm_d")),
                         scale, offset);
    }

    const auto update = [&](const Variable& v, const Tensor& value) -> GraphElement {
      if (tv) return assign_moving_average(v, value, opts_.momentum);
      return cond(
          training.tensor(), [&] { return assign_moving_average(v, value, opts_.momentum); },
          [&] { return v.value(); });
    };
    add_update(update(moving_mean_, new_mean));
    add_update(update(moving_variance_, new_variance));
  } else {
    mean = moving_mean_.value();
    variance = moving_variance_.value();
  }

  Tensor outputs = nn::batch_normalization(inputs, broadcast(mean), broadcast(variance), offset, scale, opts_.epsilon);

  if (opts_.virtual_batch_size) {
    if (original_shape.is_fully_defined()) {
      outputs = reshape(outputs, original_shape);
    } else if (rest_known) {
      std::vector<std::int64_t> back{-1};
      back.insert(back.end(), rest.begin(), rest.end());
      outputs = reshape(outputs, Shape(back));
    } else {
      outputs = reshape(outputs, shape(original_inputs));
    }
  }
  return outputs;
}

BatchNormalization::RenormCorrection BatchNormalization::renorm_correction(const Tensor& batch_mean,
                                                                           const Tensor& batch_variance,
                                                                           const Training& training) {
  const std::optional<bool> tv = training.constant_value();
  const std::string layer = display_name();
  Tensor mean = batch_mean;
  Tensor stddev = sqrt(batch_variance + opts_.epsilon);
  // The averages as if they had been initialized with this batch's moments.
  const Tensor mixed_mean = renorm_mean_.value() + (1.0 - renorm_mean_weight_.value()) * mean;
  const Tensor mixed_stddev = renorm_stddev_.value() + (1.0 - renorm_stddev_weight_.value()) * stddev;
  Tensor r = stddev / mixed_stddev;
  Tensor d = (mean - mixed_mean) / mixed_stddev;
  {  // the corrections use the averages before this step's updates
    control_dependencies deps({r, d});
    mean = identity(mean);
    stddev = identity(stddev);
  }
  const auto& clip = opts_.renorm_clipping;
  if (clip.rmin) r = maximum(r, clip.rmin->as_tensor(dtype_, layer));
  if (clip.rmax) r = minimum(r, clip.rmax->as_tensor(dtype_, layer));
  if (clip.dmax) {
    const Tensor dmax = clip.dmax->as_tensor(dtype_, layer);
    d = maximum(d, -dmax);
    d = minimum(d, dmax);
  }
  if (!tv) {  // inference: r = 1, d = 0
    const Tensor r_train = r, d_train = d;
    r = cond(
        training.tensor(), [&] { return r_train; }, [&] { return ones_like(r_train); });
    d = cond(
        training.tensor(), [&] { return d_train; }, [&] { return zeros_like(d_train); });
  }

  // Updates a zero-initialized average and its weight; returns their ratio (the debiased average).
  const auto update_renorm_variable = [&](const Variable& var, const Variable& weight, const Tensor& v) {
    const Tensor value = identity(v);
    const auto do_update = [&] {
      Tensor weight_value;
      {
        control_dependencies deps({value});
        weight_value = scalar(1.0, weight.dtype());
      }
      const Tensor new_var = assign_moving_average(var, value, opts_.renorm_momentum);
      const Tensor new_weight = assign_moving_average(weight, weight_value, opts_.renorm_momentum);
      return new_var / new_weight;
    };
    if (tv) return do_update();
    return cond(training.tensor(), do_update, [&] { return identity(var.value()); });
  };
  const Tensor new_mean = update_renorm_variable(renorm_mean_, renorm_mean_weight_, mean);
  const Tensor new_stddev = update_renorm_variable(renorm_stddev_, renorm_stddev_weight_, stddev);
  // sqrt(moving_variance + epsilon) = new_stddev.
  const Tensor new_variance = square(new_stddev) - opts_.epsilon;
  return {r, d, new_mean, new_variance};
}

// The global batch's (mean, variance, variance for the moving average), or with a run-time
// `training` a cond whose true branch holds the collectives (so inference runs none) and whose
// false branch gives the moving statistics.
std::vector<Tensor> BatchNormalization::synchronized_statistics(const Tensor& inputs,
                                                               const std::vector<int>& reduction_axes, bool keep_dims,
                                                               const Training& training) {
  const auto batch = [&] {
    const distributed::SynchronizedMoments m = distributed::synchronized_moments(inputs, reduction_axes, keep_dims);
    Tensor update = m.variance;
    if (bessel_) update = m.variance * (m.count / maximum(m.count - 1.0, scalar(1.0, dtype_)));
    return std::vector<Tensor>{m.mean, m.variance, update};
  };
  if (training.constant_value()) return batch();
  return cond(training.tensor(), batch, [&] {
    return std::vector<Tensor>{moving_mean_.value(), moving_variance_.value(), moving_variance_.value()};
  });
}

Tensor batch_normalization(const Tensor& inputs, const BatchNormalizationOptions& options) {
  BatchNormalization layer(options, true);
  return layer(inputs, options.training);
}

}  // namespace kiln::layers

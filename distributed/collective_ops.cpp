// Collective ops: type, shape function, kernel and gradient side by side; the data movement is in
// communicator.cpp (the MPI seam). See collective_ops.hpp for the table and the ordering guarantee.
#include "distributed/collective_ops.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "distributed/communicator.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/register.hpp"

namespace kiln {

namespace dist = distributed;

namespace {

std::string what(const KernelContext& c) { return c.node().def->type + " '" + c.op_name() + "'"; }

// Elements per row (axis 0) of a shape of rank >= 1.
std::int64_t row_elements(const Shape& s) {
  std::int64_t n = 1;
  for (int i = 1; i < s.rank(); ++i) n *= s[i];
  return n;
}

// Every rank's row count for an axis-0 gather, after checking that the elements per row agree.
std::vector<std::int64_t> gathered_rows(const Array& x, const std::string& op) {
  const Shape s = x.shape();
  if (s.rank() < 1) throw InvalidArgumentError(op + ": needs a tensor of rank >= 1, got a scalar");
  const std::int64_t per_row = row_elements(s);
  const auto all = dist::detail::all_gather_int64({s[0], per_row}, op);
  std::vector<std::int64_t> rows;
  for (std::size_t r = 0; r < all.size(); r += 2) {
    if (all[r + 1] != per_row)
      throw InvalidArgumentError(op + ": rank " + std::to_string(r / 2) + " has " + std::to_string(all[r + 1]) +
                                 " elements per row, rank " + std::to_string(dist::rank()) + " has " +
                                 std::to_string(per_row) + " (shape " + s.to_string() + ")");
    rows.push_back(all[r]);
  }
  return rows;
}

std::vector<std::size_t> dims_of(const Shape& s) {
  std::vector<std::size_t> d;
  for (auto v : s.dims()) d.push_back(static_cast<std::size_t>(v));
  return d;
}

}  // namespace

void register_collective_ops(OpRegistry& r) {
  r.add({.type = "AllReduce",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               return detail::one(c.dtypes[0], c.shapes[0]);
             },
         .kernels = kernels_with<dist::AllReduceAttrs, KILN_FLOAT_TYPES>(
             []<class T>(KernelContext& c, const dist::AllReduceAttrs& a) {
               const auto x = c.input_as<T>(0);
               auto y = c.allocate_output_like<T>(0, 0);
               std::copy(x.begin(), x.end(), y.data());
               dist::detail::all_reduce_sum(y.data(), y.size(), dtype_of<T>(), what(c));
               // mean = sum / size; with one process the division by 1 is exact, so both
               // are a copy.
               if (a.reduction == dist::Reduction::mean && dist::size() > 1)
                 for (T& v : y) v /= static_cast<T>(dist::size());
             }),
         // y = reduce_r x_r on every rank: dL/dx_q = sum_r dy_r (sum) or mean_r dy_r (mean).
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{dist::all_reduce(*dy[0], op.attrs<dist::AllReduceAttrs>().reduction)};
             },
         .is_collective = true,
         // The reduction as one bool (mean) in the file.
         .attr_codec = attr_codec<dist::AllReduceAttrs>([](auto& io, auto& a) {
           if constexpr (std::is_const_v<std::remove_reference_t<decltype(a)>>) {
             io(a.reduction == dist::Reduction::mean);
           } else {
             bool mean = false;
             io(mean);
             a.reduction = mean ? dist::Reduction::mean : dist::Reduction::sum;
           }
         })});

  r.add({.type = "Broadcast",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               if (c.attrs<dist::BroadcastAttrs>().root < 0)
                 throw ValueError("root must be a rank >= 0, got " + std::to_string(c.attrs<dist::BroadcastAttrs>().root));
               return detail::one(c.dtypes[0], c.shapes[0]);
             },
         .kernels = kernels_with<dist::BroadcastAttrs, KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c, const dist::BroadcastAttrs& a) {
               const auto x = c.input_as<T>(0);
               auto y = c.allocate_output_like<T>(0, 0);
               std::copy(x.begin(), x.end(), y.data());
               dist::detail::broadcast(y.data(), y.size(), dtype_of<T>(), a.root, what(c));
             }),
         // y_q = x_root on every rank q: dL/dx_root = sum_q dy_q, and 0 on the other ranks.
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const Tensor on_root = equal(dist::rank_tensor(), scalar(op.attrs<dist::BroadcastAttrs>().root, int32));
               return OptionalTensors{dist::all_reduce(*dy[0]) * cast(on_root, dy[0]->dtype())};
             },
         .is_collective = true,
         .attr_codec = attr_codec<dist::BroadcastAttrs>([](auto& io, auto& a) { io(a.root); })});

  r.add({.type = "AllGather",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const Shape& s = c.shapes[0];
               if (!s.has_rank()) return detail::one(c.dtypes[0], s);
               if (s.rank() < 1) throw ValueError("Shape must be at least rank 1 but is rank 0");
               std::vector<std::int64_t> d = s.dims();
               d[0] = -1;  // the other ranks' row counts are known at run time only
               return detail::one(c.dtypes[0], Shape(d));
             },
         .kernels = kernels_for<KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c) {
           const auto& x = c.input_as<T>(0);
           const auto rows = gathered_rows(c.input(0), what(c));
           const std::int64_t per_row = row_elements(c.input(0).shape());
           std::int64_t total = 0;
           std::vector<std::int64_t> counts;
           for (auto n : rows) {
             total += n;
             counts.push_back(n * per_row);
           }
           std::vector<std::size_t> d = dims_of(c.input(0).shape());
           d[0] = static_cast<std::size_t>(total);
           auto y = c.allocate_output<T>(0, d);
           dist::detail::all_gather(x.data(), counts, y.data(), dtype_of<T>(), what(c));
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{dist::reduce_scatter(*dy[0], op.inputs()[0])};
             },
         .is_collective = true});

  r.add({.type = "ReduceScatter",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 2);
               return detail::one(c.dtypes[0], c.shapes[1]);
             },
         .kernels = kernels_for<KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c) {
           const auto dy = c.input_as<T>(0);
           std::vector<T> sum(dy.begin(), dy.end());  // reduced in place
           const auto rows = gathered_rows(c.input(1), what(c));
           std::int64_t total = 0, offset = 0;
           for (std::size_t r = 0; r < rows.size(); ++r) {
             if (static_cast<int>(r) < dist::rank()) offset += rows[r];
             total += rows[r];
           }
           const std::int64_t per_row = row_elements(c.input(1).shape());
           const Shape dys = c.input(0).shape();
           if (dys.rank() < 1 || dys[0] != total || c.input(0).size() != total * per_row)
             throw InvalidArgumentError(what(c) + ": the gathered gradient has shape " + dys.to_string() + ", expected " +
                                        std::to_string(total) + " rows like " + c.input(1).shape().to_string());
           dist::detail::all_reduce_sum(sum.data(), sum.size(), dtype_of<T>(), what(c));
           auto y = c.allocate_output<T>(0, dims_of(c.input(1).shape()));
           if (y.size()) std::memcpy(y.data(), sum.data() + offset * per_row, y.size() * sizeof(T));
         }),
         .gradient =
             [](const Operation&, const OptionalTensors& dy) {
               return OptionalTensors{dist::all_gather(*dy[0]), std::nullopt};
             },
         .is_collective = true});

  r.add({.type = "CollectiveRank",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 0);
               return detail::one(int32, Shape{});
             },
         .kernels = kernels_for<std::int32_t>([]<class T>(KernelContext& c) {
           c.set_output(0, xt::xarray<std::int32_t>(static_cast<std::int32_t>(dist::rank())));
         }),
         .dispatch_input = -1,
         .not_differentiable = true});
}

namespace distributed {

Tensor all_reduce(const Tensor& x, Reduction reduction, const std::string& name) {
  return kiln::detail::build1("AllReduce", {x}, AllReduceAttrs{reduction}, name);
}

Tensor broadcast(const Tensor& x, int root, const std::string& name) {
  return kiln::detail::build1("Broadcast", {x}, BroadcastAttrs{root}, name);
}

Tensor all_gather(const Tensor& x, const std::string& name) {
  return kiln::detail::build1("AllGather", {x}, {}, name);
}

Tensor reduce_scatter(const Tensor& dy, const Tensor& like, const std::string& name) {
  return kiln::detail::build1("ReduceScatter", {dy, like}, {}, name);
}

Tensor rank_tensor(const std::string& name) { return kiln::detail::build1("CollectiveRank", {}, {}, name); }

}  // namespace distributed

}  // namespace kiln

// Batch norm forward (training) + backward in oneDNN: batch_normalization_forward/backward with
// scale and shift (one [2, C] memory, use_scale_shift, as PyTorch's oneDNN path does: oneDNN 2.6's
// backward rejects separate use_scale | use_shift with "invalid arguments"), the running
// statistics updated by hand (oneDNN leaves that to the framework; C values, negligible).
// Layouts: nhwc for the NHWC cases, oneDNN's blocked nChw16c for the NCHW cases (its native
// channels-first layout, faster than plain nchw), nc for the dense case.
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <random>
#include <unordered_map>

#include "bench/harness.hpp"
#include "bench/work_items.hpp"

namespace bench::dnnl_items {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

memory make_memory(const memory::desc& md, const dnnl::engine& eng, float fill, unsigned seed = 0) {
  memory m(md, eng);
  auto* p = static_cast<float*>(m.get_data_handle());
  const std::size_t count = md.get_size() / sizeof(float);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (std::size_t i = 0; i < count; ++i) p[i] = seed ? normal(rng) : fill;
  return m;
}

Samples run_batch_norm(const BnCase& bc, const Config& c) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  const memory::dims dims = bc.rank2() ? memory::dims{bc.n, bc.c} : memory::dims{bc.n, bc.c, bc.h, bc.w};
  const tag layout = bc.rank2() ? tag::nc : bc.nchw ? tag::nChw16c : tag::nhwc;
  const memory::desc md(dims, memory::data_type::f32, layout);
  const auto flags = dnnl::normalization_flags::use_scale_shift;
  const dnnl::batch_normalization_forward::primitive_desc fwd_pd(
      {dnnl::prop_kind::forward_training, md, static_cast<float>(kBnEpsilon), flags}, eng);
  const dnnl::batch_normalization_backward::primitive_desc bwd_pd(
      {dnnl::prop_kind::backward, md, md, static_cast<float>(kBnEpsilon), flags}, eng, fwd_pd);
  const dnnl::batch_normalization_forward fwd(fwd_pd);
  const dnnl::batch_normalization_backward bwd(bwd_pd);

  memory src = make_memory(md, eng, 0, 1), diff_dst = make_memory(md, eng, 0, 2);
  memory dst = make_memory(md, eng, 0), diff_src = make_memory(md, eng, 0);
  memory mean = make_memory(fwd_pd.mean_desc(), eng, 0), variance = make_memory(fwd_pd.variance_desc(), eng, 0);
  memory scale_shift = make_memory(fwd_pd.weights_desc(), eng, 0);
  std::fill_n(static_cast<float*>(scale_shift.get_data_handle()), bc.c, 1.0f);  // gamma 1, beta 0
  memory diff_scale_shift = make_memory(bwd_pd.diff_weights_desc(), eng, 0);
  std::vector<float> running_mean(static_cast<std::size_t>(bc.c), 0.0f), running_var(running_mean.size(), 1.0f);
  const float bessel = static_cast<float>(bc.elements() / bc.c) / static_cast<float>(bc.elements() / bc.c - 1);

  std::unordered_map<int, memory> fwd_args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_MEAN, mean},
                                           {DNNL_ARG_VARIANCE, variance}, {DNNL_ARG_SCALE_SHIFT, scale_shift}};
  std::unordered_map<int, memory> bwd_args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, variance}, {DNNL_ARG_DIFF_DST, diff_dst},
      {DNNL_ARG_SCALE_SHIFT, scale_shift}, {DNNL_ARG_DIFF_SRC, diff_src},
      {DNNL_ARG_DIFF_SCALE_SHIFT, diff_scale_shift}};
  return time_steps(c, [&] {
    fwd.execute(stream, fwd_args);
    stream.wait();
    const auto* m = static_cast<const float*>(mean.get_data_handle());
    const auto* v = static_cast<const float*>(variance.get_data_handle());
    const auto keep = static_cast<float>(kBnMomentum);
    for (std::size_t i = 0; i < running_mean.size(); ++i) {  // the update ops
      running_mean[i] = keep * running_mean[i] + (1 - keep) * m[i];
      running_var[i] = keep * running_var[i] + (1 - keep) * v[i] * bessel;
    }
    bwd.execute(stream, bwd_args);
    stream.wait();
  });
}

}  // namespace

void add_batch_norm(Registry& items) {
  for (const BnCase& bc : bn_cases())
    items.add(bc.name(), "ms", [bc](const Config& c) { return run_batch_norm(bc, c); });
}

}  // namespace bench::dnnl_items

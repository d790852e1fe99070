// write_graph / import_graph_def: a frozen, folded network round-trips with bit-identical
// outputs and the same tensor names; attribute codecs of many op types (and the seed of a random
// op, and Merge's tensor reference) survive; truncated, flipped, foreign and unknown-op files and
// graphs with variables are clear errors naming the path or the op.
#include <doctest/doctest.h>

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include <xtensor/xmath.hpp>

#include <kiln.hpp>

#include "distributed/collective_ops.hpp"
#include "framework/op_registry.hpp"
#include "framework/graph_io.hpp"
#include "framework/graph_util.hpp"

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/bn_network.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("kiln_graph_io_" + name)).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool same(const Array& a, const Array& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && xt::all(xt::equal(a.to_double(), b.to_double()));
}

// A small graph written to `path`: two ops, the second an Identity.
void write_small_graph(const std::string& path) {
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {2}, "x");
  identity(x * 2.0, "out");
  write_graph(g, path);
}

}  // namespace

TEST_CASE("graph_io.frozen_folded_network_round_trips_bit_identically") {
  Graph g;
  auto guard = g.as_default();
  Session sess(g);
  kiln::testing::build_bn_network(sess, {.conv_bias = true});
  auto frozen = graph_util::convert_variables_to_constants(sess, g, {"logits/BiasAdd"});
  auto folded = graph_util::fold_batch_norms(*frozen);
  for (Graph* graph : {frozen.get(), folded.get()}) {
    const std::string path = temp_path("network.kgraph");
    write_graph(*graph, path);
    auto loaded = import_graph_def(path);
    std::filesystem::remove(path);
    REQUIRE(loaded->num_nodes() == graph->num_nodes());
    for (const Operation& op : graph->operations()) {
      const Operation back = loaded->get_operation_by_name(op.name());
      CHECK(back.type() == op.type());
      CHECK(back.inputs().size() == op.inputs().size());
    }
    const auto input = kiln::testing::network_input({}, 4, 9);
    Session a(*graph), b(*loaded);
    const Array ya = a.run(graph->get_tensor_by_name("logits/BiasAdd:0"), {{graph->get_tensor_by_name("x:0"), input}});
    const Array yb = b.run(loaded->get_tensor_by_name("logits/BiasAdd:0"), {{loaded->get_tensor_by_name("x:0"), input}});
    INFO("max difference " << xt::amax(xt::abs(ya.to_double() - yb.to_double()))());
    CHECK(same(ya, yb));
  }
}

TEST_CASE("graph_io.attributes_seeds_and_cond_survive_the_file") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(3);
  const Tensor x = placeholder(float32, {2, 3, 4}, "x");
  const Tensor pred = placeholder(boolean, {}, "pred");
  std::vector<Tensor> outs = {
      transpose(x, {2, 0, 1}),
      reduce_mean(x, {1}, true),
      reduce_max(x, {0, 2}),
      slice(x, {0, 1, 0}, {-1, 2, 3}),
      concat({x, x}, 1),
      stack({x, x}, 0),
      expand_dims(x, 1),
      squeeze(expand_dims(x, 0), {0}),
      tile(x, {1, 2, 1}),
      cast(argmax(x, 2, int32), float64),
      one_hot(argmax(x, 1), 4, float64),
      nn::softmax(x),
      nn::log_softmax(x, 1),
      matmul(reshape(x, Shape{6, 4}), reshape(x, Shape{6, 4}), {.transpose_b = true}),
      nn::bias_add(x, constant(Array(xt::xarray<float>{1, 2, 3, 4})), "NHWC"),
      nn::conv2d(reshape(x, Shape{1, 2, 3, 4}), random_normal({2, 2, 4, 2}, 0, 1, float32, 5), {1, 1, 1, 1}, "SAME",
                 {.data_format = "NHWC"}),
      nn::max_pool(reshape(x, Shape{1, 2, 3, 4}), {1, 2, 2, 1}, {1, 1, 1, 1}, "VALID"),
      random_uniform({3}, -1, 1, float32),
      cond(pred, [&] { return x * 2.0; }, [&] { return x - 1.0; }),
  };
  const std::string path = temp_path("ops.kgraph");
  write_graph(g, path);
  auto loaded = import_graph_def(path);
  std::filesystem::remove(path);
  const auto input = kiln::testing::random_input({2, 3, 4}, 1);
  for (const bool p : {false, true}) {
    Session a(g), b(*loaded);
    for (const Tensor& t : outs) {
      CAPTURE(t.name());
      const Array ya = a.run(t, {{x, input}, {pred, p}});
      const Array yb = b.run(loaded->get_tensor_by_name(t.name()),
                             {{loaded->get_tensor_by_name("x:0"), input}, {loaded->get_tensor_by_name("pred:0"), p}});
      CHECK(same(ya, yb));
    }
  }
}

TEST_CASE("graph_io.corrupt_files_are_errors_naming_the_path") {
  const std::string path = temp_path("small.kgraph");
  write_small_graph(path);
  const std::string good = read_bytes(path);
  REQUIRE(good.size() > 30);

  write_bytes(path, good.substr(0, good.size() - 5));
  std::string msg = message_of<InvalidArgumentError>([&] { import_graph_def(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "truncated"));

  write_bytes(path, good.substr(0, 12));
  CHECK(contains(message_of<InvalidArgumentError>([&] { import_graph_def(path); }), path));

  std::string flipped = good;
  flipped[good.size() - 7] = static_cast<char>(flipped[good.size() - 7] ^ 0x10);
  write_bytes(path, flipped);
  msg = message_of<InvalidArgumentError>([&] { import_graph_def(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "corrupt"));

  write_bytes(path, "not a graph at all, just text");
  CHECK(contains(message_of<InvalidArgumentError>([&] { import_graph_def(path); }), "not a kiln graph file"));

  // An op type this build does not register, with a valid checksum (zlib's crc32, as written).
  std::string unknown = good;
  const auto at = unknown.find("Identity");
  REQUIRE(at != std::string::npos);
  unknown[at + 7] = 'x';
  const std::uint32_t crc = static_cast<std::uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(unknown.data() + 24), unknown.size() - 24));
  std::memcpy(unknown.data() + 20, &crc, sizeof crc);
  write_bytes(path, unknown);
  msg = message_of<NotFoundError>([&] { import_graph_def(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "'Identitx'"));
  CHECK(contains(msg, "'out'"));

  std::filesystem::remove(path);
  CHECK(contains(message_of<NotFoundError>([&] { import_graph_def(path); }), path));
}

TEST_CASE("graph_io.variables_cannot_be_written") {
  Graph g;
  auto guard = g.as_default();
  get_variable("w", {2});
  const std::string msg = message_of<UnimplementedError>([&] { write_graph(g, temp_path("vars.kgraph")); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "VariableV2"));
  CHECK(contains(msg, "freeze"));
}

TEST_CASE("graph_io.import_into_a_graph_with_the_same_names_fails") {
  const std::string path = temp_path("twice.kgraph");
  write_small_graph(path);
  Graph g;
  import_graph_def(path, g);
  CHECK(contains(message_of<ValueError>([&] { import_graph_def(path, g); }), "already used"));
  std::filesystem::remove(path);
}

namespace {
// The bytes an op's attribute codec writes for it (throws when it has none).
std::string attribute_bytes(const Operation& op) {
  const detail::Node& n = *op.node();
  REQUIRE(static_cast<bool>(n.def->attr_codec));
  AttrWriter w;
  n.def->attr_codec.write(n.attrs, w);
  return w.bytes();
}
}  // namespace

TEST_CASE("graph_io.collective_and_momentum_attributes_survive_the_file") {
  // AllReduce's reduction and Broadcast's root through write_graph / import_graph_def; ApplyMomentum
  // (whose graph holds variables, so it is not written whole) through its codec: read back, the
  // attributes write the same bytes, and Nesterov or not write different ones.
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {3}, "x");
  const Tensor mean = distributed::all_reduce(x, distributed::Reduction::mean, "mean");
  const Tensor sum = distributed::all_reduce(x, distributed::Reduction::sum, "sum");
  distributed::broadcast(x, 1, "root");
  const std::string path = temp_path("collectives.kgraph");
  write_graph(g, path);
  auto loaded = import_graph_def(path);
  std::filesystem::remove(path);
  for (const char* name : {"mean", "sum", "root"}) {
    CAPTURE(name);
    CHECK(attribute_bytes(loaded->get_operation_by_name(name)) == attribute_bytes(g.get_operation_by_name(name)));
  }
  CHECK(attribute_bytes(mean.op()) != attribute_bytes(sum.op()));

  Variable v = get_variable("v", {3}), accum = get_variable("accum", {3});
  const Tensor lr = constant(0.1f), momentum = constant(0.9f);
  const Operation plain = apply_momentum(v, accum, lr, x, momentum, false).op();
  const Operation nesterov = apply_momentum(v, accum, lr, x, momentum, true).op();
  for (const Operation& op : {plain, nesterov}) {
    const std::string bytes = attribute_bytes(op);
    AttrReader r(bytes, &g);
    const std::any back = op.node()->def->attr_codec.read(r);
    AttrWriter w;
    op.node()->def->attr_codec.write(back, w);
    CHECK(w.bytes() == bytes);
  }
  CHECK(attribute_bytes(plain) != attribute_bytes(nesterov));
}

TEST_CASE("graph_io.check_numerics_keeps_its_message_through_the_file") {
  // A graph guarded by add_check_numerics_ops() is written whole; the imported CheckNumerics
  // reports the same message when a value is not finite.
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {2}, "x");
  const Tensor checked = nn::check_numerics(x * 2.0, "scaled x");
  const std::string path = temp_path("check_numerics.kgraph");
  write_graph(g, path);
  auto loaded = import_graph_def(path);
  std::filesystem::remove(path);
  CHECK(attribute_bytes(loaded->get_operation_by_name(checked.op().name())) == attribute_bytes(checked.op()));
  Session sess(*loaded);
  const Tensor lx = loaded->get_tensor_by_name("x:0"), ly = loaded->get_tensor_by_name(checked.name());
  const std::string msg = message_of<InvalidArgumentError>(
      [&] { sess.run(ly, {{lx, xt::xarray<float>{1.f, std::numeric_limits<float>::infinity()}}}); });
  CHECK(contains(msg, "scaled x"));
  CHECK(contains(msg, checked.op().name()));
}

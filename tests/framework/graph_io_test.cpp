// write_graph / import_graph_def: a frozen, folded network round-trips with bit-identical
// outputs and the same tensor names; attribute codecs of many op types (and the seed of a random
// op, and Merge's tensor reference) survive; a training graph keeps its variables and collections
// (trained from its initializers or restored from a checkpoint, the same bits as the original);
// version 1 files still read; truncated, flipped, foreign and unknown-op files and bad variable or
// collection records are clear errors naming the path and what is wrong, and leave the target
// graph as it was.
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

// `file` with the header's payload size and checksum (zlib's crc32) made to match its payload.
std::string resealed(std::string file) {
  const std::uint64_t size = file.size() - 24;
  std::memcpy(file.data() + 12, &size, sizeof size);
  const std::uint32_t crc =
      static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(file.data() + 24), file.size() - 24));
  std::memcpy(file.data() + 20, &crc, sizeof crc);
  return file;
}

std::uint32_t u32_at(const std::string& bytes, std::size_t at) {
  std::uint32_t v = 0;
  std::memcpy(&v, bytes.data() + at, sizeof v);
  return v;
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
  write_bytes(path, resealed(unknown));
  msg = message_of<NotFoundError>([&] { import_graph_def(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "'Identitx'"));
  CHECK(contains(msg, "'out'"));

  std::filesystem::remove(path);
  CHECK(contains(message_of<NotFoundError>([&] { import_graph_def(path); }), path));
}

namespace {
// A small training graph in the default graph: dense with an l2 regularizer (no bias) -> batch norm
// with a `training` tensor -> relu -> dense "logits"; Adam (slots, beta powers) with a global step,
// after UPDATE_OPS; a non-trainable counter; the train op in TRAIN_OP.
struct TrainingGraph {
  Tensor x, labels, training, logits, loss;
  Operation train_op;
};

TrainingGraph build_training_graph() {
  set_random_seed(11);
  TrainingGraph m;
  m.x = placeholder(float32, {-1, 4}, "x");
  m.labels = placeholder(int64, {-1}, "labels");
  m.training = placeholder(boolean, {}, "training");
  Tensor h = layers::dense(m.x, 6, {.use_bias = false, .kernel_regularizer = regularizers::l2(1e-3)});
  h = nn::relu(layers::batch_normalization(h, {.momentum = 0.5, .training = m.training}));
  m.logits = layers::dense(h, 3, {.name = "logits"});
  m.loss = losses::sparse_softmax_cross_entropy(m.labels, m.logits) + losses::get_regularization_loss();
  Variable(constant(0.0f), {.trainable = false, .name = "counter"});
  const Variable step = train::get_or_create_global_step();
  control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
  m.train_op = train::AdamOptimizer(0.05).minimize(m.loss, {.global_step = step});
  add_to_collection(GraphKeys::TRAIN_OP, m.train_op);
  return m;
}

// The same model in `g` (its tensors found by name, its train op through TRAIN_OP).
TrainingGraph find_training_graph(const Graph& g, const TrainingGraph& like) {
  TrainingGraph m;
  m.x = g.get_tensor_by_name(like.x.name());
  m.labels = g.get_tensor_by_name(like.labels.name());
  m.training = g.get_tensor_by_name(like.training.name());
  m.logits = g.get_tensor_by_name(like.logits.name());
  m.loss = g.get_tensor_by_name(like.loss.name());
  m.train_op = g.get_collection(GraphKeys::TRAIN_OP).at(0).as_operation();
  return m;
}

FeedDict training_feeds(const TrainingGraph& m, int step) {
  xt::xarray<std::int64_t> y = xt::xarray<std::int64_t>::from_shape({8});
  for (std::size_t i = 0; i < y.size(); ++i) y(i) = static_cast<std::int64_t>((i + static_cast<std::size_t>(step)) % 3);
  return {{m.x, kiln::testing::random_input({8, 4}, 200u + static_cast<unsigned>(step))}, {m.labels, y}, {m.training, true}};
}
}  // namespace

TEST_CASE("graph_io.a_training_graph_keeps_its_variables_and_collections") {
  Graph g;
  auto guard = g.as_default();
  const TrainingGraph original = build_training_graph();
  const std::string path = temp_path("training.kgraph");
  write_graph(g, path);
  auto loaded = import_graph_def(path);
  std::filesystem::remove(path);

  // Every collection, its items in order and of the same kind; each variable as it was built.
  REQUIRE(loaded->collection_keys() == g.collection_keys());
  for (const std::string& key : g.collection_keys()) {
    CAPTURE(key);
    const auto a = g.get_collection(key), b = loaded->get_collection(key);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      CHECK(b[i].name() == a[i].name());
      CHECK(b[i].is_variable() == a[i].is_variable());
      CHECK(b[i].is_tensor() == a[i].is_tensor());
      CHECK(&b[i].op().graph() == loaded.get());
      if (!a[i].is_variable()) continue;
      const Variable va = a[i].as_variable(), vb = b[i].as_variable();
      CHECK(vb.trainable() == va.trainable());
      CHECK(vb.shape() == va.shape());
      CHECK(vb.dtype() == va.dtype());
      CHECK(vb.initializer().name() == va.initializer().name());
      CHECK(vb.initial_value().name() == va.initial_value().name());
    }
  }
  CHECK(loaded->get_collection(GraphKeys::UPDATE_OPS).size() == 2);
  CHECK(loaded->get_collection(GraphKeys::REGULARIZATION_LOSSES).size() == 1);

  CHECK(!loaded->get_operation_by_name("counter").node()->variable->trainable);

  // Trained from the initializers (run through global_variables_initializer of each graph): the
  // same losses, global step and moving statistics, bit for bit.
  const TrainingGraph imported = find_training_graph(*loaded, original);
  const Operation init_a = global_variables_initializer();
  Operation init_b;
  {
    auto lg = loaded->as_default();
    init_b = global_variables_initializer();
  }
  Session sa(g), sb(*loaded);
  sa.run(init_a);
  sb.run(init_b);
  for (int step = 0; step < 4; ++step) {
    CAPTURE(step);
    CHECK(same(sa.run(original.loss, training_feeds(original, step)), sb.run(imported.loss, training_feeds(imported, step))));
    sa.run(original.train_op, training_feeds(original, step));
    sb.run(imported.train_op, training_feeds(imported, step));
  }
  for (const std::string name : {"global_step:0", "batch_normalization/moving_variance:0", "dense/kernel:0"})
    CHECK(same(sa.run(g.get_tensor_by_name(name)), sb.run(loaded->get_tensor_by_name(name))));

  // Restored from a checkpoint the original session wrote, through a Saver of the imported graph.
  const std::string dir = temp_path("training_ckpt");
  std::filesystem::create_directories(dir);
  const std::string ckpt = train::Saver().save(sa, dir + "/model");
  auto lg = loaded->as_default();
  train::Saver restorer;
  CHECK(restorer.var_list().size() == g.get_collection(GraphKeys::GLOBAL_VARIABLES).size());
  Session sc(*loaded);
  restorer.restore(sc, ckpt);
  std::filesystem::remove_all(dir);
  const auto input = kiln::testing::random_input({5, 4}, 9);
  CHECK(same(sa.run(original.logits, {{original.x, input}, {original.training, false}}),
             sc.run(imported.logits, {{imported.x, input}, {imported.training, false}})));
}

TEST_CASE("graph_io.bad_variable_and_collection_records_are_errors_and_add_nothing") {
  // One variable "w": its collections (GLOBAL_VARIABLES, TRAINABLE_VARIABLES) end the file, each
  // as u32 key length, the key, u32 1, u8 kind 2 (variable), u32 op index; before them the
  // variable record: u32 op, u8 trainable, u32 initializer op, u32 value op, u32 value output.
  const std::string path = temp_path("variable.kgraph");
  {
    Graph g;
    auto guard = g.as_default();
    get_variable("w", {2});
    write_graph(g, path);
  }
  const std::string good = read_bytes(path);
  const std::size_t collections = 4 + (4 + 9 + 4 + 5) + (4 + 19 + 4 + 5);
  const std::size_t record = good.size() - collections - 17;
  REQUIRE(good.substr(good.size() - collections + 8, 9) == "variables");

  Graph target;
  {
    auto guard = target.as_default();
    get_variable("v", {3});
  }
  const int nodes = target.num_nodes();
  // Imports `bytes` (resealed) into the target: InvalidArgumentError naming the path, the target
  // unchanged. Returns the message.
  const auto rejected = [&](const std::string& bytes) {
    write_bytes(path, resealed(bytes));
    const std::string msg = message_of<InvalidArgumentError>([&] { import_graph_def(path, target); });
    CHECK(contains(msg, path));
    CHECK(target.num_nodes() == nodes);
    CHECK(!target.name_in_use("w"));
    CHECK(target.variables_.size() == 1);
    CHECK(target.get_operation_by_name("v").node()->variable == target.variables_.at(0).get());
    CHECK(target.var_store_.count("v") == 1);
    for (const char* key : {GraphKeys::GLOBAL_VARIABLES, GraphKeys::TRAINABLE_VARIABLES})
      CHECK(target.get_collection(key).size() == 1);
    return msg;
  };

  // The record names the initializer (an Assign), not a VariableV2.
  std::string bad = good;
  std::memcpy(bad.data() + record, bad.data() + record + 5, 4);
  std::string msg = rejected(bad);
  CHECK(contains(msg, "variable 'w/Assign'"));
  CHECK(contains(msg, "not a variable"));

  // The last item's kind is unknown: everything before it (ops, the variable, the first
  // collection) is rolled back.
  bad = good;
  bad[good.size() - 5] = 7;
  msg = rejected(bad);
  CHECK(contains(msg, "collection 'trainable_variables'"));
  CHECK(contains(msg, "unknown kind 7"));

  // The initializer named in the record does not assign to the variable.
  bad = good;
  std::memcpy(bad.data() + record + 5, bad.data() + record + 9, 4);  // the initial value's op
  msg = rejected(bad);
  CHECK(contains(msg, "variable 'w'"));
  CHECK(contains(msg, "does not assign its initial value"));

  // No variable record for "w" (the count 0, the record gone, no collections).
  bad = good.substr(0, record - 4);
  bad.append(8, '\0');
  CHECK(contains(rejected(bad), "op 'w' of type VariableV2 has no variable record"));

  // The VariableV2 op without its attributes (has_attrs 0, the size and the bytes gone): the shape
  // function cannot run.
  const std::size_t type_at = good.find("VariableV2");
  REQUIRE(type_at != std::string::npos);
  bad = good;
  bad[type_at + 19] = 0;
  bad.erase(type_at + 20, 4 + u32_at(good, type_at + 20));
  CHECK(contains(rejected(bad), "op 'w'"));

  // The last collection item names an op the file does not hold, then one that is not a variable.
  bad = good;
  const std::uint32_t far = 999;
  std::memcpy(bad.data() + good.size() - 4, &far, 4);
  msg = rejected(bad);
  CHECK(contains(msg, "collection 'trainable_variables'"));
  CHECK(contains(msg, "refers to op #999"));
  bad = good;
  std::memcpy(bad.data() + good.size() - 4, good.data() + record + 5, 4);  // the initializer
  CHECK(contains(rejected(bad), "lists 'w/Assign' as a variable"));

  // The good file imports beside "v"; the variable joins the target's collections.
  write_bytes(path, good);
  import_graph_def(path, target);
  std::filesystem::remove(path);
  CHECK(target.get_collection(GraphKeys::GLOBAL_VARIABLES).size() == 2);
  CHECK(target.get_collection(GraphKeys::TRAINABLE_VARIABLES).at(1).as_variable().op().name() == "w");
  CHECK(u32_at(good, 8) == 2);  // written as format version 2
}

TEST_CASE("graph_io.version_1_files_still_read") {
  // Version 1 ends after the ops: a version 2 file of a graph without variables or collections
  // ends with two zero counts; without them, under version 1, it imports the same ops.
  const std::string path = temp_path("v1.kgraph");
  write_small_graph(path);
  const std::string v2 = read_bytes(path);
  REQUIRE(u32_at(v2, v2.size() - 8) == 0);
  REQUIRE(u32_at(v2, v2.size() - 4) == 0);
  std::string v1 = v2.substr(0, v2.size() - 8);
  const std::uint32_t one = 1;
  std::memcpy(v1.data() + 8, &one, sizeof one);
  write_bytes(path, resealed(v1));
  auto loaded = import_graph_def(path);
  CHECK(loaded->num_nodes() == 4);
  CHECK(loaded->get_operation_by_name("out").type() == "Identity");

  std::string v3 = v2;
  const std::uint32_t three = 3;
  std::memcpy(v3.data() + 8, &three, sizeof three);
  write_bytes(path, resealed(v3));
  const std::string msg = message_of<InvalidArgumentError>([&] { import_graph_def(path); });
  CHECK(contains(msg, "format version 3"));
  CHECK(contains(msg, "versions 1 to 2"));
  std::filesystem::remove(path);
}

TEST_CASE("graph_io.an_op_type_registered_without_a_codec_cannot_be_written") {
  // Every op kiln registers that takes attributes has a codec; one registered from outside may not.
  struct Attrs {
    float scale = 2;
  };
  if (!op_registry().find("TestGraphIoNoCodec"))
    op_registry().add({.type = "TestGraphIoNoCodec",
                       .shape_fn = [](const InferenceContext& c) { return std::vector<TensorSpec>{{c.dtypes[0], c.shapes[0]}}; },
                       .kernels = kernels_for<float>([]<class T>(KernelContext&) {}),
                       .not_differentiable = true});
  Graph g;
  auto guard = g.as_default();
  build_op("TestGraphIoNoCodec", {placeholder(float32, {2}, "x")}, Attrs{}, "scaled");
  const std::string path = temp_path("no_codec.kgraph");
  const std::string msg = message_of<UnimplementedError>([&] { write_graph(g, path); });
  CHECK(contains(msg, "'scaled'"));
  CHECK(contains(msg, "TestGraphIoNoCodec"));
  CHECK(contains(msg, "attr_codec"));
  CHECK(!std::filesystem::exists(path));
}

TEST_CASE("graph_io.a_variable_without_its_initializer_cannot_be_written") {
  // Every variable kiln creates has its initializer in its graph; one that lost it is a broken graph.
  Graph g;
  auto guard = g.as_default();
  const Variable w = get_variable("w", {2});
  w.info()->initializer = Operation();
  const std::string path = temp_path("no_initializer.kgraph");
  const std::string msg = message_of<InternalError>([&] { write_graph(g, path); });
  CHECK(contains(msg, "the initializer of variable 'w'"));
  CHECK(!std::filesystem::exists(path));
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
  // AllReduce's reduction, Broadcast's root and ApplyMomentum's Nesterov flag through write_graph /
  // import_graph_def: the imported ops' attributes write the same bytes, and the two values of
  // each write different ones.
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {3}, "x");
  const Tensor mean = distributed::all_reduce(x, distributed::Reduction::mean, "mean");
  const Tensor sum = distributed::all_reduce(x, distributed::Reduction::sum, "sum");
  distributed::broadcast(x, 1, "root");
  Variable v = get_variable("v", {3}), accum = get_variable("accum", {3});
  const Tensor lr = constant(0.1f), momentum = constant(0.9f);
  const Operation plain = apply_momentum(v, accum, lr, x, momentum, false, "plain").op();
  const Operation nesterov = apply_momentum(v, accum, lr, x, momentum, true, "nesterov").op();
  const std::string path = temp_path("collectives.kgraph");
  write_graph(g, path);
  auto loaded = import_graph_def(path);
  std::filesystem::remove(path);
  for (const char* name : {"mean", "sum", "root", "plain", "nesterov"}) {
    CAPTURE(name);
    CHECK(attribute_bytes(loaded->get_operation_by_name(name)) == attribute_bytes(g.get_operation_by_name(name)));
  }
  CHECK(attribute_bytes(mean.op()) != attribute_bytes(sum.op()));
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

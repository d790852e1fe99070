#include "framework/graph_io.hpp"

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <unordered_map>

#include "framework/attr_codec.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"
#include "framework/variable.hpp"

namespace kiln {

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'G', 'R', 'P', 'H'};
constexpr std::uint32_t kVersion = 2;      // written
constexpr std::uint32_t kOldestVersion = 1;  // read: version 1 has no variables or collections
constexpr std::size_t kHeaderSize = 24;

std::uint32_t checksum(std::string_view bytes) {
  return static_cast<std::uint32_t>(
      crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

std::string quoted(const std::string& path) { return "'" + path + "'"; }

// Collection item kinds in the file.
enum class ItemKind : std::uint8_t { operation = 0, tensor = 1, variable = 2 };

std::string payload_of(const Graph& graph) {
  std::vector<detail::Node*> all;
  for (int i = 0; i < graph.num_nodes(); ++i) all.push_back(graph.node(i));
  const std::vector<detail::Node*> order =
      detail::execution_order(graph, all, std::vector<bool>(all.size(), false));
  std::unordered_map<const detail::Node*, std::uint32_t> index;
  AttrWriter w;
  w.u32(static_cast<std::uint32_t>(order.size()));
  for (const detail::Node* n : order) {
    index[n] = static_cast<std::uint32_t>(index.size());
    w(n->name);
    w(n->def->type);
    w.u32(static_cast<std::uint32_t>(n->inputs.size()));
    for (const auto& in : n->inputs) {
      w.u32(index.at(in.node));
      w.u32(static_cast<std::uint32_t>(in.index));
    }
    w.u32(static_cast<std::uint32_t>(n->control_inputs.size()));
    for (const detail::Node* c : n->control_inputs) w.u32(index.at(c));
    w.u8(n->seed ? 1 : 0);
    if (n->seed) w.u64(*n->seed);
    w.u8(n->attrs.has_value() ? 1 : 0);
    if (n->attrs.has_value()) {
      if (!n->def->attr_codec)
        throw UnimplementedError("write_graph: op '" + n->name + "' (type " + n->def->type +
                                 ") has attributes and its type registers no attribute codec (OpDef::attr_codec)");
      AttrWriter a;
      n->def->attr_codec.write(n->attrs, a);
      w.u32(static_cast<std::uint32_t>(a.bytes().size()));
      w.raw(a.bytes().data(), a.bytes().size());
    }
    w.u32(static_cast<std::uint32_t>(n->output_dtypes.size()));
    for (std::size_t i = 0; i < n->output_dtypes.size(); ++i) {
      w(n->output_dtypes[i]);
      w(n->output_shapes[i]);
    }
  }
  // Collections hold only this graph's items and every variable has its initializer here: a miss
  // is a broken graph, not a user's mistake.
  const auto op_index = [&](const detail::Node* n, const std::string& what) {
    const auto it = n ? index.find(n) : index.end();
    if (it == index.end())
      throw InternalError("write_graph: " + what + " is not an op of the graph being written");
    return it->second;
  };
  std::vector<const detail::Node*> variables;
  for (const detail::Node* n : order)
    if (n->variable) variables.push_back(n);
  w.u32(static_cast<std::uint32_t>(variables.size()));
  for (const detail::Node* n : variables) {
    const Variable v(n->variable);
    w.u32(index.at(n));
    w(v.trainable());
    w.u32(op_index(v.initializer() == Operation() ? nullptr : v.initializer().node(),
                   "the initializer of variable '" + n->name + "'"));
    w.u32(op_index(v.initial_value().ref().node, "the initial value of variable '" + n->name + "'"));
    w.u32(static_cast<std::uint32_t>(v.initial_value().value_index()));
  }
  const std::vector<std::string> keys = graph.collection_keys();
  w.u32(static_cast<std::uint32_t>(keys.size()));
  for (const std::string& key : keys) {
    const std::vector<GraphElement> items = graph.get_collection(key);
    w(key);
    w.u32(static_cast<std::uint32_t>(items.size()));
    for (const GraphElement& e : items) {
      const ItemKind kind = e.is_variable() ? ItemKind::variable : e.is_tensor() ? ItemKind::tensor : ItemKind::operation;
      w.u8(static_cast<std::uint8_t>(kind));
      w.u32(op_index(e.op().node(), "item '" + e.name() + "' of collection '" + key + "'"));
      if (kind == ItemKind::tensor) w.u32(static_cast<std::uint32_t>(e.as_tensor().value_index()));
    }
  }
  return w.bytes();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw NotFoundError("import_graph_def: cannot open " + quoted(path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Payload {
  std::uint32_t version;
  std::string_view bytes;
};

// Checks magic, version, size and checksum; returns the payload.
Payload checked_payload(const std::string& file, const std::string& path) {
  const std::string at = "import_graph_def: " + quoted(path);
  if (file.size() < sizeof kMagic || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0)
    throw InvalidArgumentError(at + " is not a kiln graph file (no KILNGRPH magic)");
  if (file.size() < kHeaderSize)
    throw InvalidArgumentError(at + " is truncated: " + std::to_string(file.size()) +
                               " bytes, shorter than the header");
  AttrReader h(std::string_view(file).substr(sizeof kMagic, kHeaderSize - sizeof kMagic), nullptr);
  const std::uint32_t version = h.u32();
  const std::uint64_t size = h.u64();
  const std::uint32_t stored = h.u32();
  if (version < kOldestVersion || version > kVersion)
    throw InvalidArgumentError(at + " has format version " + std::to_string(version) + "; this build reads versions " +
                               std::to_string(kOldestVersion) + " to " + std::to_string(kVersion));
  const std::uint64_t held = file.size() - kHeaderSize;
  if (held < size)
    throw InvalidArgumentError(at + " is truncated: the header announces " + std::to_string(size) +
                               " payload bytes, the file holds " + std::to_string(held));
  if (held > size)
    throw InvalidArgumentError(at + " has " + std::to_string(held - size) + " bytes after the payload");
  const std::string_view payload = std::string_view(file).substr(kHeaderSize);
  const std::uint32_t computed = checksum(payload);
  if (computed != stored)
    throw InvalidArgumentError(at + " is corrupt: the payload checksum is " + std::to_string(computed) +
                               ", the header says " + std::to_string(stored));
  return {version, payload};
}

}  // namespace

void write_graph(const Graph& graph, const std::string& path) {
  const std::string payload = payload_of(graph);
  AttrWriter header;
  header.raw(kMagic, sizeof kMagic);
  header.u32(kVersion);
  header.u64(payload.size());
  header.u32(checksum(payload));
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw NotFoundError("write_graph: cannot write " + quoted(tmp));
    out.write(header.bytes().data(), static_cast<std::streamsize>(header.bytes().size()));
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    out.flush();
    if (!out) throw NotFoundError("write_graph: cannot write " + quoted(tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw NotFoundError("write_graph: cannot rename " + quoted(tmp) + " to " + quoted(path));
  }
}

void import_graph_def(const std::string& path, Graph& graph) {
  const std::string file = read_file(path);
  const Payload payload = checked_payload(file, path);
  const std::string at = "import_graph_def(" + quoted(path) + ")";
  auto guard = graph.as_default();
  control_dependencies no_deps(nullptr);
  GraphCheckpoint checkpoint(graph);  // a file that fails part-way adds nothing
  AttrReader r(payload.bytes, &graph);
  std::vector<Operation> ops;
  std::string name = "<header>";  // what the errors name: an op, a variable or a collection
  const auto op_at = [&](std::uint32_t i) {
    if (i >= ops.size())
      throw InvalidArgumentError("refers to op #" + std::to_string(i) + " of the " + std::to_string(ops.size()) +
                                 " read before it");
    return ops[i];
  };
  // Every VariableV2 op of the file has its variable record (graph.hpp: Node::variable).
  const auto check_variables_listed = [&] {
    for (const Operation& op : ops)
      if (op.node()->def->is_variable && !op.node()->variable)
        throw InvalidArgumentError("op '" + op.name() + "' of type " + op.type() +
                                   " has no variable record (initializer, trainable)");
  };
  const auto output_of = [&](const Operation& producer, std::uint32_t index) {
    if (index >= static_cast<std::uint32_t>(producer.num_outputs()))
      throw InvalidArgumentError("reads output " + std::to_string(index) + " of '" + producer.name() + "'");
    return producer.output(static_cast<int>(index));
  };
  try {
    const std::uint32_t count = r.u32();
    for (std::uint32_t k = 0; k < count; ++k) {
      name = "op #" + std::to_string(k);  // until the name is read: the op's position
      std::string op_name;
      r(op_name);
      name = "op '" + op_name + "'";
      std::string type;
      r(type);
      const OpDef* def = op_registry().find(type);
      if (!def) throw NotFoundError("has type '" + type + "', which this build does not register");
      if (graph.name_in_use(op_name))
        throw ValueError(at + ": op name '" + op_name + "' is already used in the target graph");
      std::vector<Tensor> inputs(r.u32());
      for (Tensor& t : inputs) {
        const Operation producer = op_at(r.u32());
        t = output_of(producer, r.u32());
      }
      std::vector<Operation> controls(r.u32());
      for (Operation& c : controls) c = op_at(r.u32());
      std::optional<std::uint64_t> seed;
      if (r.u8()) seed = r.u64();
      std::any attrs;
      if (r.u8()) {
        const std::uint32_t size = r.u32();
        if (!def->attr_codec) throw InvalidArgumentError("has attributes, but type " + type + " has no attribute codec");
        AttrReader a(r.take(size), &graph);
        attrs = def->attr_codec.read(a);
        if (!a.at_end()) throw InvalidArgumentError(std::to_string(a.remaining()) + " attribute bytes left over");
      }
      const Operation op = build_op(type, inputs, std::move(attrs), op_name);
      if (op.name() != op_name) throw InvalidArgumentError("was imported as '" + op.name() + "'");
      op.node()->seed = seed;
      for (const Operation& c : controls) op.add_control_input(c);
      const std::uint32_t n_out = r.u32();
      if (n_out != static_cast<std::uint32_t>(op.num_outputs()))
        throw InvalidArgumentError("the file lists " + std::to_string(n_out) + " outputs, the op has " +
                                   std::to_string(op.num_outputs()));
      for (int i = 0; i < op.num_outputs(); ++i) {
        const DType t = r.dtype();
        Shape s;
        r(s);
        const Tensor out = op.output(i);
        if (t != out.dtype() || s != out.shape())
          throw InvalidArgumentError("output " + std::to_string(i) + " is " + dtype_name(t) + " " + s.to_string() +
                                     " in the file but " + dtype_name(out.dtype()) + " " +
                                     out.shape().to_string() + " when rebuilt");
      }
      ops.push_back(op);
    }
    if (payload.version >= 2) {
      const std::uint32_t n_variables = r.u32();
      for (std::uint32_t k = 0; k < n_variables; ++k) {
        name = "variable #" + std::to_string(k);
        const Operation op = op_at(r.u32());
        name = "variable '" + op.name() + "'";
        if (!op.node()->def->is_variable) throw InvalidArgumentError("is an op of type " + op.type() + ", not a variable");
        if (op.node()->variable) throw InvalidArgumentError("is listed twice");
        const bool trainable = r.u8() != 0;
        const Operation initializer = op_at(r.u32());
        const Operation value_op = op_at(r.u32());
        const Tensor initial_value = output_of(value_op, r.u32());
        const std::vector<Tensor> assigned = initializer.inputs();
        if (initializer.type() != "Assign" || assigned[0] != op.output(0) || assigned[1] != initial_value)
          throw InvalidArgumentError("has initializer '" + initializer.name() + "' (" + initializer.type() +
                                     "), which does not assign its initial value '" + initial_value.name() +
                                     "' to it");
        detail::adopt_variable(op, initializer, initial_value, trainable);
      }
      name = "the variables";
      check_variables_listed();
      const std::uint32_t n_collections = r.u32();
      for (std::uint32_t k = 0; k < n_collections; ++k) {
        name = "collection #" + std::to_string(k);
        std::string key;
        r(key);
        name = "collection '" + key + "'";
        const std::uint32_t n_items = r.u32();
        for (std::uint32_t i = 0; i < n_items; ++i) {
          const auto kind = static_cast<ItemKind>(r.u8());
          const Operation op = op_at(r.u32());
          if (kind == ItemKind::operation) {
            graph.add_to_collection(key, op);
          } else if (kind == ItemKind::tensor) {
            graph.add_to_collection(key, output_of(op, r.u32()));
          } else if (kind == ItemKind::variable) {
            if (!op.node()->variable) throw InvalidArgumentError("lists '" + op.name() + "' as a variable; it is not one");
            graph.add_to_collection(key, Variable(op.node()->variable));
          } else {
            throw InvalidArgumentError("has an item of unknown kind " + std::to_string(static_cast<int>(kind)));
          }
        }
      }
    }
    if (payload.version < 2) {
      name = "the variables";
      check_variables_listed();
    }
    name = "the payload";
    if (!r.at_end()) throw InvalidArgumentError(std::to_string(r.remaining()) + " bytes left over after its last section");
  } catch (const NotFoundError& e) {
    if (std::string(e.what()).rfind(at, 0) == 0) throw;
    throw NotFoundError(at + ": " + name + ": " + e.what());
  } catch (const ValueError& e) {
    if (std::string(e.what()).rfind(at, 0) == 0) throw;
    throw InvalidArgumentError(at + ": " + name + ": " + e.what());
  } catch (const TypeError& e) {
    throw InvalidArgumentError(at + ": " + name + ": " + e.what());
  } catch (const InternalError& e) {  // e.g. a shape function given no attributes, or the wrong ones
    throw InvalidArgumentError(at + ": " + name + ": " + e.what());
  } catch (const InvalidArgumentError& e) {
    throw InvalidArgumentError(at + ": " + name + ": " + e.what());
  }
  checkpoint.commit();
}

std::unique_ptr<Graph> import_graph_def(const std::string& path) {
  auto graph = std::make_unique<Graph>();
  import_graph_def(path, *graph);
  return graph;
}

}  // namespace kiln

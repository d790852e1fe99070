#pragma once
// A graph on disk: write_graph / import_graph_def (TF1's tf.train.write_graph and
// tf.import_graph_def, for kiln's own binary format).
//
//   auto frozen = graph_util::convert_variables_to_constants(sess, graph, {"logits/BiasAdd"});
//   write_graph(*frozen, "model.kgraph");
//   ...                                                   // another process
//   auto g = import_graph_def("model.kgraph");
//   Session sess(*g);
//   Array y = sess.run(g->get_tensor_by_name("logits/BiasAdd:0"), {{g->get_tensor_by_name("x:0"), images}});
//
// What is written: every op (name, type, data inputs, control inputs, the resolved seed of a
// random op, the attributes through the op's attribute codec, framework/attr_codec.hpp, constants
// included, and the dtype and static shape of each output), in an order where each op follows its
// inputs. Not written: collections, variable values (a graph with variables cannot be written:
// freeze it first), name-scope and cond-building state.
//
// File format, version 1 (all integers little-endian):
//   offset  0  8 bytes  magic "KILNGRPH"
//           8  u32      format version (1)
//          12  u64      payload size in bytes
//          20  u32      CRC-32 of the payload (zlib's crc32: the ISO-HDLC / IEEE 802.3
//                       polynomial 0xEDB88320, reflected, initial and final xor 0xFFFFFFFF)
//          24  payload:
//     u32 op count, then per op:
//       string name, string type                       (u32 length + bytes)
//       u32 n, then n x (u32 producer op index, u32 output index)   data inputs; producers
//                                                      come earlier in the file
//       u32 n, then n x u32 op index                   control inputs (earlier ops)
//       u8 has_seed [u64 seed]
//       u8 has_attrs [u32 size, attribute bytes]       encoded by the op type's codec
//       u32 n, then n x (u8 dtype, Shape)              outputs, checked against shape inference
//   The file ends exactly after the payload.
//
// Errors. write_graph: UnimplementedError naming the op and its type when its attributes have no
// codec (VariableV2: "freeze the graph first"); InvalidArgumentError for a dependency cycle;
// NotFoundError when the file cannot be written. import_graph_def: NotFoundError when the file
// cannot be opened; InvalidArgumentError naming the path when it is not a kiln graph (magic),
// has another format version, is truncated or has trailing bytes, fails its checksum, or holds
// data that does not decode (naming the op); NotFoundError naming the path and the op for an op
// type this build does not register; ValueError when an op name is already taken in the target
// graph. Thread safety: like building a graph (one thread per graph).
#include <memory>
#include <string>

#include "framework/graph.hpp"

namespace kiln {

/// Writes `graph` to `path` (through a temporary file renamed into place).
void write_graph(const Graph& graph, const std::string& path);

/// A new Graph holding the ops of the file at `path`, with their names.
std::unique_ptr<Graph> import_graph_def(const std::string& path);
/// Imports the ops of the file at `path` into `graph` (whose op names must not collide with them).
void import_graph_def(const std::string& path, Graph& graph);

}  // namespace kiln

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
// A graph with variables round-trips as TF1's tf.train.export_meta_graph / import_meta_graph
// would take it: the imported graph holds the same Variables (in the same collections, with
// their initializers), so global_variables_initializer(), a train::Saver restore and a train op
// fetched by name work on it; their values come from running the initializers or from a
// checkpoint, never from the file.
//
//   write_graph(graph, "train.kgraph");       // variables, Adam's slots, UPDATE_OPS, TRAIN_OP ...
//   auto g = import_graph_def("train.kgraph");
//   auto guard = g->as_default();
//   Session sess(*g);
//   train::Saver().restore(sess, *train::latest_checkpoint(dir));
//   sess.run(g->get_collection(GraphKeys::TRAIN_OP).at(0), {...});
//
// What is written: every op (name, type, data inputs, control inputs, the resolved seed of a
// random op, the attributes through the op's attribute codec, framework/attr_codec.hpp, constants
// included, and the dtype and static shape of each output), in an order where each op follows its
// inputs; each variable (its VariableV2 op, trainable or not, its initializer and initial value);
// every collection, its items in order. Not written: variable values, a variable's constraint and
// regularizer functions (its regularization loss is a tensor of REGULARIZATION_LOSSES and is
// kept), get_variable's store (get_variable with reuse does not find imported variables, as in
// TF1), name-scope and cond-building state. Importing appends to the target graph's collections
// (a second training graph imported beside a first brings a second global step, as in TF1).
//
// File format, version 2 (all integers little-endian; version 1 files, which end after the ops,
// are read too):
//   offset  0  8 bytes  magic "KILNGRPH"
//           8  u32      format version (2)
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
//     u32 variable count, then per variable:
//       u32 VariableV2 op index, u8 trainable, u32 initializer op index,
//       u32 initial value op index, u32 its output index
//     u32 collection count, then per collection:
//       string key, u32 item count, then per item:
//       u8 kind (0 operation, 1 tensor, 2 variable), u32 op index [u32 output index, tensors only]
//   The file ends exactly after the payload.
//
// Errors. write_graph: InvalidArgumentError for a dependency cycle; InternalError naming the
// variable when its initializer or initial value is not an op of the graph; UnimplementedError
// naming the op and its type when it has attributes and its type no codec (every op kiln registers
// has one when it takes attributes; an op type registered outside kiln may not); NotFoundError when
// the file cannot be written. import_graph_def:
// NotFoundError when the file cannot be opened; InvalidArgumentError naming the path when it is
// not a kiln graph (magic), has another format version, is truncated or has trailing bytes, fails
// its checksum, or holds data that does not decode or does not make a graph (naming the op,
// variable or collection: a VariableV2 op without its variable record, an initializer that is not
// the Assign of the variable's initial value to it, a collection item that is not an op of the
// file);
// NotFoundError naming the path and the op for an op type this build does not register;
// ValueError when an op name is already taken in the target graph. A failed import leaves the
// target graph as it was. Thread safety: like building a graph (one thread per graph).
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

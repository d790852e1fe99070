#pragma once
// A printable summary of everything a Graph holds that a user can observe (operations with their
// inputs and control inputs, collections, variables), to check that a failed build left a graph
// exactly as it was.
#include <sstream>
#include <string>

#include <kiln.hpp>

namespace kiln::testing {

inline std::string graph_state(const Graph& g) {
  std::ostringstream os;
  for (const Operation& op : g.operations()) {
    os << op.name() << " " << op.type() << " (";
    for (const Tensor& t : op.inputs()) os << t.name() << " ";
    os << "| ";
    for (const Operation& c : op.control_inputs()) os << c.name() << " ";
    os << ")\n";
  }
  for (const std::string& key : g.collection_keys()) {
    os << "[" << key << "]";
    for (const GraphElement& e : g.get_collection(key)) os << " " << e.name();
    os << "\n";
  }
  return os.str();
}

}  // namespace kiln::testing

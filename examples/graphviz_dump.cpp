// Writes the DOT of a small graph with a control dependency and a cond, for teaching:
//   ./graphviz_dump > graph.dot && dot -Tpng graph.dot -o graph.png
// Data edges are solid (labelled with the output index), control edges dashed.
#include <iostream>

#include <kiln.hpp>

using namespace kiln;

int main() {
  Graph graph;
  auto as_default = graph.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Tensor training = placeholder(boolean, {}, "training");
  Variable counter = get_variable("counter", {}, {.initializer = initializers::zeros()});
  Tensor bump = assign_add(counter, scalar(1.0), "bump");
  Tensor y;
  {
    control_dependencies deps({bump});  // y runs after the counter moved
    y = cond(training, [&] { return x * 2.0; }, [&] { return identity(x); }, "maybe_double");
  }
  write_graphviz(graph, std::cout);
  return 0;
}

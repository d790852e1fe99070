#pragma once
// Explain: what a run would do, without running it (the teaching mode).
//
//   std::cout << sess.explain(train_op, {{x, images}, {labels, y}, {training, true}});
//
// prints the ops in execution order grouped by name scope, the cond branches the fed predicates
// select and the ops they leave dead, why each op pulled in only by a control dependency runs
// ("Adam/update depends on block1/batch_normalization/AssignMovingAvg through
// control_dependencies(UPDATE_OPS)"), and which ops are pruned and why.
#include <iosfwd>
#include <string>
#include <vector>

namespace kiln {

struct Explanation {
  struct Op {
    std::string name, type;
    std::string note;  // "fed", "dead: ...", or empty
  };
  struct Pruned {
    std::string name, reason;
  };
  std::vector<std::string> fetches, feeds;  // tensor or op names
  std::vector<Op> ops;                      // execution order, dead ones included (marked)
  std::vector<std::string> conds;           // one line per cond predicate
  std::vector<std::string> control_dependencies;  // one line per op a control edge pulls in
  std::vector<Pruned> pruned;
  std::size_t num_dead() const;
};

/// The text `sess.explain(...)` prints.
std::ostream& operator<<(std::ostream& os, const Explanation& e);
std::string to_string(const Explanation& e);

}  // namespace kiln
